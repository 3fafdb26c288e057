"""GPU video check: NVDEC decode vs PyAV, the NVENC probe and the CUDA transcode path.
The measurement is streamswap/bench/gpu_video_check.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.gpu_video_check import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
