"""Training speed (steps/s) of the GHOST trainer, by precision.
The measurement is streamswap/bench/train_step.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.train_step import main  # noqa: E402

if __name__ == "__main__":
    main()
