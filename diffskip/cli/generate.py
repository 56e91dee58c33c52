"""`diffskip generate`: render a prompt grid with a policy (and the exact baseline), or every row of a prompt file.

Grid mode lives in `cli/grid.py`, batch mode (`--prompts`) in `cli/batchmode.py`; this module holds the options.
"""
from __future__ import annotations

import argparse

from . import options as opt
from .batchmode import run_batch
from .checks import control_scale, plan_file
from .common import (DEFAULT_MODEL, DEFAULT_PROMPTS, DEFAULT_STEPS, MIN_STEPS_EVERY, UsageError, default_policy,
                     policy_spec)

__all__ = ["add_arguments", "run", "run_batch", "DEFAULT_MODEL", "DEFAULT_PROMPTS"]

POLICY_HELP = (f"policy spec string (default: chosen from --steps, never worse than fewer plain steps on the embedded "
               f"models: interval:every=3 from {MIN_STEPS_EVERY[3]} steps, interval:every=2 from {MIN_STEPS_EVERY[2]}, "
               f"never below; docs/defaults.md)")


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `generate` options."""
    g.add_argument("--model", default=DEFAULT_MODEL, help="embedded name (fashion-sd, fashion-pixart), diffusers "
                                                          "folder, hub id, or tiny-sd")
    g.add_argument("--policy", default=None, type=policy_spec, help=POLICY_HELP)
    g.add_argument("--prompt", action="append", help="a prompt (repeat for several; default: 10 garments)")
    g.add_argument("--prompts", default=None,
                   help="prompt file (.txt: one a line; .jsonl: {prompt, seed, negative_prompt, width, height, "
                        "control_image}): batch mode, resumable, writes {index:06d}.png + manifest.jsonl; --seed is "
                        "the base seed")
    g.add_argument("--batch-size", type=opt.int_in(1, 256), default=4, help="batch mode: images per pipeline call")
    g.add_argument("--steps", type=opt.steps, default=None,
                   help="denoising steps, 1 to what the scheduler allows (default: the --plan's, else "
                        f"{DEFAULT_STEPS})")
    g.add_argument("--plan", default=None, help="a plan file from `diffskip tune` (policy, steps, scheduler, "
                                                 "jump); replaces --policy; the baseline is the full run it was "
                                                 "tuned against")
    g.add_argument("--force", action="store_true", help="apply --plan even if it was tuned on another denoiser "
                                                       "(or records none)")
    g.add_argument("--guidance", type=opt.guidance, default=4.0, help="guidance scale in [1, 100] (1: no CFG)")
    g.add_argument("--per-prompt", type=opt.int_in(1, 64), default=1, help="images per prompt")
    g.add_argument("--size", type=opt.size, default=None,
                   help="height = width in pixels, a multiple of 8 up to 2048 (default: the model's)")
    g.add_argument("--seed", type=opt.seed, default=0, help="grid: generator seed; batch: base seed (+ row index)")
    g.add_argument("--cols", type=opt.int_in(1, 100), default=None, help="grid columns (default: up to 10 per row)")
    g.add_argument("--cell", type=opt.int_in(1, 1024), default=96, help="pixels per grid cell (nearest-neighbour "
                                                                        "upscale)")
    g.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also render the unaccelerated grid and report PSNR and wall-clock against it")
    g.add_argument("--repeats", type=opt.int_in(1, 100), default=1,
                   help="grid: timed runs of baseline and accelerated, interleaved after a warm-up (medians printed)")
    g.add_argument("--control", default=None,
                   help="control branch: a shipped name (fashion-pixart-relactrl-edges, ...) or a folder; with "
                        "--control-image")
    g.add_argument("--control-image", action="append", default=None,
                   help="condition image (e.g. an edge map) for --control: one for all prompts, or repeat once per "
                        "--prompt")
    g.add_argument("--control-scale", type=control_scale, default=1.0,
                   help="multiplies the control residuals: a finite number in [0, 10] (0: no control, 1: as trained)")
    g.add_argument("--device", default="auto", help="torch device: auto (cuda when available, else cpu), cpu, cuda:N")
    g.add_argument("--out", default="out/generate",
                   help="output folder; it records the run that made it (run.json) and refuses another run")
    g.add_argument("--overwrite", action="store_true",
                   help="replace another run's diffskip files in --out (only once the new run has succeeded)")


def run(args: argparse.Namespace) -> int:
    """Run `diffskip generate` and print its summary (exit status 1 when prompt rows were bad)."""
    args.full_steps = None
    if args.plan is not None:  # a bad plan fails before the model loads
        if args.policy is not None:
            raise UsageError(f"--plan {args.plan} and --policy {args.policy} both set the policy; allowed: one of "
                             "them.")
        data = plan_file(args.plan)
        args.steps, args.policy = args.steps or data["num_steps"], data["policy"]
        full = data.get("full_steps")
        args.full_steps = full if isinstance(full, int) and not isinstance(full, bool) and full >= 1 else None
    args.steps = args.steps or DEFAULT_STEPS
    args.policy = args.policy or default_policy(args.steps)
    if args.prompts:
        return run_batch(args)
    from .grid import generate, summary

    for line in summary(generate(args), args.out):
        print(line)
    return 0
