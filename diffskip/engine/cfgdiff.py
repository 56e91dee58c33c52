"""FasterCache's CFG cache (Lv et al. 2024, "FasterCache: Training-Free Video Diffusion Model Acceleration with
High Quality"): a skipped unconditional row replays its conditional partner's fresh value minus the
(cond - uncond) difference cached when both last computed, instead of its own stale value.

Under guidance scale g the output is uncond + g (cond - uncond): an unconditional value that is stale while the
conditional one is fresh moves the difference by the unconditional's change over the skipped steps, times g - 1.
Reusing the difference keeps the two halves consistent. Rows pair within a batched call ([uncond, cond]: row u
with row u + B/2); pipelines calling the denoiser twice per step keep the own-value form (no pairing across calls).
"""
from __future__ import annotations

from typing import Any

import torch

from .forecast import FORECASTERS, Forecaster
from .tensors import first_tensor, merge_rows, nbytes, take_rows

__all__ = ["CfgDiff", "pairs"]

# The form batched guidance uses: "diff" (this module) or "own" (a skipped row replays its own cache, as the
# two-call form always does). benchmarks/cfg.py switches it to measure both: "diff" measured 5-21 dB better on
# both embedded models (docs/bench_cfg.md).
FORM = "diff"


def pairs(uncond: tuple[int, ...], batch: int) -> dict[int, int]:
    """Map each unconditional row to its conditional partner in a batched call (the other half, same order)."""
    half = batch // 2
    return {u: u + half if u < half else u - half for u in uncond}


def _minus(a: Any, b: Any) -> Any:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a - b
    if isinstance(a, (tuple, list)):
        return type(a)(_minus(x, y) for x, y in zip(a, b))
    return a


class CfgDiff:
    """One branch's cached (cond - uncond) differences per cache key, one row per unconditional row; with the
    policy's `forecast=` they are extrapolated in the step index like unit values (TaylorSeer on the difference)."""

    def __init__(self, forecast: int = 0) -> None:
        self.diff: dict[Any, Any] = {}  # key -> (len(uncond), ...) tree: cond - uncond at their last joint compute
        self.order: tuple[int, ...] = ()  # the unconditional rows, in the order of the difference's rows
        self.forecaster: Forecaster = FORECASTERS[forecast]()

    def update(self, key: Any, raw: Any, uncond: tuple[int, ...], computed: tuple[int, ...] | None,
               step: int) -> None:
        """After `key` stored `raw` (computed rows fresh; None: every row), refresh the pairs that both computed."""
        if not uncond:
            return
        mate = pairs(uncond, first_tensor(raw).shape[0])
        both = [u for u in uncond if computed is None or (u in computed and mate[u] in computed)]
        if not both:
            return
        dev = first_tensor(raw).device
        fresh = _minus(take_rows(raw, torch.tensor([mate[u] for u in both], device=dev)),
                       take_rows(raw, torch.tensor(both, device=dev)))
        if key not in self.diff or self.order != uncond:
            if len(both) < len(uncond):
                return  # a partial first difference: wait for a step where every pair computes
            self.forecaster.drop(key)
            self.forecaster.update(key, None, fresh, step, None)
            self.diff[key], self.order = fresh, uncond
            return
        rows = None if len(both) == len(uncond) else tuple(uncond.index(u) for u in both)
        new = fresh if rows is None else merge_rows(self.diff[key], fresh, torch.tensor(rows, device=dev))
        self.forecaster.update(key, self.diff[key], new, step, rows)
        self.diff[key] = new

    def patch(self, key: Any, replayed: Any, fresh: Any, uncond: tuple[int, ...], computed: tuple[int, ...],
              step: int) -> Any:
        """Return `replayed` with every skipped unconditional row set to its partner's value minus the cached
        difference; the partner's value is `fresh` where it computed (the cache's raw value), else replayed."""
        if key not in self.diff or self.order != uncond:
            return replayed
        mate = pairs(uncond, first_tensor(replayed).shape[0])
        rows = [u for u in uncond if u not in computed]
        if not rows:
            return replayed
        dev = first_tensor(replayed).device
        part = lambda src, us: take_rows(src, torch.tensor([mate[u] for u in us], device=dev))  # noqa: E731
        new = [u for u in rows if mate[u] in computed]
        src = replayed if not new else merge_rows(replayed, part(fresh, new), torch.tensor(
            [mate[u] for u in new], device=dev))
        diff = self.forecaster.predict(key, self.diff[key], step)
        value = _minus(part(src, rows), take_rows(diff, torch.tensor([uncond.index(u) for u in rows], device=dev)))
        return merge_rows(replayed, value, torch.tensor(rows, device=dev))

    def nbytes(self) -> int:
        return nbytes(self.diff) + self.forecaster.nbytes()
