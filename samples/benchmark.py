"""Run the benchmark grid and write its report (the same code as `python -m benchmarks`).

    python samples/benchmark.py --pipelines fashion-pixart fashion-sd --steps 20 50 --n 100 --repeats 1
    python samples/benchmark.py --pipelines fashion-pixart fashion-sd --steps 20 50 --n 100 --repeats 5 \
        --retime --docs docs
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives beside diffskip/, not in it

from benchmarks.__main__ import main  # noqa: E402

if __name__ == "__main__":
    main()
