"""`diffskip tune`: find the best plan within a FLOPs budget and save it as a plan file (JSON)."""
from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from ..fileio import check_output, read_bytes, write_atomic
from . import options as opt
from .common import DEFAULT_MODEL, DEFAULT_PROMPTS, UsageError, load

HELDOUT = ["a studio photo of a coat", "a sandal, centered", "a black and white image of a shirt",
           "a clothing photo of a dress"]


def budget(text: str) -> float:
    """argparse type: a FLOPs fraction in (0, 1]."""
    try:
        value = float(text) if text.isascii() else math.nan
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is invalid; allowed: a FLOPs fraction in (0, 1], e.g. 0.35.")
    return value


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `tune` options."""
    g.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, diffusers folder or hub id")
    g.add_argument("--budget", type=budget, default=0.35, help="FLOPs budget relative to --steps plain steps, in (0, "
                                                               "1]")
    g.add_argument("--steps", type=opt.int_in(2, 1000), default=20,
                   help="the full-step run the plan is measured against (at most what the scheduler allows)")
    g.add_argument("--prompt", action="append", help="calibration prompt (repeat; default: 4 garments)")
    g.add_argument("--heldout", action="append", help="held-out prompt for validation (repeat; default: 4)")
    g.add_argument("--schedulers", default="own,dpm++", help="comma-separated: own, dpm++")
    g.add_argument("--no-jumps", action="store_true", help="leave the analytic Gaussian jump out of the search")
    g.add_argument("--seed", type=opt.seed, default=0, help="generator seed of the calibration images")
    g.add_argument("--out", default="plan.json", help="plan file to write (a new file, or --overwrite)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out (only once the search finished)")


def run(args: argparse.Namespace) -> int:
    """Run the search, print every candidate and the pick, write the plan file."""
    out = check_output(args.out, "--out", args.overwrite)
    schedulers = tuple(s.strip() for s in args.schedulers.split(",") if s.strip())
    from ..plan_files import SCHEDULERS, save_plan

    if not schedulers or set(schedulers) - set(SCHEDULERS):
        raise UsageError(f"--schedulers {args.schedulers!r}: allowed: a comma-separated subset of {list(SCHEDULERS)}.")
    from .checks import check_steps

    pipe = load(args.model, "never")
    check_steps(pipe, args.steps, "--steps")
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or DEFAULT_PROMPTS[:4]
    res = pipe.tune(prompts, budget=args.budget, num_inference_steps=args.steps, heldout=args.heldout or HELDOUT,
                    seed=args.seed, schedulers=schedulers, jumps=not args.no_jumps)
    with tempfile.TemporaryDirectory() as tmp:  # the plan's own writer, then one atomic write into place
        data = read_bytes(save_plan(res, Path(tmp) / "plan.json", pipe.denoiser, model=pipe.source), "plan")
    write_atomic(out, data, "--out")
    for t in sorted(res.table, key=lambda t: -(t.psnr if t.psnr is not None else -1)):
        flops = "error" if t.flops is None else f"{t.flops:.3f}"
        print(f"  {t.label():58s} FLOPs {flops:>6s}  PSNR {t.psnr if t.psnr is None else round(t.psnr, 2)}"
              + (f"  ({t.error})" if t.error else ""))
    print(f"plan: {res}")
    print(f"wrote {out}; use it with `diffskip generate --plan {out}` or DiffSkipPipeline.from_pretrained(..., "
          f"plan={str(out)!r})")
    return 0
