"""Keypoint jitter on a real video: raw lite detections vs GHOST's moving average vs our Kalman tracks.
The measurement is streamswap/bench/jitter.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.jitter import main  # noqa: E402

if __name__ == "__main__":
    main()
