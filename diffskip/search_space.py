"""The tuner's search space: which (policy, steps) candidates to measure for a FLOPs budget.

Used by `diffskip.tuning.tune`, the one search.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Sequence

from torch import nn

from .engine import hooks
from .engine.session import resolve_span
from .errors import DiffSkipError, short
from .policies import FINAL, parse

__all__ = ["live_share", "skippable_units", "candidates", "jump_candidates", "cfg_variants", "JUMP_FRACTIONS",
           "check_budget", "check_space"]
JUMP_FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.65)  # shares of the schedule the analytic jump replaces


def live_share(model: nn.Module) -> float:
    """Share of a full denoiser call's FLOPs in the units that always compute (measured, default head/tail)."""
    h = hooks.hooked(model)
    if not h.flops:
        raise DiffSkipError("no FLOPs measured on this model yet; run it once in a session with count_flops=True.")
    total, per_unit = next(iter(h.flops.values()))
    head, tail = resolve_span(parse("interval"), h.adapter, len(h.units), type(h.model).__name__)
    skippable = sum(v for i, v in per_unit.items() if head <= i < len(h.units) - tail)
    return max(0.0, min(1.0, 1 - skippable / total))


def skippable_units(model: nn.Module) -> int:
    """Skippable units of an attached model under the adapter's default head/tail."""
    h = hooks.hooked(model)
    return len(h.units) - sum(resolve_span(parse("profile"), h.adapter, len(h.units), type(h.model).__name__))


def candidates(budget: float, full_steps: int, live: float, num_units: int, rank: str | None = None,
               final: int = FINAL) -> list[tuple[str, int]]:
    """Return (policy spec, steps) pairs near the budget: fewer steps, then caching at a few step counts."""
    steps_budget = budget * full_steps
    fewer = max(1, int(steps_budget + 1e-9))
    out = [("never", fewer)]
    counts = sorted({min(full_steps, max(fewer + 1, round(steps_budget / p))) for p in (0.85, 0.7, 0.55, 0.45)}
                    | {full_steps})
    for n in counts:
        if n <= fewer:
            continue
        p = steps_budget / n  # per-step FLOPs fraction allowed
        c = (p - live) / (1 - live)  # share of the skippable unit-steps that may compute
        if c <= 0:
            continue
        c_between = (c * n - 1 - final) / max(1, n - 1 - final)  # between step 0 and the final steps
        if c_between <= 0:
            continue
        out.append((f"uniform:speedup={round(1 / c * 0.98, 3)},forecast=1", n))
        every = math.ceil(1 / c_between)
        for k in sorted({max(2, every - 1), max(2, every)}):  # the budget filter keeps what fits
            out.append((f"interval:every={k},forecast=1", n))
        out.append((f"threshold:target={round(min(1.0, max(0.01, c_between * 0.9)), 3)},forecast=1", n))
        if rank is not None:
            keep = int(c_between * num_units)
            out.append((f"profile:rank={rank},keep={keep},forecast=1", n))
    return out


def jump_candidates(budget: float, full_steps: int, live: float, num_units: int, rank: str | None,
                    best: list[tuple[str, int]]) -> list[tuple[str, int, int]]:
    """Return (policy, steps, jumped steps): the jump alone at several lengths, the jump before caching sized
    to the steps left, and a jump before the best caching plans measured (`best`)."""
    out = []
    left = max(1, int(budget * full_steps + 1e-9))  # computed steps a plain jump may leave
    for frac in JUMP_FRACTIONS:
        n = min(full_steps, round(left / (1 - frac)))
        if n > left:
            out.append(("never", n, n - left))
    for frac in JUMP_FRACTIONS[1:4]:
        k = round(frac * full_steps)
        rest = full_steps - k
        b = budget * full_steps / rest  # budget per remaining step
        if 0 < k and b < 1:
            out += [(p, full_steps, k) for p, n in candidates(b, rest, live, num_units, rank)
                    if n == rest and p != "never"]
    for p, n in best:
        out += [(p, n, round(f * n)) for f in JUMP_FRACTIONS[:3] if 0 < round(f * n) < n]
    return list(dict.fromkeys(out))


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_budget(budget: float, full_steps: int) -> None:
    """Raise unless `budget` is a real number in (0, 1] and `full_steps` an int >= 2 that leaves a step."""
    if not _real(budget) or not 0 < budget <= 1:
        raise DiffSkipError(f"budget={short(budget)} is invalid; allowed: a FLOPs fraction (a float) in (0, 1] of "
                            f"the full-step run, e.g. budget=0.35.")
    if not isinstance(full_steps, int) or isinstance(full_steps, bool) or full_steps < 2:
        raise DiffSkipError(f"full_steps={short(full_steps)} is invalid; allowed: an int >= 2 (the reference's "
                            f"steps).")
    if int(budget * full_steps) < 1:
        raise DiffSkipError(f"budget={budget} of {full_steps} steps leaves less than one step; raise the budget.")


def check_space(plain: bool, schedulers: Sequence[str | None], jumps: bool | None, stats: Any) -> bool:
    """Check the search space; return whether jumps are searched (None: where the sampler or `stats` can)."""
    if not isinstance(schedulers, (list, tuple)) or not schedulers:
        raise DiffSkipError(f"schedulers={short(schedulers)} is invalid; allowed: a non-empty list of scheduler "
                            f"names (None: the caller's own).")
    if jumps is not None and not isinstance(jumps, bool):
        raise DiffSkipError(f"jumps={short(jumps)} is invalid; allowed: True, False or None (jump where possible).")
    if not plain:  # a Sampler: it says whether it can jump
        return bool(jumps)
    if list(schedulers) != [None]:
        raise DiffSkipError(f"schedulers={short(schedulers)} needs a Sampler that can swap schedulers; a plain loop "
                            f"run(num_steps, skip=None) tunes steps x policy x jump (schedulers=(None,)).")
    if jumps and stats is None:
        raise DiffSkipError("jumps=True on a plain loop needs Gaussian statistics: pass stats=GaussianStats(...) "
                            "(diffskip.GaussianStats.from_latents / .load), or jumps=False.")
    return stats is not None and jumps is not False


def _with_cfg(spec: str, cfg: int) -> str:
    return f"{spec}{',' if ':' in spec else ':'}cfg={cfg}"


def cfg_variants(trials: Sequence[Any], budget: float, full_steps: int, live: float, top: int = 2,
                 cfgs: tuple[int, ...] = (2, 3)) -> list[Any]:
    """Return unmeasured cfg=2/3 copies (CFG-aware caching) of the `top` best measured caching trials, each at
    its own step count and at the most steps the budget allows now that the unconditional half (half the batch)
    computes its skippable units on 1 of every cfg of the policy's steps.

    `trials`: measured Trial-like dataclasses (policy, num_steps, flops, psnr, error); `live`: the FLOPs share of
    the units that always compute (`live_share`). Only for samplers whose session knows the unconditional rows
    (DiffSkipPipeline on a diffusers pipeline doing classifier-free guidance); elsewhere a cfg > 1 run raises.
    """
    cached = sorted((t for t in trials if t.policy != "never" and "cfg=" not in t.policy and t.error is None
                     and t.psnr is not None and t.flops is not None), key=lambda t: -t.psnr)[:top]
    out, seen = [], set()
    for t in cached:
        per_step = t.flops * full_steps / t.num_steps  # the trial's FLOPs per step, relative to a full step
        for cfg in cfgs:
            cheaper = per_step - max(0.0, per_step - live) * 0.5 * (1 - 1 / cfg)  # estimate: uncond half thinned
            most = min(full_steps, int(budget * full_steps / cheaper + 1e-9))
            for n in sorted({t.num_steps, most}):
                key = (_with_cfg(t.policy, cfg), n, getattr(t, "scheduler", None), getattr(t, "skip", 0))
                if n >= 1 and key not in seen:
                    seen.add(key)
                    fresh = {"policy": key[0], "num_steps": n, "flops": None, "psnr": None, "error": None,
                             "samples": None}
                    names = {f.name for f in dataclasses.fields(t)}
                    out.append(dataclasses.replace(t, **{k: v for k, v in fresh.items() if k in names}))
    return out
