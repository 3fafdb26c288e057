"""Memory of a long live job with faces entering and leaving (`streamswap live`, lite engine).
The measurement is streamswap/bench/live_rss.py; this is its command line (`--help`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's streamswap, installed or not

from streamswap.bench.live_rss import main  # noqa: E402

if __name__ == "__main__":
    main()
