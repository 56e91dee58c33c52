"""Forecasters: turn what a unit computed at earlier steps into the value replayed at the current step.

A forecaster is a strategy object with its own per-key state; `FORECASTERS` maps a policy's `forecast=`
order to one. Replay returns the cached value as is; Taylor extrapolates along the slope between the last
two computes (first order, after TaylorSeer, Liu et al. 2025) or with the Newton divided differences of the
last three (second order). Slopes are kept per batch row, so rows that computed at different steps (per-sample
decisions) extrapolate from their own last compute.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .tensors import extrapolate, first_tensor, merge_rows, nbytes, rate, take_rows

__all__ = ["Forecaster", "Replay", "Taylor", "FORECASTERS"]


class Forecaster:
    """Base: keep nothing, replay the cached value as is."""

    def update(self, key: Any, old: Any, new: Any, step: int, rows: tuple[int, ...] | None) -> None:
        """Note that `key` computed `new` at `step` (rows None: every row; else only those rows)."""

    def predict(self, key: Any, value: Any, step: int) -> Any:
        """Return the value to replay for `key` at `step`, given its cached `value`."""
        return value

    def drop(self, key: Any) -> None:
        """Forget `key`."""

    def nbytes(self) -> int:
        return 0


Replay = Forecaster


class Taylor(Forecaster):
    """Extrapolate in the step index from the last two (order 1) or three (order 2) computes."""

    def __init__(self, order: int = 1):
        self.order = order
        self.slope: dict[Any, Any] = {}  # change per step between the last two computes
        self.at: dict[Any, list[int]] = {}  # per row: the step of the last compute
        self.curv: dict[Any, Any] = {}  # order 2: second divided difference of the last three computes
        self.gap: dict[Any, torch.Tensor] = {}  # order 2: per row, steps between the last two computes

    def update(self, key: Any, old: Any, new: Any, step: int, rows: tuple[int, ...] | None) -> None:
        batch = first_tensor(new).shape[0]
        if old is not None:
            dev = first_tensor(new).device
            at = self.at[key]
            if rows is None:  # the usual case: every row computed
                gap = torch.tensor([float(step - a) for a in at], dtype=torch.float64, device=dev)
                slope = rate(new, old, 1 / gap)
                if self.order == 2 and key in self.gap:  # (slope - previous slope) / (t2 - t0)
                    self.curv[key] = rate(slope, self.slope[key], 1 / (gap + self.gap[key]))
                self.slope[key], self.gap[key] = slope, gap
            else:
                self.curv.pop(key, None)
                self.gap.pop(key, None)
                idx = torch.tensor(rows, device=dev)
                k = torch.tensor([1.0 / (step - at[r]) for r in rows], dtype=torch.float64, device=dev)
                fresh = rate(take_rows(new, idx), take_rows(old, idx), k)
                base = self.slope[key] if key in self.slope else rate(old, old, torch.zeros(len(at), device=dev))
                self.slope[key] = merge_rows(base, fresh, idx)
        prev = self.at.get(key, [step] * batch)
        self.at[key] = [step] * batch if rows is None else [step if r in rows else a for r, a in enumerate(prev)]

    def predict(self, key: Any, value: Any, step: int) -> Any:
        if key not in self.slope:  # slope 0 before two computes
            return value
        k = torch.tensor([float(step - a) for a in self.at[key]], dtype=torch.float64,
                         device=first_tensor(value).device)
        out = extrapolate(value, self.slope[key], k)
        if self.order == 2 and key in self.curv:  # Newton: + (t - t2)(t - t1) * second divided difference
            out = extrapolate(out, self.curv[key], k * (k + self.gap[key]))
        return out

    def drop(self, key: Any) -> None:
        for d in (self.slope, self.at, self.curv, self.gap):
            d.pop(key, None)

    def nbytes(self) -> int:
        return nbytes((self.slope, self.curv))


FORECASTERS: dict[int, Callable[[], Forecaster]] = {0: Replay, 1: lambda: Taylor(1), 2: lambda: Taylor(2)}
