"""Checks of `diffskip generate` options: before the folder is touched (precheck), against the loaded model
(check_loaded), and the run identity an output folder records."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from ..errors import short
from ..fileio import check_input, image_digest, read_bytes
from .common import DEFAULT_PROMPTS, UsageError, device
from .options import real_in

MAX_CONTROL_SCALE = 10.0


# argparse type: a finite control scale in [0, MAX_CONTROL_SCALE] (0: the base model, 1: as trained)
control_scale = real_in(0.0, MAX_CONTROL_SCALE, "0: no control, 1: as trained")


def precheck(args: argparse.Namespace) -> None:
    """Checks that need no model, run before the output folder is touched: device, policy, control, inputs."""
    from ..pipeline import resolve_model
    from ..policies import parse

    if not str(args.out).strip():
        raise UsageError("--out is empty; allowed: a folder path. Fix: give one, e.g. --out out/run.")
    try:
        Path(resolve_model(args.model)).exists()
    except OSError as exc:  # a name too long for the file system
        raise UsageError(f"--model {short(args.model, 60)}: not a usable name ({exc.strerror}); allowed: an embedded "
                         f"name, a diffusers folder, a hub id, or tiny-sd.") from None
    device(args.device)
    policy = parse(args.policy)
    if hasattr(policy, "check_steps"):
        policy.check_steps(args.steps)
    images = getattr(args, "control_image", None) or []
    if bool(args.control) != bool(images) and not args.prompts:
        raise UsageError("--control (a control branch: a shipped name like fashion-pixart-relactrl-edges, or a folder) "
                         "and --control-image (the condition image) go together; pass both or neither.")
    if args.control:
        from ..assets.controls import check_base, control_path

        check_base(control_path(args.control), args.model)
    n = len(args.prompt or DEFAULT_PROMPTS)
    if len(images) not in (0, 1, n) and not args.prompts:
        raise UsageError(f"--control-image given {len(images)} times for {n} prompts; allowed: one image for all "
                         f"prompts, or one per --prompt in order.")
    for path in images:
        image_digest(path, "--control-image")  # a file that decodes, not too large, not a FIFO or device


def check_steps(pipe, steps: int, what: str = "--steps") -> None:
    """Refuse a step count the loaded scheduler cannot run (e.g. 1000 steps of a 1000-step DDIM), in one line."""
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

    if not fits(steps):
        lo, hi = 1, min(steps, n or steps)  # the largest count that fits (fits(1) is assumed)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        raise UsageError(f"{what} {steps}: {type(sched).__name__} ({n} training timesteps) cannot run it; "
                         f"allowed: 1 to {lo} steps. Fix: --steps {min(lo, 25)}.")


def check_loaded(pipe, args: argparse.Namespace) -> None:
    """Check --steps, --size and the control branch against the loaded model, before any image is made."""
    check_steps(pipe, args.steps)
    inner = getattr(pipe, "pipe", pipe)
    if args.steps == 1 and type(inner).__name__.startswith("PixArt") and "LCM" not in type(inner.scheduler).__name__:
        # diffusers' PixArt pipelines read the scheduler's x0 output at one step, which only LCM-style ones return
        raise UsageError(f"--steps 1: {type(inner).__name__} runs one step only with an LCM-style scheduler, not "
                         f"{type(inner.scheduler).__name__}; allowed: 2 steps or more. Fix: --steps 2.")
    if getattr(args, "full_steps", None):
        check_steps(pipe, args.full_steps, "the plan's full_steps")
    size = getattr(args, "size", None)
    den = getattr(pipe, "denoiser", None)
    unit = getattr(pipe, "vae_scale_factor", 8) * (getattr(getattr(den, "config", None), "patch_size", None) or 1)
    if size is not None and size % unit:
        near = max(unit, size // unit * unit)
        raise UsageError(f"--size {size}: this model needs a multiple of {unit}; e.g. --size {near}.")
    if getattr(args, "control", None):
        from ..assets.controls import check_base, control_path

        check_base(control_path(args.control), args.model, den)
    policy = pipe.policy
    if hasattr(policy, "check_steps"):
        policy.check_steps(args.steps)


def identity(args: argparse.Namespace, pipe=None) -> dict:
    """Return what made a folder: the options now, plus weights and scheduler once `pipe` is loaded."""
    from ..policies import parse

    out = {"model": args.model, "steps": args.steps, "guidance": args.guidance, "size": args.size,
           "policy": str(parse(args.policy))}
    if getattr(args, "plan", None) is not None:  # the plan's scheduler and jump, by content
        out["plan"] = hashlib.sha256(read_bytes(args.plan, "--plan")).hexdigest()[:16]
    if getattr(args, "control", None):
        out.update(control=args.control, control_scale=args.control_scale)
        if args.control_image:
            out["control_image"] = [image_digest(p, "--control-image") for p in args.control_image]
    if args.prompts:
        out["batch_size"] = args.batch_size  # batches are not bitwise independent of their size
    else:
        out.update(prompts=args.prompt or DEFAULT_PROMPTS, per_prompt=args.per_prompt, seed=args.seed,
                   baseline=args.baseline)
    if pipe is not None:
        from ..runfolder import config_hash, weights_hash

        inner = getattr(pipe, "pipe", pipe)
        out.update(pipeline=type(inner).__name__, weights=weights_hash(inner), scheduler=type(inner.scheduler).__name__,
                   scheduler_config=config_hash(inner.scheduler.config))
    return out


def plan_file(path: str) -> dict:
    """Read a plan file (a regular file: a FIFO is refused, never waited on) and return its validated dict."""
    from ..plan_files import load_plan

    check_input(path, "--plan")
    try:
        return load_plan(path)
    except (KeyError, RecursionError, TypeError) as exc:
        raise UsageError(f"--plan {path}: not a valid plan ({type(exc).__name__}: {str(exc)[:80]}); allowed: a file "
                         f"written by `diffskip tune` with policy and num_steps. Fix: tune again.") from None
