"""One run's state wired together: the policy resolved once, the planner, per-branch caches and the FLOP meter.

A Session contributes two hooks to the attached model's chain (diffskip.engine.chain): `reuse` decides and
computes or replays each unit (diffskip.engine.reuse), `meter` counts what ran (innermost, nearest the unit).
"""
from __future__ import annotations

import contextlib
import logging
import weakref
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from ..errors import PolicyError, SessionError
from ..policies import Policy, parse
from . import cfgdiff, hooks
from .cache import Streams, UnitCache
from .cfgdiff import CfgDiff
from .chain import CallInfo, Hook
from .clock import Clock
from .flops import FlopMeter, signature_key
from .guidance import Guidance
from .lineage import Lineage, live_reads
from .planner import PlanState, Planner, resolve_group
from .reuse import strategy_for
from .stats import CallRecord, Stats
from .tensors import refill, skeleton

__all__ = ["Session", "session", "resolve_span"]
logger = logging.getLogger(__name__)


def resolve_span(policy: Policy, adapter, num_units: int, model_name: str) -> tuple[int, int]:
    """Return the (head, tail) units that always compute for this policy on this model, or raise."""
    if adapter is None:
        raise SessionError(f"the units of {model_name} are detected on its first call (no registered adapter); "
                           f"call the model or pipeline once first, or register an adapter with diffskip.register.")
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


def _check_steps(num_steps: Any) -> None:
    ok = num_steps is None or callable(num_steps) or (
        isinstance(num_steps, int) and not isinstance(num_steps, bool) and num_steps >= 1)
    if not ok:
        raise SessionError(f"num_steps={num_steps!r} is invalid; allowed: None, an int >= 1 (the run's denoiser "
                           f"steps) or a callable timestep -> steps. Fix: pass the scheduler's step count.")


class Branch:
    """One guidance pass's state: its unit cache, its planner state, and span residuals being summed."""

    def __init__(self, forecast: int):
        self.cache = UnitCache(forecast)
        self.cfg = CfgDiff(forecast)  # cond - uncond per key (cfg= with the difference form)
        self.plan = PlanState()
        self.pending: dict[Any, Any] = {}  # span -> residual summed so far at this step
        self.skeletons: dict[int, Any] = {}  # unit -> shape of its output (placeholders for unread outputs)

    def nbytes(self) -> int:
        return self.cache.nbytes() + self.plan.nbytes() + self.cfg.nbytes()


class Session:
    """Run a policy over an attached denoiser: decide, compute or replay units, and count."""

    def __init__(self, h: hooks.Hooked, policy: Policy | str,
                 num_steps: int | Callable[[float], int | None] | None = None, count_flops: bool = True,
                 group: Any = None, uncond: Any = None):
        self.policy = parse(policy)
        _check_steps(num_steps)
        self.guidance = Guidance(uncond)
        self.uncond_rows: tuple[int, ...] = ()  # the current call's unconditional rows (only where cfg > 1)
        self.cfg_diff = False  # replay skipped unconditional rows as cond - cached (cond - uncond) (FasterCache)
        self.hooked = h
        if self.policy.final and self.policy.reuses and num_steps is None:
            raise PolicyError(f"{self.policy}: final={self.policy.final} computes the last steps fully, so the "
                              f"session needs the run's step count: pass num_steps=N to diffskip.session(), "
                              f"or set final=0 in the policy.")
        self._num_steps = num_steps
        self.num_steps: int | None = None
        self.group = resolve_group(h.model, group)  # ranks that must decide alike (context parallelism)
        self.meter = FlopMeter(h.flops, count_flops)
        self.history: list[Stats] = []
        self.stats = Stats(num_units=0, skippable=0)
        self.bound = False
        if h.adapter is not None:  # else the model's first call detects its units, and binds then
            self.bind()
        self.branches: dict[int, Branch] = {}
        self.branch = Branch(self.policy.forecast)  # the current call's branch
        self.call: CallInfo | None = None
        self.batch = 0
        self.rows: int | tuple[int, ...] | None = None  # the next unit computation's samples: all (int) or these
        self.lineage: Lineage | None = None  # active during the call that measures which outputs live code reads
        self.reads: frozenset[int] | None = None  # skippable units whose outputs live units read
        self.hooks = (_ReuseHook(self), _MeterHook(self))

    def bind(self) -> None:
        """Resolve the policy against the model's units: the span that always computes, streams, the planner."""
        h = self.hooked
        n = len(h.units)
        self.head, self.tail = resolve_span(self.policy, h.adapter, n, type(h.model).__name__)
        self.skippable = range(self.head, n - self.tail)
        self.num_units = len(self.skippable)
        self.streams = {u.index: Streams(u.streams) for u in h.units if u.streams is not None}
        self.planner = Planner(self.policy, self.num_units, self.group)
        self.strategy = strategy_for(self)
        self.stats = Stats(num_units=n, skippable=self.num_units)
        self.bound = True

    @property
    def step(self) -> int:
        return -1 if self.call is None else self.call.step

    def release(self) -> None:
        """Free every cached tensor (stats stay)."""
        self.branches = {}
        self.branch = Branch(self.policy.forecast)

    def begin(self, call: CallInfo) -> None:
        """A denoiser call begins: new run bookkeeping, the branch, the call record."""
        if not self.bound:
            self.bind()
        if call.new_run:
            if self.stats.calls:
                self.history.append(self.stats)
                self.stats = Stats(num_units=len(self.hooked.units), skippable=self.num_units)
            self.branches = {}
            n = self._num_steps
            self.num_steps = n(call.timestep) if callable(n) else n
        if isinstance(self._num_steps, int) and call.step >= self._num_steps:
            raise SessionError(f"the run reached denoiser step {call.step + 1} but the session was given "
                               f"num_steps={self._num_steps}; allowed: the run's own step count. Fix: pass "
                               f"num_steps equal to the scheduler's number of steps.")
        self.call, self.batch = call, call.batch
        self.branch = self.branches.setdefault(call.branch, Branch(self.policy.forecast))
        if self.policy.cfg > 1:
            self.uncond_rows = self.guidance.rows(call, self.policy)
            self.cfg_diff = cfgdiff.FORM == "diff" and isinstance(self.guidance.uncond, str)

    def run(self, unit: hooks.Unit, call_next: Callable, args: tuple, kwargs: dict, rows: int | tuple) -> Any:
        """Run a unit (through the inner hooks) on all `rows` samples (an int) or on those batch rows (a tuple)."""
        self.rows = rows
        return call_next(args, kwargs)

    def lineage_for(self, args: tuple, kwargs: dict) -> Lineage | None:
        """Return a Lineage when this call must measure which outputs live code reads (lean output caches)."""
        if not self.strategy.lean_output:
            return None
        known = self.hooked.lineage.get(signature_key(args, kwargs))
        self.reads = None if known is None else live_reads(known, self.skippable)
        return Lineage() if known is None else None

    def note_reads(self, unit: int) -> None:
        """During the lineage call: keep the outputs live code read or may still read; keep shapes of the rest.

        An output may still be read while some tensor derived from it is alive, or while anything but the
        cache holds it (a UNet's skip connections): the cache lets go of it and keeps it only if it survives.
        """
        lin = self.lineage
        if unit not in self.skippable:
            lin.needed |= {u for u in lin.reads.get(unit, ()) if u in self.skippable}
        for br in self.branches.values():
            vals = br.cache.values
            cand = [k for k in vals if isinstance(k, int) and k not in lin.needed and k != unit]
            derived = lin.carried([vals[k] for k in cand]) if cand else frozenset()
            loose = [k for k in cand if k not in derived]
            shapes = {k: skeleton(vals[k]) for k in loose}
            refs = {k: [weakref.ref(t) for t in tree_leaves(vals.pop(k)) if isinstance(t, torch.Tensor)]
                    for k in loose}
            for k in loose:
                alive = [w() for w in refs[k]]
                if all(t is not None for t in alive):
                    vals[k] = refill(shapes[k], iter(alive))  # held elsewhere: it may still be read
                else:
                    br.skeletons[k] = shapes[k]
                    br.cache.drop(k)


class _ReuseHook(Hook):
    """The session's decision/replay link: compute, replay or mix each unit as the plan says."""

    name = "reuse"

    def __init__(self, session: Session):
        self.session = session
        self.clock = Clock()  # the session's own: it counts steps across activations (ComfyUI's legacy wrapper)

    def begin(self, call: CallInfo) -> None:
        self.session.begin(call)

    def model_call(self, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s = self.session
        s.lineage = s.lineage_for(args, kwargs)
        if s.lineage is None:
            return call_next(args, kwargs)
        try:
            with s.lineage:
                out = call_next(args, kwargs)
            reads = s.lineage.finish(out)
        finally:
            s.lineage = None
        s.hooked.lineage[signature_key(args, kwargs)] = reads
        s.reads = live_reads(reads, s.skippable)
        s.strategy.prune()
        return out

    def unit_call(self, unit, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s = self.session
        if s.lineage is None:
            return s.strategy.unit_call(unit, call_next, args, kwargs)
        s.lineage.enter_unit(unit.index, args, kwargs)
        out = s.strategy.unit_call(unit, call_next, args, kwargs)
        s.lineage.exit_unit(unit.index, out)
        s.note_reads(unit.index)
        return out

    def reset_state(self) -> None:
        self.session.rows = None


class _MeterHook(Hook):
    """The session's FLOP meter: measure a call's FLOPs once per input signature, count each unit run."""

    name = "meter"

    def __init__(self, session: Session):
        self.session = session

    def model_call(self, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s = self.session
        rec = CallRecord(s.call.step, s.call.branch, s.call.timestep)
        br = s.branch
        out = s.meter.call(lambda: call_next(args, kwargs), args, kwargs, may_measure=not br.cache.values)
        s.meter.account(rec, s.batch, s.skippable)
        s.stats.add(rec)
        s.stats.cache_bytes = max(s.stats.cache_bytes, sum(b.nbytes() for b in s.branches.values()))
        return out

    def unit_call(self, unit, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s = self.session
        rows = s.batch if s.rows is None else s.rows
        s.rows = None
        return s.meter.run(unit, call_next, args, kwargs, rows, eager=s.lineage is not None)


@contextlib.contextmanager
def session(model: nn.Module, policy: Policy | str, num_steps: int | Callable[[float], int | None] | None = None,
            count_flops: bool = True, group: Any = None, uncond: Any = None) -> Iterator[Session]:
    """Activate a policy on an attached denoiser for the duration of the block; yields the Session.

    `group`: the torch.distributed process group whose ranks each hold a shard of the tokens (context
    parallelism); drift-gated decisions are then taken on the whole tensor, alike on every rank. Default: the
    group of diffusers' `enable_parallelism(ContextParallelConfig(...))` when the model has one.

    `uncond`: which rows or call of each step are classifier-free guidance's unconditional half, for a policy
    with `cfg` > 1: None, 'half' (first half of a batched [uncond, cond] call), 'second-half' ([cond, uncond]),
    an int k (the k-th call of a step), or a callable (batch, calls at step 0 so far) -> one of those, asked on
    each call of step 0 until it answers and at step 1 (engine/guidance.py).
    """
    s = Session(hooks.hooked(model), policy, num_steps=num_steps, count_flops=count_flops, group=group,
                uncond=uncond)
    with hooks.activate(model, s):
        try:
            yield s
        finally:
            s.release()
