"""Face detection throughput (frames/s) by batch size and runtime, and the lite HOG detector.
The measurement is streamswap/bench/detect.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.detect import main  # noqa: E402

if __name__ == "__main__":
    main()
