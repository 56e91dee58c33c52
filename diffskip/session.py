"""One run's state: step clock from the timestep argument, caches per guidance branch, per-sample plans."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from . import hooks
from .policy import Policy, StepInfo, parse
from .stats import CallRecord, Stats
from .tensors import extrapolate, first_tensor, merge_rows, rate, slice_rows, take_rows

__all__ = ["Session", "session"]


class _Branch:
    """Per guidance pass (cond / uncond / ...): caches, probe history, per-sample drift and streak."""

    def __init__(self) -> None:
        self.cache: dict[int, Any] = {}
        self.probe: torch.Tensor | None = None
        self.drift: torch.Tensor | None = None  # (B,)
        self.streak: torch.Tensor | None = None  # (B,)
        self.plan: list[torch.Tensor] | None = None  # per skippable unit, (B,) bool: compute
        # forecast=1 history per unit: the slope per step between its last two computes, and the last step (B,)
        self.slope: dict[int, Any] = {}
        self.at: dict[int, torch.Tensor] = {}


class Session:
    """Run a policy over an attached denoiser: decide, compute or replay units, and count."""

    def __init__(self, h: hooks.Hooked, policy: Policy | str, num_steps: int | Callable[[float], int | None] | None = None,
                 count_flops: bool = True):
        self.policy = parse(policy)
        self.hooked = h
        a, n = h.adapter, len(h.units)
        self.head = a.head if self.policy.head is None else self.policy.head
        if self.policy.head is None and self.policy.needs_drift:  # the first unit is the drift probe
            self.head = max(self.head, 1)
        self.tail = a.tail if self.policy.tail is None else self.policy.tail
        if self.head + self.tail > n:
            raise ValueError(f"head={self.head} + tail={self.tail} exceeds the {n} units of "
                             f"{type(h.model).__name__}; allowed: head + tail <= {n}.")
        if self.policy.needs_drift and self.head < 1:
            raise ValueError(f"{self.policy.name} needs head >= 1 (the first unit is its probe); got head=0.")
        self.num_units = n - self.head - self.tail
        self._num_steps = num_steps
        self.num_steps: int | None = None
        self.count_flops = count_flops
        self.history: list[Stats] = []
        self._last_t: float | None = None
        self._start_run()

    def _start_run(self) -> None:
        if self._last_t is not None:
            self.history.append(self.stats)
        self.stats = Stats(num_units=len(self.hooked.units), skippable=self.num_units)
        self.step, self.branch = -1, 0
        self.branches: dict[int, _Branch] = {}

    def _tick(self, t: float) -> None:
        """Advance the clock: smaller timestep -> next step, equal -> next guidance pass, larger -> new run."""
        if self._last_t is not None and t > self._last_t:
            self._start_run()
        if self.step < 0:
            self.step, self.branch = 0, 0
            self.num_steps = self._num_steps(t) if callable(self._num_steps) else self._num_steps
        elif t < self._last_t:
            self.step, self.branch = self.step + 1, 0
        else:
            self.branch += 1
        self._last_t = t

    # -- denoiser call -------------------------------------------------------------------------------
    def model_call(self, fn: Callable, args: tuple, kwargs: dict, t: float, x: torch.Tensor) -> Any:
        """Run one denoiser call under the policy; measure FLOPs on the first full pass per input shape."""
        self._tick(t)
        br = self.branches.setdefault(self.branch, _Branch())
        br.plan = None
        self.batch, self._device = x.shape[0], x.device
        self._br = br
        self._rows: dict[int, int] = {}
        rec = CallRecord(self.step, self.branch, t)
        key = tuple((tuple(v.shape), v.dtype) for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor))
        measure = self.count_flops and key not in self.hooked.flops and not br.cache
        if measure:
            self._unit_flops: dict[int, float] = {}
            with FlopCounterMode(display=False) as self._counter:
                out = fn(*args, **kwargs)
            self.hooked.flops[key] = (float(self._counter.get_total_flops()), dict(self._unit_flops))
            self._counter = None
        else:
            self._counter = None
            out = fn(*args, **kwargs)
        self._account(rec, self.hooked.flops.get(key) if self.count_flops else None)
        return out

    def _account(self, rec: CallRecord, flops: tuple[float, dict[int, float]] | None) -> None:
        b = self.batch
        skippable = range(self.head, len(self.hooked.units) - self.tail)
        rec.computed = sum(r for i, r in self._rows.items() if i in skippable)
        rec.reused = b * self.num_units - rec.computed
        rec.live = sum(r for i, r in self._rows.items() if i not in skippable)
        if flops is not None:
            total, per_unit = flops
            rec.flops_full = total
            rec.flops_run = total - sum(per_unit.values()) + sum(
                per_unit.get(i, 0.0) * r / b for i, r in self._rows.items())
        self.stats.add(rec)

    # -- unit call -----------------------------------------------------------------------------------
    def unit_call(self, unit: hooks.Unit, args: tuple, kwargs: dict) -> Any:
        """Compute, replay or mix (per sample) one unit as the plan says."""
        i, br = unit.index, self._br
        skippable = self.head <= i < len(self.hooked.units) - self.tail
        probe = i == 0 and self.policy.needs_drift
        if (not skippable or not self.policy.reuses) and not probe:  # nothing to cache: run as is
            return self._run(unit, args, kwargs, self.batch)
        bound = unit.signature.bind(*args, **kwargs)
        if not skippable:
            out, res = self._compute(unit, bound, self.batch)
            self._observe_probe(br, first_tensor(res if res is not None else out))
            return out
        mask = self._plan(br)[i - self.head]
        entry = br.cache.get(i)
        if entry is not None and first_tensor(entry).shape[0] != self.batch:
            raise RuntimeError(f"unit {i}: cached batch {first_tensor(entry).shape[0]} != call batch {self.batch}"
                               f" within one run; start a new session for a new batch size.")
        if entry is None or bool(mask.all()):
            out, res = self._compute(unit, bound, self.batch)
            self._store(br, i, out if res is None else res, mask)
            return out
        full = self._replay(bound, self._forecast(br, i, entry))
        if not bool(mask.any()):
            return full
        rows = mask.nonzero().flatten()
        sub = slice_rows(unit.signature, bound, rows, self.batch, self.hooked.adapter.unbatched)
        out, res = self._compute(unit, sub, rows.numel())
        merged = merge_rows(full, out, rows)
        # the cache keeps the reusing rows' raw value (not their forecast); without a forecast that is `merged`
        raw = merged if (res is None and full is entry) else merge_rows(entry, out if res is None else res, rows)
        self._store(br, i, raw, mask)
        return merged

    def _store(self, br: _Branch, i: int, value: Any, mask: torch.Tensor) -> None:
        """Cache a unit's new value; for forecasting also its slope per step since the rows' previous compute."""
        old = br.cache.get(i)
        br.cache[i] = value
        if not self.policy.forecast:
            return
        now = torch.full_like(mask, self.step, dtype=torch.float64)
        if old is not None:
            if bool(mask.all()):  # the usual case: every row computed, no row bookkeeping
                br.slope[i] = rate(value, old, 1.0 / (now - br.at[i]))
            else:
                rows = mask.nonzero().flatten()
                fresh = rate(take_rows(value, rows), take_rows(old, rows), 1.0 / (now - br.at[i])[rows])
                base = br.slope[i] if i in br.slope else rate(old, old, torch.zeros_like(now))  # one compute: 0
                br.slope[i] = merge_rows(base, fresh, rows)
        br.at[i] = torch.where(mask, now, br.at[i]) if i in br.at else now

    def _forecast(self, br: _Branch, i: int, entry: Any) -> Any:
        """Extrapolate a cached value to this step along its slope (one multiply-add; slope 0: as is)."""
        if not self.policy.forecast or i not in br.slope:
            return entry
        return extrapolate(entry, br.slope[i], self.step - br.at[i])

    def _run(self, unit: hooks.Unit, args: tuple, kwargs: dict, rows: int) -> Any:
        self._rows[unit.index] = self._rows.get(unit.index, 0) + rows
        if self._counter is None:
            return unit.fn(*args, **kwargs)
        before = self._counter.get_total_flops()
        out = unit.fn(*args, **kwargs)
        self._unit_flops[unit.index] = self._unit_flops.get(unit.index, 0.0) + self._counter.get_total_flops() - before
        return out

    def _compute(self, unit: hooks.Unit, bound, rows: int) -> tuple[Any, Any]:
        """Run a unit; for residual reuse also return out - in per stream (input cloned: blocks may be in-place)."""
        streams = self._streams()
        if streams is None:
            return self._run(unit, bound.args, bound.kwargs, rows), None
        inputs = {s: _stream(bound, s).clone() for s in set(streams) if s is not None}
        out = self._run(unit, bound.args, bound.kwargs, rows)
        outs = (out,) if isinstance(self.hooked.adapter.streams, str) else tuple(out)
        res = tuple(o - inputs[s] if s is not None and isinstance(o, torch.Tensor) else o
                    for s, o in zip(streams, outs))
        return out, res

    def _replay(self, bound, entry: Any) -> Any:
        streams = self._streams()
        if streams is None:
            return entry
        outs = tuple(_stream(bound, s) + r if s is not None and isinstance(r, torch.Tensor) else r
                     for s, r in zip(streams, entry))
        return outs[0] if isinstance(self.hooked.adapter.streams, str) else outs

    def _streams(self) -> tuple[str | None, ...] | None:
        a = self.hooked.adapter
        if a.reuse == "output":
            return None
        return (a.streams,) if isinstance(a.streams, str) else a.streams

    # -- decisions -----------------------------------------------------------------------------------
    def _observe_probe(self, br: _Branch, p: torch.Tensor) -> None:
        """Accumulate the per-sample relative L1 change of the probe (TeaCache / First-Block-Cache)."""
        p = p.detach().float()
        if br.probe is not None and br.probe.shape == p.shape:
            prev = br.probe.flatten(1)
            rel = (p.flatten(1) - prev).abs().mean(1) / prev.abs().mean(1).clamp_min(1e-12)
            br.drift = rel if br.drift is None else br.drift + rel
        br.probe = p

    def _plan(self, br: _Branch) -> list[torch.Tensor]:
        if br.plan is not None:
            return br.plan
        b, dev = self.batch, self._device
        if br.streak is None or br.streak.shape[0] != b:
            br.streak = torch.zeros(b, dtype=torch.long, device=dev)
        info = StepInfo(self.step, self.num_steps, self.num_units, br.drift, br.streak)
        plan = []
        for u in range(self.num_units):
            d = self.policy.decide(info, u)
            m = d.to(dev, torch.bool) if isinstance(d, torch.Tensor) else torch.full((b,), bool(d), device=dev)
            if m.shape != (b,):
                raise ValueError(f"{self.policy.name}.decide returned shape {tuple(m.shape)}; expected ({b},).")
            plan.append(m)
        if plan:
            any_computed = torch.stack(plan).any(0)
            br.streak = torch.where(any_computed, torch.zeros_like(br.streak), br.streak + 1)
            if br.drift is not None:
                br.drift = torch.where(plan[0], torch.zeros_like(br.drift), br.drift)
        br.plan = plan
        return plan


def _stream(bound, name: str) -> torch.Tensor:
    """Return a unit's input stream: an argument by name, or "args[i]", the i-th of a `*args` forward."""
    base, _, index = name.partition("[")
    value = bound.arguments[base]
    return value[int(index.rstrip("]"))] if index else value


@contextlib.contextmanager
def session(model: nn.Module, policy: Policy | str, num_steps: int | Callable[[float], int | None] | None = None,
            count_flops: bool = True) -> Iterator[Session]:
    """Activate a policy on an attached denoiser for the duration of the block; yields the Session."""
    s = Session(hooks.hooked(model), policy, num_steps=num_steps, count_flops=count_flops)
    with hooks.activate(model, s):
        yield s
