"""Caches of one guidance branch: unit values, forecast slopes, the drift probe; residual streams.

Replay is either the cached value as is, or forecast to the current step along the slope between the unit's
last two computes (first-order Taylor in the step index, after TaylorSeer, Liu et al. 2025), or with the
Newton divided differences of its last three computes (second order).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from .tensors import extrapolate, first_tensor, merge_rows, rate, take_rows

__all__ = ["BranchCache", "Streams"]


class BranchCache:
    """One guidance pass's (cond / uncond / ...) cached unit values, slopes, probe drift and plan."""

    def __init__(self) -> None:
        self.values: dict[int, Any] = {}
        self.slope: dict[int, Any] = {}  # forecast: change per step between the last two computes
        self.at: dict[int, list[int]] = {}  # forecast: per row, the step of the unit's last compute
        self.curv: dict[int, Any] = {}  # forecast=2: second divided difference of the last three computes
        self.gap: dict[int, torch.Tensor] = {}  # forecast=2: per row, steps between the last two computes
        self.probe: torch.Tensor | None = None
        self.drift: torch.Tensor | None = None  # (B,) accumulated relative change of the probe, on the device
        self.rate_sum: torch.Tensor | None = None  # (B,) summed per-step relative change (for its running mean)
        self.rate_count = 0
        self.streak: list[int] = []  # per sample: consecutive steps that reused every skippable unit
        self.plan: list | None = None
        self.plan_step: tuple[int, int] = (-1, -1)  # (run, step) the plan is for

    def store(self, i: int, value: Any, step: int, rows: tuple[int, ...] | None, forecast: int) -> None:
        """Cache unit `i`'s new value (rows None: every row computed); for forecasting also its slope (and with
        forecast=2 its curvature, kept only while every row computes together)."""
        old = self.values.get(i)
        self.values[i] = value
        if not forecast:
            return
        if old is not None:
            dev = first_tensor(value).device
            at = self.at[i]
            if rows is None:  # the usual case: every row computed
                gap = torch.tensor([float(step - a) for a in at], dtype=torch.float64, device=dev)
                slope = rate(value, old, 1 / gap)
                if forecast == 2 and i in self.gap:  # (slope - previous slope) / (t2 - t0)
                    self.curv[i] = rate(slope, self.slope[i], 1 / (gap + self.gap[i]))
                self.slope[i], self.gap[i] = slope, gap
            else:
                self.curv.pop(i, None)
                self.gap.pop(i, None)
                idx = torch.tensor(rows, device=dev)
                k = torch.tensor([1.0 / (step - at[r]) for r in rows], dtype=torch.float64, device=dev)
                fresh = rate(take_rows(value, idx), take_rows(old, idx), k)
                base = self.slope[i] if i in self.slope else rate(old, old, torch.zeros(len(at), device=dev))
                self.slope[i] = merge_rows(base, fresh, idx)
        batch = first_tensor(value).shape[0]
        prev = self.at.get(i, [step] * batch)
        self.at[i] = [step] * batch if rows is None else [step if r in rows else a for r, a in enumerate(prev)]

    def replay_value(self, i: int, step: int, forecast: int) -> Any:
        """Return unit `i`'s cached value, extrapolated to `step` when forecasting (slope 0 before two computes)."""
        entry = self.values[i]
        if not forecast or i not in self.slope:
            return entry
        k = torch.tensor([float(step - a) for a in self.at[i]], dtype=torch.float64, device=first_tensor(entry).device)
        out = extrapolate(entry, self.slope[i], k)
        if forecast == 2 and i in self.curv:  # Newton: + (t - t2)(t - t1) * second divided difference
            out = extrapolate(out, self.curv[i], k * (k + self.gap[i]))
        return out

    def observe(self, p: torch.Tensor) -> None:
        """Accumulate the per-sample relative L1 change of the probe (TeaCache / First-Block-Cache).

        The probe is kept in the compute dtype (no float32 copy of a half-precision run); the change is
        measured in float32.
        """
        p = p.detach()
        if self.probe is not None and self.probe.shape == p.shape:
            prev = self.probe.flatten(1).float()
            rel = (p.flatten(1).float() - prev).abs().mean(1) / prev.abs().mean(1).clamp_min(1e-12)
            self.drift = rel if self.drift is None else self.drift + rel
            self.rate_sum = rel if self.rate_sum is None else self.rate_sum + rel
            self.rate_count += 1
        self.probe = p

    def nbytes(self) -> int:
        """Return the bytes of every tensor this branch holds (values, slopes, probe, drift)."""
        return _nbytes((self.values, self.slope, self.curv, self.probe, self.drift))

    def reset_drift(self, computed: bool | tuple) -> None:
        """Zero the drift of the samples whose first skippable unit computes at this step."""
        if self.drift is None or computed is False:
            return
        if computed is True:
            self.drift = torch.zeros_like(self.drift)
        else:
            keep = torch.ones_like(self.drift)
            keep[list(computed)] = 0
            self.drift = self.drift * keep


class Streams:
    """Residual reuse: which unit inputs each output continues, so a skipped unit adds its cached residual."""

    def __init__(self, streams: str | tuple[str | None, ...]):
        self.single = isinstance(streams, str)
        self.names: tuple[str | None, ...] = (streams,) if self.single else tuple(streams)

    def compute(self, run, bound: inspect.BoundArguments) -> tuple[Any, tuple]:
        """Run a unit via `run(bound)`; return its output and out - in per stream (inputs cloned first:
        blocks that update their input in place would otherwise give a zero residual)."""
        inputs = {s: _stream(bound, s).clone() for s in set(self.names) if s is not None}
        out = run(bound)
        outs = (out,) if self.single else tuple(out)
        res = tuple(o - inputs[s] if s is not None and isinstance(o, torch.Tensor) else o
                    for s, o in zip(self.names, outs))
        return out, res

    def replay(self, bound: inspect.BoundArguments, residual: tuple) -> Any:
        """Add a cached residual to the unit's fresh inputs."""
        outs = tuple(_stream(bound, s) + r if s is not None and isinstance(r, torch.Tensor) else r
                     for s, r in zip(self.names, residual))
        return outs[0] if self.single else outs


def _nbytes(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    return sum(_nbytes(v) for v in items)


def _stream(bound: inspect.BoundArguments, name: str) -> torch.Tensor:
    """Return a unit's input stream: an argument by name, or "args[i]", the i-th of a `*args` forward."""
    base, _, index = name.partition("[")
    value = bound.arguments[base]
    return value[int(index.rstrip("]"))] if index else value
