"""Fingerprint a denoiser's weights cheaply, so a tuned plan is applied only to the model it was tuned on.

The fingerprint is a SHA-256 of the parameter names and shapes (another architecture or block layout differs)
and 32 sampled weight values: the middle element of 32 weight tensors (2-D and up) spread evenly over the
model. Values compare to 1% relative, so the same checkpoint loaded in float32, float16 or bfloat16 matches
while another checkpoint of the same architecture does not. It reads 32 numbers, never the whole model.
"""
from __future__ import annotations

import hashlib
import math
from typing import Any

from torch import nn

from .errors import DiffSkipError

__all__ = ["fingerprint", "check_fingerprint", "VALUES", "RTOL"]
VALUES = 32  # sampled weight values
RTOL = 0.01  # relative tolerance of a sampled value (bfloat16 keeps about 3 significant digits)


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """Return {'shapes': hash of parameter names and shapes, 'values': sampled weights} of a denoiser."""
    params = list(model.named_parameters())
    shapes = hashlib.sha256("".join(f"{n}:{tuple(p.shape)};" for n, p in params).encode()).hexdigest()[:16]
    weights = [(n, p) for n, p in params if p.ndim >= 2] or params
    picks = sorted({round(i * (len(weights) - 1) / (VALUES - 1)) for i in range(VALUES)}) if weights else []
    values = []
    for i in picks:
        name, p = weights[i]
        if p.is_meta:
            raise DiffSkipError(f"cannot read the weight {name} of {type(model).__name__} (on the meta device, e.g. "
                                f"sequential CPU offload); apply the plan before offloading, or pass force=True.")
        values.append(float(f"{float(p.detach().reshape(-1)[p.numel() // 2]):.6g}"))
    return {"shapes": shapes, "values": values}


def _differs(want: dict[str, Any], have: dict[str, Any]) -> str | None:
    """Say how two fingerprints differ, or None when they match."""
    if want["shapes"] != have["shapes"] or len(want["values"]) != len(have["values"]):
        return "its parameter names or shapes differ (another architecture)"
    off = sum(not math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-6) for a, b in zip(want["values"], have["values"]))
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
    why = _differs(want, fingerprint(model))
    if why is not None:
        raise DiffSkipError(f"{where} was tuned on another denoiser (model {plan.get('model')!r}) than this "
                            f"{type(model).__name__}: {why}; {fix}.")
