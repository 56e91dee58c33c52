"""Run the benchmark grid and write its report: the same code as `diffskip bench`, which this script forwards to.

    python samples/benchmark.py --pipelines fashion-pixart fashion-sd --steps 20 50 --n 100 --repeats 1
    python samples/benchmark.py --pipelines fashion-pixart fashion-sd --steps 20 50 --n 100 --repeats 5 \
        --retime --docs docs
"""
from __future__ import annotations

import sys

from diffskip.cli import main

if __name__ == "__main__":
    main(["bench", *sys.argv[1:]])
