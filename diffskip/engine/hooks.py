"""attach()/detach(): intercept a denoiser's and its units' calls on the instance; inert without a session.

diffskip sits in `module._compiled_call_impl`, the slot that `nn.Module.__call__` consults before
`_call_impl` and where `Module.compile()` puts its compiled callable. So decisions and caches run in eager
Python outside any compiled region: a unit the user compiled (`block.compile(fullgraph=True)`, diffusers'
`compile_repeated_blocks()`) keeps running compiled, before or after attach(), and hooks that replace
`forward` (accelerate offloading) stay inside, untouched. torch.compile of a whole denoiser inlines its
units' `forward` past that slot, so each unit's instance `forward` also routes a call that did not come
through the slot into it: the compiled parent graph-breaks there and the unit runs under the session. Only
instance attributes change, never a class; with no active chain in the calling thread every wrapper calls
straight through, so outputs are bit-identical.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..adapters import Adapter, detect, detect_static, resolve_layout
from ..errors import SessionError
from .chain import Chain, Hook, PerThread
from .clock import read_timestep

__all__ = ["attach", "detach", "hooked", "activate", "Hooked", "Unit", "Hook"]
logger = logging.getLogger(__name__)

_ATTR = "_diffskip_hooks"
_SLOT = "_compiled_call_impl"  # nn.Module.__call__ calls it, when set, instead of _call_impl


@dataclass
class Unit:
    """One cacheable unit as the session sees it: position, module, signature and the call it wraps."""

    index: int
    module: nn.Module
    signature: inspect.Signature
    slot: _Slot
    streams: str | tuple[str | None, ...] | None = None  # residual streams (None: output reuse)

    @property
    def inner(self) -> Callable[..., Any]:
        """The user's compiled callable, or module._call_impl."""
        return self.slot.inner

    def eager(self, *args, **kwargs) -> Any:
        """Run the unit uncompiled (FLOP counting runs under a dispatch mode that compiled code avoids)."""
        return self.module._call_impl(*args, **kwargs)


class _Slot:
    """diffskip's callable in one module's `_compiled_call_impl`, and what it replaced there."""

    def __init__(self, module: nn.Module, make: Callable[[_Slot], Callable]):
        self.module = module
        self.previous = module.__dict__.get(_SLOT)  # None, or a callable from Module.compile()
        # never traced: a compiled parent graph-breaks here and the session decides in eager Python (tracing
        # through it would bake one step's decisions into the graph); a compiled `inner` still runs compiled
        self.call = torch.compiler.disable(make(self))
        object.__setattr__(module, _SLOT, self.call)

    @property
    def inner(self) -> Callable:
        return self.previous if self.previous is not None else self.module._call_impl

    def rearm(self) -> bool:
        """Take over again after `module.compile()` replaced the slot; return True when it had to."""
        current = self.module.__dict__.get(_SLOT)
        if current is self.call:
            return False
        self.previous = current
        object.__setattr__(self.module, _SLOT, self.call)
        return True

    def restore(self) -> None:
        if self.module.__dict__.get(_SLOT) is self.call:
            object.__setattr__(self.module, _SLOT, self.previous)


class Hooked:
    """What attach() installed on one model: adapter, units, slots, owners and each thread's hook chain."""

    def __init__(self, model: nn.Module, adapter: Adapter | None):
        self.model = model
        self.adapter = adapter
        self.units: list[Unit] = []
        self.slots: list[_Slot] = []
        self.owners = 0  # attach() calls not yet matched by detach()
        self.local = PerThread()  # this thread's active chain (None: plain calls) and trampoline flag
        self.flops: dict[tuple, tuple[float, dict[int, float]]] = {}  # measured per input signature
        self.lineage: dict[tuple, dict[int, frozenset[int]]] = {}  # unit -> units its inputs come from, per signature
        self.timestep_index: int | None = None
        self.active = 0  # threads with an active chain on this model
        self.lock = threading.Lock()
        self.forwards: list[tuple[nn.Module, bool, Any, Callable]] = []  # module, had own, it, trampoline
        self.model_slot: _Slot | None = None

    @property
    def chain(self) -> Chain | None:
        """This thread's active hook chain (None when nothing is active here)."""
        return self.local.chain

    @property
    def session(self):
        """This thread's active caching session, if any."""
        hook = self.chain.get("reuse") if self.chain is not None else None
        return None if hook is None else hook.session

    def rearm(self) -> None:
        """Re-install diffskip's slots that a later `compile()` replaced (the compiled callable runs inside)."""
        for unit in self.units:
            if unit.slot.rearm():
                logger.info("unit %d of %s was compiled after attach(); its compiled call now runs inside diffskip",
                            unit.index, type(self.model).__name__)
        self.model_slot.rearm()


def attach(model: nn.Module, adapter: Adapter | None = None) -> nn.Module:
    """Install diffskip's call slots on the model and its units; inert until a session is active.

    A model with no registered adapter is detected (diffskip.adapters.detect): statically when its structure
    is unambiguous, else from its first call (plain, so a session active then sees the call run again).
    Attaching an attached model only counts one more owner; each owner detaches on its own.
    """
    h = model.__dict__.get(_ATTR)
    if h is not None:
        if adapter is not None and adapter != h.adapter:
            raise SessionError(f"{type(model).__name__} is already attached with another adapter; "
                               f"call diffskip.detach(model) first.")
        h.owners += 1
        return model
    h = Hooked(model, adapter or detect_static(model))
    if h.adapter is not None:
        _install_units(h)

    def make_model(slot: _Slot) -> Callable:
        def model_call(*args, **kwargs):
            if h.adapter is None:  # the first call of a model detection needs to see run
                out = _detect_on(h, slot, args, kwargs)
                if h.local.chain is None:
                    return out
            h.rearm()  # units compiled after attach() run their compiled callable inside diffskip's slot
            chain = h.local.chain
            if chain is None:
                return slot.inner(*args, **kwargs)
            t = read_timestep(args, kwargs, h.adapter.timestep, h.timestep_index)
            return chain.run_model(slot.inner, args, kwargs, t, _batch(args, kwargs), h.adapter.rising)
        return model_call

    h.model_slot = _Slot(model, make_model)
    h.slots.append(h.model_slot)
    h.owners = 1
    model.__dict__[_ATTR] = h
    return model


def _install_units(h: Hooked) -> None:
    """Put diffskip's slot on every unit the adapter names, and note where the timestep argument is."""
    for i, (module, streams) in enumerate(resolve_layout(h.model, h.adapter)):
        def make_unit(slot: _Slot, i: int = i) -> Callable:
            def unit_call(*args, **kwargs):
                local = h.local
                chain, outer = local.chain, local.inside
                local.inside = True
                try:
                    if chain is None:
                        return slot.inner(*args, **kwargs)
                    return chain.run_unit(h.units[i], slot.inner, args, kwargs)
                finally:
                    local.inside = outer
            return unit_call
        slot = _Slot(module, make_unit)
        h.slots.append(slot)
        h.units.append(Unit(i, module, inspect.signature(module.forward), slot, streams))
        _trampoline(h, module, slot)
    params = list(inspect.signature(h.model.forward).parameters)
    h.timestep_index = params.index(h.adapter.timestep) if h.adapter.timestep in params else None


def _detect_on(h: Hooked, slot: _Slot, args: tuple, kwargs: dict) -> Any:
    """Detect the model's adapter from this call (run plain), install its units; return the call's output."""
    out: list = []
    with h.lock:
        if h.adapter is None:
            adapter = detect(h.model, probe=lambda: out.append(slot.inner(*args, **kwargs)))
            logger.info("%s: detected %s", type(h.model).__name__, adapter)
            h.adapter = adapter
            _install_units(h)
    return out[0] if out else slot.inner(*args, **kwargs)


def _batch(args: tuple, kwargs: dict) -> int:
    """Return the call's batch: the leading size of its first tensor, or the length of a list of tensors."""
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v.shape[0] if v.dim() else 1
        if isinstance(v, (list, tuple)) and v and all(isinstance(e, torch.Tensor) for e in v):
            return len(v)
    raise TypeError("the denoiser was called without any tensor argument")


def _trampoline(h: Hooked, module: nn.Module, slot: _Slot) -> None:
    """Route a unit `forward` reached without the slot (a compiled parent inlined it) into the slot."""
    had, own, fwd = "forward" in module.__dict__, module.__dict__.get("forward"), module.forward

    def forward(*args, **kwargs):
        return fwd(*args, **kwargs) if h.local.inside else slot.call(*args, **kwargs)

    # this frame is never traced (torch.compile goes on in `fwd`, the unit's own forward, per class)
    forward = torch.compiler.disable(forward, recursive=False)
    h.forwards.append((module, had, own, forward))
    module.forward = forward


def hooked(model: nn.Module) -> Hooked:
    """Return the attach() state of a model, or raise if it is not attached."""
    h = model.__dict__.get(_ATTR)
    if h is None:
        raise SessionError(f"{type(model).__name__} is not attached; call diffskip.attach(model) first "
                           f"(DiffSkipPipeline does this for you).")
    return h


def detach(model: nn.Module) -> nn.Module:
    """Drop one owner; the last one restores every slot attach() replaced (a later compile() is kept)."""
    h = hooked(model)
    if h.active:
        raise SessionError("detach() while a diffskip session is active on this model (in this or another "
                           "thread); leave the `with` block first.")
    h.owners -= 1
    if h.owners > 0:
        return model
    for slot in reversed(h.slots):
        slot.restore()
    for module, had, own, trampoline in h.forwards:
        if module.__dict__.get("forward") is not trampoline:  # a later hook wrapped it: leave it, pass-through
            h.local = _Detached()  # (every thread's trampolines it still calls pass straight to the forward)
            continue
        if had:
            module.forward = own
        else:
            del module.__dict__["forward"]
    del model.__dict__[_ATTR]
    return model


class _Detached:
    """Per-thread state of a detached model whose trampolines a later hook still calls: always pass through."""

    chain = None
    inside = True


@contextlib.contextmanager
def activate(model: nn.Module, *hooks: Hook | Any) -> Iterator:
    """Add hooks (or a Session's hooks) to the model's chain in this thread for the duration of the block.

    Other threads keep calling the plain model (or their own chains); nesting the same kind of hook in one
    thread is refused.
    """
    h = hooked(model)
    links = [k for x in hooks for k in (x.hooks if hasattr(x, "hooks") else (x,))]
    chain = h.local.chain if h.local.chain is not None else Chain()
    for k in links:
        if chain.get(k.name) is not None:
            what = "control model" if k.name == "control" else "session"
            raise SessionError(f"{type(model).__name__} is already running a diffskip {what} in this thread (a "
                               f"nested call); one at a time. Fix: leave the outer `with` block first.")
    h.rearm()
    added: list[Hook] = []
    try:
        for k in links:
            chain.add(k)
            added.append(k)
        if h.local.chain is None:
            with h.lock:
                h.active += 1
            h.local.chain = chain
        yield hooks[0] if len(hooks) == 1 else hooks
    finally:
        for k in added:
            chain.remove(k)
        if not chain.hooks and h.local.chain is chain:
            h.local.chain = None
            with h.lock:
                h.active -= 1
