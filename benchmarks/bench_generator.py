"""Generator throughput (faces/s) by batch size: AEI-Net forward only.
The measurement is streamswap/bench/generator.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.generator import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
