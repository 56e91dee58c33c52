"""FLOP meter: measure a denoiser call's FLOPs once per input signature, then count what each call executed.

The first full call per signature runs under torch's FlopCounterMode with every unit eager
(compiled code avoids dispatch modes), recording each unit's share; later calls cost nothing to count.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from .stats import CallRecord

__all__ = ["FlopMeter", "signature_key"]


def signature_key(args: tuple, kwargs: dict) -> tuple:
    """Return the (shape, dtype) of every tensor argument: calls with equal keys cost equal FLOPs."""
    return tuple((tuple(v.shape), v.dtype) for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))


class FlopMeter:
    """Count unit evaluations per call and, where measured, the FLOPs executed vs a full call."""

    def __init__(self, table: dict[tuple, tuple[float, dict[int, float]]], enabled: bool = True):
        self.table = table  # shared by every session on the same attached model
        self.enabled = enabled
        self.counter: FlopCounterMode | None = None
        self.unit_flops: dict[int, float] = {}
        self.rows: dict[int, int] = {}  # unit index -> samples it computed in this call
        self.which: dict[int, list] = {}  # unit index -> what it ran on in this call: the batch (int) or rows
        self.saved: dict[int, float] = {}  # unit index -> samples' worth of its FLOPs that token-partial runs saved
        self.key: tuple = ()

    def call(self, fn: Callable[[], Any], args: tuple, kwargs: dict, may_measure: bool) -> Any:
        """Run one denoiser call `fn()`; measure it when its signature is new and `may_measure` (a full pass)."""
        self.rows, self.which, self.saved = {}, {}, {}
        self.key = signature_key(args, kwargs)
        if not (self.enabled and may_measure and self.key not in self.table):
            return fn()
        self.unit_flops = {}
        with FlopCounterMode(display=False) as self.counter:
            try:
                out = fn()
            finally:
                counter, self.counter = self.counter, None
        self.table[self.key] = (float(counter.get_total_flops()), dict(self.unit_flops))
        return out

    def run(self, unit, call_next: Callable, args: tuple, kwargs: dict, rows: int | tuple,
            eager: bool = False) -> Any:
        """Run a unit on all `rows` samples (an int) or those batch rows (a tuple): through `call_next` (compiled
        if the user compiled it), or eager while measuring or when `eager` (compiled code avoids dispatch modes)."""
        self.rows[unit.index] = self.rows.get(unit.index, 0) + (rows if isinstance(rows, int) else len(rows))
        self.which.setdefault(unit.index, []).append(rows)
        if self.counter is None:
            return unit.eager(*args, **kwargs) if eager else call_next(args, kwargs)
        before = self.counter.get_total_flops()
        out = unit.eager(*args, **kwargs)
        self.unit_flops[unit.index] = self.unit_flops.get(unit.index, 0.0) + self.counter.get_total_flops() - before
        return out

    def discount(self, unit: int, rows: int, fraction: float) -> None:
        """Count a unit run on `rows` samples that computed only `fraction` of their tokens at that fraction of
        its FLOPs (linear in tokens; attention among fewer tokens costs less, so this over-counts)."""
        self.saved[unit] = self.saved.get(unit, 0.0) + rows * (1.0 - fraction)

    def account(self, rec: CallRecord, batch: int, skippable: range) -> None:
        """Fill a call record: unit evaluations computed / reused / live, and FLOPs executed vs full."""
        rec.computed = sum(r for i, r in self.rows.items() if i in skippable)
        rec.reused = batch * len(skippable) - rec.computed
        rec.live = sum(r for i, r in self.rows.items() if i not in skippable)
        per_row = [0] * batch
        for i in skippable:
            for rows in self.which.get(i, ()):
                for r in (range(batch) if isinstance(rows, int) else rows):
                    per_row[r] += 1
        rec.rows_computed = per_row
        flops = self.table.get(self.key) if self.enabled else None
        if flops is not None:
            total, per_unit = flops
            rec.flops_full = total
            rec.flops_run = total - sum(per_unit.values()) + sum(
                per_unit.get(i, 0.0) * (r - self.saved.get(i, 0.0)) / batch for i, r in self.rows.items())
