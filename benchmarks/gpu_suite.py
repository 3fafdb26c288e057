"""The GPU device suite (preflight, NVDEC and formats, the ghost path, the generator, the baseline
ratio) as JSON; the measurement is streamswap/bench/gpu_suite.py, whose docstring gives the two
device runs and the wheels each carries. This is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.gpu_suite import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
