"""Checks of `diffskip generate` options: before the model loads (precheck), against the loaded model
(check_loaded), and the run identity an output folder records."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import UsageError


def check_loaded(pipe, args: argparse.Namespace) -> None:
    """Check --steps and --size against the loaded scheduler and denoiser, before any image is made."""
    sched = pipe.scheduler
    trial = type(sched).from_config(sched.config)
    n = trial.config.get("num_train_timesteps", None)

    def fits(k: int) -> bool:
        try:
            trial.set_timesteps(k)
        except Exception:  # noqa: BLE001  (schedulers refuse a count in their own ways)
            return False
        ts = trial.timesteps
        return len(ts) > 0 and (n is None or (float(ts.max()) < n and float(ts.min()) >= 0))

    if not fits(args.steps):
        lo, hi = 1, min(args.steps, n or args.steps)  # the largest count that fits (fits(1) is assumed)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        raise UsageError(f"--steps {args.steps}: {type(sched).__name__} ({n} training timesteps) cannot run it; "
                         f"allowed: 1 to {lo} steps. Fix: --steps {min(lo, 25)}.")
    size = getattr(args, "size", None)
    den = getattr(pipe, "denoiser", None)
    unit = getattr(pipe, "vae_scale_factor", 8) * (getattr(getattr(den, "config", None), "patch_size", None) or 1)
    if size is not None and size % unit:
        raise UsageError(f"--size {size}: this model needs a multiple of {unit}; e.g. --size {max(unit, size // unit * unit)}.")
    policy = pipe.policy
    if hasattr(policy, "check_steps"):
        policy.check_steps(args.steps)


def identity(args: argparse.Namespace, pipe=None) -> dict:
    """Return what made a folder: the options now, plus weights and scheduler once `pipe` is loaded."""
    from ..policies import parse

    out = {"model": args.model, "steps": args.steps, "guidance": args.guidance, "size": args.size,
           "policy": str(parse(args.policy))}
    if getattr(args, "plan", None) is not None:  # the plan's scheduler and jump, by content
        import hashlib

        out["plan"] = hashlib.sha256(Path(args.plan).read_bytes()).hexdigest()[:16]
    if getattr(args, "control", None):
        out.update(control=args.control, control_scale=args.control_scale)
        if args.control_image:
            import hashlib

            out["control_image"] = hashlib.sha256(Path(args.control_image).read_bytes()).hexdigest()[:16]
    if not args.prompts:
        from .generate import DEFAULT_PROMPTS

        out.update(prompts=args.prompt or DEFAULT_PROMPTS, per_prompt=args.per_prompt, seed=args.seed,
                   baseline=args.baseline)
    if pipe is not None:
        from ..runfolder import config_hash, weights_hash

        inner = getattr(pipe, "pipe", pipe)
        out.update(pipeline=type(inner).__name__, weights=weights_hash(inner), scheduler=type(inner.scheduler).__name__,
                   scheduler_config=config_hash(inner.scheduler.config))
    return out


def precheck(args: argparse.Namespace) -> None:
    """Checks that need no model: the policy against --steps (a mask of another length is refused now)."""
    from ..policies import parse

    policy = parse(args.policy)
    if hasattr(policy, "check_steps"):
        policy.check_steps(args.steps)
