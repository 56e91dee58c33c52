"""One run's state wired together: clock, plan, per-branch caches and the FLOP meter."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import PolicyError, SessionError
from ..policies import Policy, parse
from . import hooks
from .cache import BranchCache, Streams
from .clock import Clock, read_timestep
from .flops import FlopMeter
from .plan import Decision, Planner
from .stats import CallRecord, Stats
from .tensors import first_tensor, merge_rows, slice_rows

__all__ = ["Session", "session", "resolve_span"]


def resolve_span(policy: Policy, adapter, num_units: int, model_name: str) -> tuple[int, int]:
    """Return the (head, tail) units that always compute for this policy on this model, or raise."""
    head = adapter.head if policy.head is None else policy.head
    if policy.head is None and policy.needs_drift:  # the first unit is the drift probe
        head = max(head, 1)
    tail = adapter.tail if policy.tail is None else policy.tail
    if head + tail > num_units:
        raise PolicyError(f"{policy}: head={head} + tail={tail} exceeds the {num_units} units of {model_name}; "
                          f"allowed: head + tail <= {num_units}. Fix: lower head= / tail=.")
    if policy.needs_drift and head < 1:
        raise PolicyError(f"{policy.name} needs head >= 1 (the first unit is its probe); got head=0.")
    policy.check_units(num_units - head - tail)
    return head, tail


class Session:
    """Run a policy over an attached denoiser: decide, compute or replay units, and count."""

    def __init__(self, h: hooks.Hooked, policy: Policy | str,
                 num_steps: int | Callable[[float], int | None] | None = None, count_flops: bool = True):
        self.policy = parse(policy)
        self.hooked = h
        n = len(h.units)
        self.head, self.tail = resolve_span(self.policy, h.adapter, n, type(h.model).__name__)
        self.skippable = range(self.head, n - self.tail)
        self.num_units = len(self.skippable)
        self.streams = Streams(h.adapter.streams) if h.adapter.reuse == "residual" else None
        if self.policy.final and self.policy.reuses and num_steps is None:
            raise PolicyError(f"{self.policy}: final={self.policy.final} computes the last steps fully, so the "
                              f"session needs the run's step count: pass num_steps=N to diffskip.session(), "
                              f"or set final=0 in the policy.")
        self.clock = Clock(num_steps)
        self.planner = Planner(self.policy, self.num_units)
        self.meter = FlopMeter(h.flops, count_flops)
        self.history: list[Stats] = []
        self.stats = Stats(num_units=n, skippable=self.num_units)
        self.branches: dict[int, BranchCache] = {}
        self.branch = BranchCache()  # the current call's branch
        self.batch = 0

    @property
    def step(self) -> int:
        return self.clock.step

    @property
    def num_steps(self) -> int | None:
        return self.clock.num_steps

    def release(self) -> None:
        """Free every cached tensor (stats stay)."""
        self.branches = {}
        self.branch = BranchCache()

    # -- denoiser call -------------------------------------------------------------------------------
    def model_call(self, fn: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one denoiser call under the policy and record what it computed."""
        h = self.hooked
        t = read_timestep(args, kwargs, h.adapter.timestep, h.timestep_index)
        if self.clock.tick(t) and self.clock.run > 0:
            self.history.append(self.stats)
            self.stats = Stats(num_units=len(h.units), skippable=self.num_units)
            self.branches = {}
        x = first_tensor((args, kwargs))
        if x is None:
            raise TypeError("the denoiser was called without any tensor argument")
        self.batch = x.shape[0]
        self.branch = self.branches.setdefault(self.clock.branch, BranchCache())
        rec = CallRecord(self.clock.step, self.clock.branch, t)
        out = self.meter.call(fn, args, kwargs, may_measure=not self.branch.values)
        self.meter.account(rec, self.batch, self.skippable)
        self.stats.add(rec)
        self.stats.cache_bytes = max(self.stats.cache_bytes, sum(b.nbytes() for b in self.branches.values()))
        return out

    # -- unit call -----------------------------------------------------------------------------------
    def unit_call(self, unit: hooks.Unit, args: tuple, kwargs: dict) -> Any:
        """Compute, replay or mix (per sample) one unit as the plan says."""
        i, br = unit.index, self.branch
        skippable = i in self.skippable
        probe = i == 0 and self.policy.needs_drift
        if (not skippable or not self.policy.reuses) and not probe:  # nothing to cache: run as is
            return self.meter.run(unit, args, kwargs, self.batch)
        bound = unit.signature.bind(*args, **kwargs)
        if not skippable:
            out, res = self._compute(unit, bound, self.batch)
            br.observe(first_tensor(res if res is not None else out))
            return out
        decision = self._plan(br)[i - self.head]
        entry = br.values.get(i)
        if entry is not None and first_tensor(entry).shape[0] != self.batch:
            raise SessionError(f"unit {i}: cached batch {first_tensor(entry).shape[0]} != call batch {self.batch} "
                               f"within one run; start a new session for a new batch size.")
        forecast = self.policy.forecast
        if entry is None or decision is True:
            out, res = self._compute(unit, bound, self.batch)
            br.store(i, out if res is None else res, self.step, None, forecast)
            return out
        replayed = br.replay_value(i, self.step, forecast)
        full = self._replay(bound, replayed)
        if decision is False:
            return full
        rows = torch.tensor(decision, device=first_tensor(entry).device)
        sub = slice_rows(unit.signature, bound, rows, self.batch, self.hooked.adapter.unbatched)
        out, res = self._compute(unit, sub, len(decision))
        merged = merge_rows(full, out, rows)
        # the cache keeps the reusing rows' raw value (not their forecast); without a forecast that is `merged`
        raw = merged if (res is None and replayed is entry) else merge_rows(entry, out if res is None else res, rows)
        br.store(i, raw, self.step, decision, forecast)
        return merged

    def _compute(self, unit: hooks.Unit, bound, rows: int) -> tuple[Any, Any]:
        run = lambda b: self.meter.run(unit, b.args, b.kwargs, rows)  # noqa: E731
        if self.streams is None:
            return run(bound), None
        return self.streams.compute(run, bound)

    def _replay(self, bound, entry: Any) -> Any:
        return entry if self.streams is None else self.streams.replay(bound, entry)

    def _plan(self, br: BranchCache) -> list[Decision]:
        """Decide this step's plan for a branch once (the only host read: drift, for drift-gated policies)."""
        if br.plan is not None and br.plan_step == (self.clock.run, self.step):
            return br.plan
        drift = rate = None
        if self.policy.needs_drift and br.drift is not None:  # one host read for both
            drift, rate = torch.stack([br.drift, br.rate_sum / max(br.rate_count, 1)]).tolist()
        br.plan, br.streak = self.planner.plan(self.step, self.num_steps, self.batch, drift, br.streak, rate)
        br.plan_step = (self.clock.run, self.step)
        if br.plan:
            br.reset_drift(br.plan[0])
        return br.plan


@contextlib.contextmanager
def session(model: nn.Module, policy: Policy | str, num_steps: int | Callable[[float], int | None] | None = None,
            count_flops: bool = True) -> Iterator[Session]:
    """Activate a policy on an attached denoiser for the duration of the block; yields the Session."""
    s = Session(hooks.hooked(model), policy, num_steps=num_steps, count_flops=count_flops)
    with hooks.activate(model, s):
        try:
            yield s
        finally:
            s.release()
