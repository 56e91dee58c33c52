"""How a session computes, replays or mixes (per sample) one unit, and what it keeps for later steps.

- `PerUnit`: every skippable unit caches its own output or residual (policies whose decisions differ by unit).
- `Spans` (residual reuse, every unit decided alike): consecutive units with one stream layout form a span;
  computing steps sum the span's residuals, replayed steps pass the stream through the span's units unchanged
  and add the summed residual at its last unit. One cached residual per span instead of one per block: the same
  result as replaying each block's residual (glue code between blocks still runs), at 1/len(span) the memory.
- `LiveReads` (output reuse, every unit decided alike): only the outputs that a live unit or the denoiser's
  output reads are kept (measured once: engine/lineage.py); other replayed units return zeros of their shape,
  which only other replayed units receive (DeepCache keeps one feature of a UNet for the same reason).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._pytree import tree_leaves

from ..errors import SessionError
from .cache import SHAPE_CHANGED, Streams, add, stream
from .tensors import first_tensor, merge_rows, placeholder, skeleton, slice_rows
from .tokens import Tokens

__all__ = ["strategy_for"]


class PerUnit:
    """Cache each skippable unit's own value (output, or residual per stream)."""

    lean_output = False

    def __init__(self, session):
        self.s = session
        self.tokens = Tokens(session)  # token-level partial compute of replaying units (policy tokens= > 0)

    def prune(self) -> None:
        """Nothing to drop: every unit's value may be replayed."""

    def unit_call(self, unit, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s, i = self.s, unit.index
        skippable = i in s.skippable
        probe = i == 0 and s.policy.needs_drift
        if (not skippable or not s.policy.reuses) and not probe:  # nothing to cache: run as is
            return s.run(unit, call_next, args, kwargs, s.batch)
        bound = unit.signature.bind(*args, **kwargs)
        if not skippable:  # the drift probe: its residual, or its output where it changes the stream's shape
            out, res = self.compute(unit, call_next, bound, s.batch)
            p = first_tensor(res) if res is not None else None
            s.branch.plan.observe(p if p is not None else first_tensor(out))
            return out
        c = s.call
        decision = s.planner.for_step(s.branch.plan, c.run, c.step, s.num_steps, s.batch, s.uncond_rows)[i - s.head]
        self.unit_batch = first_tensor(bound.arguments).shape[0]
        if isinstance(decision, tuple) and self.unit_batch != s.batch:  # rows are frames or tokens here: a
            decision = True  # per-sample decision cannot be sliced, so every row computes (never a wrong replay)
        return self.decide(unit, call_next, bound, decision)

    def compute(self, unit, call_next: Callable, bound, rows: int | tuple[int, ...]) -> tuple[Any, Any]:
        """Run the unit on all `rows` of the batch (an int) or those rows (a tuple); return (output, residual per
        stream or None for output reuse)."""
        run = lambda b: self.s.run(unit, call_next, b.args, b.kwargs, rows)  # noqa: E731
        streams: Streams | None = self.s.streams.get(unit.index)
        if streams is None:
            return run(bound), None
        out, res = streams.compute(run, bound)
        if any(r is SHAPE_CHANGED for r in res) and unit.index in self.s.skippable:
            raise SessionError(f"unit {unit.index} returns a stream of another shape than it received, so no residual "
                               f"can be cached for it; allowed: blocks that keep their streams' shapes. Fix: make it "
                               f"live with the policy's head= / tail=.")
        return out, res

    def sub(self, unit, bound, rows: tuple[int, ...]):
        idx = torch.tensor(rows, device=first_tensor(bound.arguments).device)
        return idx, slice_rows(unit.signature, bound, idx, self.s.batch, self.s.hooked.adapter.unbatched)

    def check_batch(self, i: int, key: Any) -> None:
        entry = self.s.branch.cache.get(key)
        if entry is not None and first_tensor(entry).shape[0] != self.unit_batch:
            raise SessionError(f"unit {i}: cached batch {first_tensor(entry).shape[0]} != call batch "
                               f"{self.unit_batch} within one run; start a new session for a new batch size.")

    def decide(self, unit, call_next: Callable, bound, decision) -> Any:
        s, i, cache = self.s, unit.index, self.s.branch.cache
        self.check_batch(i, i)
        if i not in cache or decision is True:
            self.remember(i, i, bound, None)
            out, res = self.compute(unit, call_next, bound, s.batch)
            cache.store(i, out if res is None else res, s.step)
            self.note(i, None)
            return out
        if decision is False and self.tokens.on:
            return self.tokens.partial(unit, call_next, bound, i, True, True)
        streams = s.streams.get(i)
        replayed = cache.replay(i, s.step)
        if decision is False:
            replayed = self.diffed(i, replayed, ())
            return replayed if streams is None else streams.replay(bound, replayed)
        self.remember(i, i, bound, decision)
        idx, sub = self.sub(unit, bound, decision)
        out, res = self.compute(unit, call_next, sub, decision)
        cache.store_rows(i, out if res is None else res, decision, s.step)
        self.note(i, decision)
        replayed = self.diffed(i, replayed, decision)
        full = replayed if streams is None else streams.replay(bound, replayed)
        return merge_rows(full, out, idx)

    def note(self, key: Any, computed: tuple[int, ...] | None) -> None:
        """After `key` stored (computed rows, None: all): refresh its cached cond - uncond (FasterCache form)."""
        s = self.s
        if s.cfg_diff:
            s.branch.cfg.update(key, s.branch.cache.values[key], s.uncond_rows, computed, s.step)

    def diffed(self, key: Any, replayed: Any, computed: tuple[int, ...]) -> Any:
        """Skipped unconditional rows whose partner computed: partner's fresh value - cached difference."""
        s = self.s
        if not s.cfg_diff:
            return replayed
        return s.branch.cfg.patch(key, replayed, s.branch.cache.values[key], s.uncond_rows, computed, s.step)

    def remember(self, i: int, key: Any, bound, rows: tuple[int, ...] | None) -> None:
        """With tokens > 0: keep the input of a span (or unit) `key` that computes at unit i, for token selection."""
        if self.tokens.on:
            self.tokens.reset(key, stream(bound, self.s.streams[i].names[0]), rows)


class Spans(PerUnit):
    """Residual reuse with one decision for every unit: one summed residual per span of units."""

    def __init__(self, session):
        super().__init__(session)
        self.start: dict[int, int] = {}  # unit -> first unit of its span
        self.ends: set[int] = set()  # units that end a span (known after the first compute of each unit)
        layout = [(i, session.hooked.units[i].streams) for i in session.skippable]
        for (i, spec), prev in zip(layout, [None, *layout]):
            self.start[i] = i if prev is None or prev[1] != spec else self.start[prev[0]]
        self.last = {self.start[i]: i for i, _ in layout}  # span -> its last unit
        self.first_call = None  # the session's first call, on which spans are checked (see `_learn`)
        self.out_ids: dict[int, list[int]] = {}  # first call: ids of each unit's stream outputs
        self.per_unit = False  # a unit read another's output beside the stream: cache per unit instead

    def decide(self, unit, call_next: Callable, bound, decision) -> Any:
        s, i, br = self.s, unit.index, self.s.branch
        if self.first_call is None:
            self.first_call = s.call
        if s.call is self.first_call:
            self._learn(unit, bound)
        if self.per_unit:
            return super().decide(unit, call_next, bound, decision)
        span = ("span", self.start[i])
        streams: Streams = s.streams[i]
        self.check_batch(i, span)
        first = i == self.start[i]
        if span not in br.cache or decision is True:
            if first:
                self.remember(i, span, bound, None)
            out, res = self.compute(unit, call_next, bound, s.batch)
            self._sum(br, span, i, first, res, None, streams)
            if s.call is self.first_call:
                self.out_ids[i] = [id(o) for o in ((out,) if streams.single else out)]
            return out
        end = i in self.ends
        if decision is False and self.tokens.on:
            return self.tokens.partial(unit, call_next, bound, span, first, end)
        replayed = br.cache.replay(span, s.step) if end else None
        if decision is False:
            return streams.replay(bound, self.diffed(span, replayed, ())) if end else streams.identity(bound)
        if first:
            self.remember(i, span, bound, decision)
        idx, sub = self.sub(unit, bound, decision)
        out, res = self.compute(unit, call_next, sub, decision)
        self._sum(br, span, i, first, res, decision, streams)
        full = streams.replay(bound, self.diffed(span, replayed, decision)) if end else streams.identity(bound)
        return merge_rows(full, out, idx)

    def _sum(self, br, span, i: int, first: bool, res: tuple, rows, streams: Streams) -> None:
        """Add a unit's residual to its span's sum; store the sum at the span's end."""
        if i != self.last[span[1]] and not streams.spannable(res):  # its output does not continue its inputs:
            self._split(span[1], i)  # the span ends here, the next unit starts a new one
        if i == self.last[span[1]]:
            self.ends.add(i)
        total = res if first else add(br.pending.pop(span), res)
        if i not in self.ends:
            br.pending[span] = total
        elif rows is None:
            br.cache.store(span, total, self.s.step)
            self.note(span, None)
        else:
            br.cache.store_rows(span, total, rows, self.s.step)
            self.note(span, rows)


    def unit_call(self, unit, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        s = self.s
        if s.call is self.first_call and unit.index not in s.skippable and not self.per_unit:
            self._check_live(args, kwargs)
        return super().unit_call(unit, call_next, args, kwargs)

    def _learn(self, unit, bound) -> None:
        """On the first call, check that a span's blocks hand the stream on untouched.

        The next block of a span must receive, as its streams, the very tensors the previous one returned (glue
        code in between, such as a reshape, ends the span there).
        """
        s, i, br = self.s, unit.index, self.s.branch
        streams: Streams = s.streams[i]
        if i != self.start[i] and [id(stream(bound, n)) for n in streams.names] != self.out_ids.get(i - 1):
            start = self.start[i]
            self._split(start, i - 1)
            self.ends.add(i - 1)
            if ("span", start) in br.pending:
                br.cache.store(("span", start), br.pending.pop(("span", start)), s.step)

    def _check_live(self, args: tuple, kwargs: dict) -> None:
        """A live unit that reads a block's output from inside a span (a long skip) makes the session cache per
        unit: inside a replayed span that output is not what the block returned. (Skipped blocks reading each
        other are fine: with one decision for every unit they compute and replay together.)"""
        inner = {x for j, ids in self.out_ids.items() if j not in self.ends for x in ids}
        if any(id(t) in inner for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)):
            self.per_unit = True  # the spans cached so far are dropped; their units compute at the next step
            for br in self.s.branches.values():
                for key in [k for k in br.cache.values if isinstance(k, tuple)]:
                    br.cache.drop(key)
                br.pending.clear()

    def _split(self, start: int, i: int) -> None:
        last = self.last[start]
        for j in range(i + 1, last + 1):
            self.start[j] = i + 1
        self.last[start], self.last[i + 1] = i, last


class LiveReads(PerUnit):
    """Output reuse with one decision for every unit: keep only the outputs that live code reads."""

    lean_output = True

    def decide(self, unit, call_next: Callable, bound, decision) -> Any:
        s, i, br = self.s, unit.index, self.s.branch
        if s.reads is None or i in s.reads:  # read by something live (or not measured yet): cache it
            return super().decide(unit, call_next, bound, decision)
        if i not in br.skeletons or decision is True:
            out, _ = self.compute(unit, call_next, bound, s.batch)
            br.skeletons[i] = skeleton(out)
            return out
        full = placeholder(br.skeletons[i])
        if decision is False:
            return full
        idx, sub = self.sub(unit, bound, decision)
        out, _ = self.compute(unit, call_next, sub, decision)
        return merge_rows(full, out, idx)


    def prune(self) -> None:
        """After the lineage call: keep only the shapes of the outputs nothing live reads."""
        for br in self.s.branches.values():
            for i in [k for k in br.cache.values if isinstance(k, int) and k not in self.s.reads]:
                br.skeletons[i] = skeleton(br.cache.get(i))
                br.cache.drop(i)


def strategy_for(session) -> PerUnit:
    """Pick how the session caches: per unit, or lean (spans / live reads) when every unit is decided alike."""
    if session.policy.per_unit or not session.policy.reuses:
        return PerUnit(session)
    return LiveReads(session) if session.hooked.adapter.reuse == "output" else Spans(session)
