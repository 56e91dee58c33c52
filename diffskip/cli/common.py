"""What the `diffskip` subcommands share: defaults, the usage error, option types, device and model loading.

Imports nothing heavy at module level (torch and diffusers load inside the functions that need them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import DiffSkipError, short

__all__ = ["UsageError", "policy_spec", "load", "device", "default_policy", "DEFAULT_MODEL", "DEFAULT_STEPS",
           "DEFAULT_PROMPTS", "MIN_STEPS_EVERY"]

DEFAULT_MODEL = "fashion-sd"
DEFAULT_STEPS = 25
DEFAULT_PROMPTS = ["a photo of a t-shirt", "a pair of trousers, product shot", "a pullover on white",
                   "a dress, studio photo", "a photo of a coat", "a sandal, catalogue image", "a shirt, product shot",
                   "a photo of a sneaker", "a bag on white", "an ankle boot, studio photo"]
# the default policy by step count (docs/defaults.md: measured against fewer plain steps at equal FLOPs):
# below MIN_STEPS_EVERY[2] steps caching loses to fewer steps, so the default computes every step
MIN_STEPS_EVERY = {3: 8, 2: 6}


class UsageError(DiffSkipError, ValueError):
    """Bad command-line input found after parsing (printed as one line, exit status 2)."""


def policy_spec(text: str) -> str:
    """argparse type: a policy spec, checked now so its own message reaches the user."""
    from ..policies import parse  # light: no torch

    try:
        return str(parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def default_policy(steps: int) -> str:
    """Return the default policy for a run of `steps` steps: never worse than fewer plain steps (measured)."""
    for every, lo in sorted(MIN_STEPS_EVERY.items(), reverse=True):
        if steps >= lo:
            return f"interval:every={every}"
    return "never"


def device(name: str) -> str:
    """Return the torch device for --device ('auto': CUDA when available); refuse one that cannot run here."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    allowed = "allowed: auto, cpu, or an accelerator this machine has (cuda, cuda:0, mps, ...)"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise UsageError(f"--device {short(name, 60)} is not a device name; {allowed}. Fix: --device auto.") from None
    if dev.type == "meta":
        raise UsageError(f"--device {name}: the meta device holds no data and cannot render; {allowed}.")
    if dev.type != "cpu":
        backend = getattr(torch, dev.type, None) if dev.type != "mps" else getattr(torch.backends, "mps", None)
        available = bool(backend is not None and getattr(backend, "is_available", lambda: False)())
        count = getattr(backend, "device_count", lambda: 1)() if available else 0
        if not available or (dev.index is not None and dev.index >= count):
            raise UsageError(f"--device {name}: no such device on this machine ({dev.type} devices: {count}); "
                             f"{allowed}. Fix: --device auto.")
    return name


def load(model: str, policy: str, plan: str | None = None, control: str | None = None, force: bool = False):
    """Load `model` (an embedded name, a diffusers folder, a hub id, or 'tiny-sd') wrapped with `policy`
    (or the tuned `plan` file's policy, scheduler and jump; `force`: even if tuned on another denoiser), with an
    optional control model."""
    from ..pipeline import DiffSkipPipeline, resolve_model

    if model == "tiny-sd":
        from ..testing import tiny_pipeline

        if control:
            raise UsageError("--control needs a PixArt-style model (e.g. --model fashion-pixart); tiny-sd has none.")
        fast = DiffSkipPipeline(tiny_pipeline("sd"), policy)
        if plan is not None:
            fast.apply_plan(plan, force=force)
        return fast
    allowed = ("allowed: an embedded name (fashion-sd, fashion-pixart), a diffusers pipeline folder, a hub id, or "
               "tiny-sd")
    try:
        path = Path(resolve_model(model))
        exists = path.exists()
    except OSError as exc:  # a name too long for the file system
        raise UsageError(f"--model {short(model, 60)}: not a usable name ({exc.strerror}); {allowed}.") from None
    if exists and not (path / "model_index.json").exists():
        raise UsageError(f"--model {short(model, 120)}: {short(str(path), 120)} has no model_index.json; {allowed}.")
    try:
        return DiffSkipPipeline.from_pretrained(str(path) if exists else model, policy, plan=plan, control=control,
                                                force=force)
    except DiffSkipError:
        raise
    except Exception as exc:  # noqa: BLE001  (diffusers, hub and safetensors raise many kinds: one line each)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"--model {short(model, 120)}: cannot load it ({type(exc).__name__}: {first}); {allowed}. "
                         f"Fix the name, or re-download a damaged folder.") from None
