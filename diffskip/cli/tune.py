"""`diffskip tune`: find the best plan within a FLOPs budget and save it as a plan file (JSON)."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import UsageError
from .generate import DEFAULT_MODEL, DEFAULT_PROMPTS

HELDOUT = ["a studio photo of a coat", "a sandal, centered", "a black and white image of a shirt",
           "a clothing photo of a dress"]


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `tune` options."""
    g.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, diffusers folder or hub id")
    g.add_argument("--budget", type=float, default=0.35, help="FLOPs budget relative to --steps plain steps")
    g.add_argument("--steps", type=int, default=20, help="the full-step run the plan is measured against")
    g.add_argument("--prompt", action="append", help="calibration prompt (repeat; default: 4 garments)")
    g.add_argument("--heldout", action="append", help="held-out prompt for validation (repeat; default: 4)")
    g.add_argument("--schedulers", default="own,dpm++", help="comma-separated: own, dpm++")
    g.add_argument("--no-jumps", action="store_true", help="leave the analytic Gaussian jump out of the search")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--out", default="plan.json", help="plan file to write")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    """Run the search, print every candidate and the pick, write the plan file."""
    if not 0 < args.budget <= 1:
        raise UsageError(f"--budget {args.budget}: allowed: a FLOPs fraction in (0, 1], e.g. 0.35.")
    if args.steps < 2 or args.steps > 1000:
        raise UsageError(f"--steps {args.steps}: allowed: an int in [2, 1000].")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; allowed: a new file, or add --overwrite to replace it.")
    schedulers = tuple(s.strip() for s in args.schedulers.split(",") if s.strip())
    from ..plan_files import SCHEDULERS

    if not schedulers or set(schedulers) - set(SCHEDULERS):
        raise UsageError(f"--schedulers {args.schedulers!r}: allowed: a comma-separated subset of {list(SCHEDULERS)}.")
    from .generate import load

    pipe = load(args.model, "never")
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or DEFAULT_PROMPTS[:4]
    res = pipe.tune(prompts, budget=args.budget, num_inference_steps=args.steps, heldout=args.heldout or HELDOUT,
                    save=out, seed=args.seed, schedulers=schedulers, jumps=not args.no_jumps)
    for t in sorted(res.table, key=lambda t: -(t.psnr if t.psnr is not None else -1)):
        flops = "error" if t.flops is None else f"{t.flops:.3f}"
        print(f"  {t.label():58s} FLOPs {flops:>6s}  PSNR {t.psnr if t.psnr is None else round(t.psnr, 2)}"
              + (f"  ({t.error})" if t.error else ""))
    print(f"plan: {res}")
    print(f"wrote {out}; use it with `diffskip generate --plan {out}` or DiffSkipPipeline.from_pretrained(..., "
          f"plan={str(out)!r})")
    return 0
