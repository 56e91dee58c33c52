"""The ordered chain of hooks that one attached denoiser runs its calls through, kept per thread.

Each unit call passes through the active hooks in a fixed order (outermost first: control, then the
session's decision/replay, then the FLOP meter nearest the unit); each hook gets `call_next` to continue the
chain. A denoiser call first tells every hook that it begins (with the step clock's reading: run, step,
guidance branch) and afterwards that it ended. The chain lives in thread-local storage: a session active in
one thread never changes a call made in another.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from .clock import Clock

__all__ = ["Hook", "CallInfo", "Chain", "ORDER", "PerThread"]

ORDER = ("control", "reuse", "meter")  # outermost first; a hook's name must be one of these


@dataclass
class CallInfo:
    """One denoiser call as every hook sees it when it begins."""

    timestep: float
    run: int  # runs seen by this chain (a rising timestep starts a new one)
    step: int  # 0-based step within the run
    branch: int  # guidance pass within the step (0, 1, ... for calls with an equal timestep)
    new_run: bool
    batch: int  # leading dimension of the call's first tensor argument


class Hook:
    """One link of a unit's call chain; subclasses override what they need."""

    name: ClassVar[str] = ""
    clock: Clock | None = None  # a hook that keeps state across activations brings its own step clock

    def begin(self, call: CallInfo) -> None:
        """A denoiser call begins (the clock has been read)."""

    def end(self, call: CallInfo) -> None:
        """The denoiser call ended (also after an exception)."""

    def model_call(self, call_next: Callable[[tuple, dict], Any], args: tuple, kwargs: dict) -> Any:
        """Wrap the whole denoiser call (the FLOP meter measures here)."""
        return call_next(args, kwargs)

    def unit_call(self, unit, call_next: Callable[[tuple, dict], Any], args: tuple, kwargs: dict) -> Any:
        """Run one unit through the rest of the chain (or not: a replay returns without calling it)."""
        return call_next(args, kwargs)

    def reset_state(self) -> None:
        """Drop per-call state; the chain calls it when every denoiser call ends (also after an exception)."""


class Chain:
    """The hooks active on one model in one thread, in ORDER, and the step clock they share."""

    def __init__(self) -> None:
        self.hooks: list[Hook] = []
        self.clock = Clock()
        self.call: CallInfo | None = None  # the denoiser call in progress
        self.inner: Callable | None = None  # the denoiser's own call (for a probe run inside a hook)
        self.probe = None  # a Lineage while a hook probes the denoiser: units then run plain, past every hook

    def add(self, hook: Hook) -> None:
        if hook.name not in ORDER:
            raise ValueError(f"hook name {hook.name!r} is not one of {ORDER}.")
        if any(h.name == hook.name for h in self.hooks):
            raise ValueError(f"a {hook.name!r} hook is already active on this model in this thread.")
        self.hooks = sorted([*self.hooks, hook], key=lambda h: ORDER.index(h.name))

    def remove(self, hook: Hook) -> None:
        self.hooks = [h for h in self.hooks if h is not hook]

    def get(self, name: str) -> Hook | None:
        return next((h for h in self.hooks if h.name == name), None)

    def run_model(self, inner: Callable, args: tuple, kwargs: dict, timestep: float, batch: int,
                  rising: bool = False) -> Any:
        """Run one denoiser call: tick the clock, tell every hook, pass through their model wrappers.

        `rising`: the model's timestep grows during sampling (0 = noise), so the clock reads it reversed.
        """
        c = next((h.clock for h in self.hooks if h.clock is not None), self.clock)
        new_run = c.tick(-timestep if rising else timestep)
        self.call = CallInfo(timestep, c.run, c.step, c.branch, new_run, batch)
        self.inner = inner
        hooks = list(self.hooks)
        for h in hooks:
            h.begin(self.call)
        try:
            return _through(hooks, lambda h, nxt, a, k: h.model_call(nxt, a, k), lambda a, k: inner(*a, **k),
                            args, kwargs)
        finally:
            for h in reversed(hooks):
                h.end(self.call)
                h.reset_state()

    def run_unit(self, unit, inner: Callable, args: tuple, kwargs: dict) -> Any:
        """Run one unit call through every hook's unit_call, outermost first."""
        if self.probe is not None:
            self.probe.enter_unit(unit.index, args, kwargs)
            out = unit.eager(*args, **kwargs)
            self.probe.exit_unit(unit.index, out)
            return out
        return _through(self.hooks, lambda h, nxt, a, k: h.unit_call(unit, nxt, a, k), lambda a, k: inner(*a, **k),
                        args, kwargs)


def _through(hooks: list[Hook], step: Callable, last: Callable, args: tuple, kwargs: dict) -> Any:
    """Call hooks[0], whose call_next calls hooks[1], ..., whose call_next calls `last`."""
    def at(i: int) -> Callable[[tuple, dict], Any]:
        if i == len(hooks):
            return last
        return lambda a, k: step(hooks[i], at(i + 1), a, k)
    return at(0)(args, kwargs)


class PerThread(threading.local):
    """What one thread holds for one attached model: its chain, and whether a unit runs its own forward."""

    def __init__(self) -> None:
        self.chain: Chain | None = None
        self.inside = False
