"""Fingerprint a denoiser's weights cheaply, so a tuned plan is applied only to the model it was tuned on.

The fingerprint is a SHA-256 of the parameter names and shapes (another architecture or block layout differs)
and 32 sampled weight values: the middle element of 32 weight tensors (2-D and up) spread evenly over the
model. Values compare to 1% relative (or the rounding step of a coarser storage dtype such as float8), so the
same checkpoint loaded in float32, float16 or bfloat16 matches while another checkpoint of the same architecture
does not. It reads 32 numbers, never the whole model. Names are taken as `torch.compile(model)` would leave them
without its `_orig_mod.` prefix; LoRA adapters loaded into the denoiser add parameters (apply the plan first).
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import nn

from .errors import DiffSkipError

__all__ = ["fingerprint", "check_fingerprint", "VALUES", "RTOL"]
VALUES = 32  # sampled weight values
RTOL = 0.01  # relative tolerance of a sampled value (bfloat16 keeps about 3 significant digits)


def _sample(model: nn.Module) -> tuple[dict[str, Any], list[tuple[float, float]]]:
    """Return the fingerprint and, per sampled value, the (relative, subnormal) rounding steps of its dtype."""
    params = [(n.replace("_orig_mod.", ""), p) for n, p in model.named_parameters()]  # torch.compile(model) too
    shapes = hashlib.sha256("".join(f"{n}:{tuple(p.shape)};" for n, p in params).encode()).hexdigest()[:16]
    weights = [(n, p) for n, p in params if p.ndim >= 2] or params
    picks = sorted({round(i * (len(weights) - 1) / (VALUES - 1)) for i in range(VALUES)}) if weights else []
    values, steps = [], []
    for i in picks:
        name, p = weights[i]
        if p.is_meta:
            raise DiffSkipError(f"cannot read the weight {name} of {type(model).__name__} (on the meta device, e.g. "
                                f"sequential CPU offload); apply the plan before offloading, or pass force=True.")
        values.append(float(f"{float(p.detach().reshape(-1)[p.numel() // 2]):.6g}"))
        info = torch.finfo(p.dtype) if p.dtype.is_floating_point else None
        steps.append((info.eps, info.tiny * info.eps) if info else (0.0, 0.0))
    return {"shapes": shapes, "values": values}, steps


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Return {'shapes': hash of parameter names and shapes, 'values': sampled weights} of a denoiser."""
    return _sample(model)[0]


def _differs(want: dict[str, Any], model: nn.Module) -> str | None:
    """Say how the model differs from a recorded fingerprint, or None when it matches."""
    have, steps = _sample(model)
    if want["shapes"] != have["shapes"] or len(want["values"]) != len(have["values"]):
        return "its parameter names or shapes differ (another architecture)"
    off = sum(not math.isclose(a, b, rel_tol=max(RTOL, rel), abs_tol=max(1e-6, sub))  # float8 rounds more than 1%
              for a, b, (rel, sub) in zip(want["values"], have["values"], steps))
    if off:
        return f"{off} of {len(have['values'])} sampled weights differ by more than {RTOL:.0%} (other weights)"
    return None


def check_fingerprint(plan: dict[str, Any], model: nn.Module, force: bool, where: str) -> None:
    """Raise unless the plan's recorded denoiser fingerprint matches `model` (skipped when `force`)."""
    if force:
        return
    fix = "tune a plan on this model, or pass force=True (CLI: --force) to apply it anyway"
    want = plan.get("denoiser")
    if want is None:
        raise DiffSkipError(f"{where} records no denoiser fingerprint (written before diffskip checked the model); "
                            f"{fix}.")
    why = _differs(want, model)
    if why is not None:
        raise DiffSkipError(f"{where} was tuned on another denoiser (model {plan.get('model')!r}) than this "
                            f"{type(model).__name__}: {why}; {fix}.")
