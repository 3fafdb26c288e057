"""End-to-end speed of the lite engine: `streamswap swap` on a real 720p video.
The measurement is streamswap/bench/lite_swap.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.lite_swap import main  # noqa: E402

if __name__ == "__main__":
    main()
