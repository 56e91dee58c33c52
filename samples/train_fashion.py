"""Train the embedded Fashion-MNIST models: python samples/train_fashion.py {clip,vae,unet,pixart,classifier,all}."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # benchmarks/, zoo/ beside diffskip/

from zoo import MODELS, train_all, train_one  # noqa: E402


def main() -> None:
    """Parse arguments and train (resuming from runs/<model>/ when a checkpoint exists)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model", choices=[*MODELS, "all"])
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="wall-clock budget (total across resumes; 'all' splits it 1:3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="checkpoint folder")
    parser.add_argument("--out", type=Path, default=Path("diffskip/assets"), help="export folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.model == "all":
        train_all(args.minutes, args.device, args.runs, args.out)
    else:
        train_one(args.model, args.minutes, args.device, args.runs, args.out)


if __name__ == "__main__":
    main()
