"""attach()/detach(): intercept a denoiser's and its units' calls on the instance; inert without a session.

diffskip sits in `module._compiled_call_impl`, the slot that `nn.Module.__call__` consults before
`_call_impl` and where `Module.compile()` puts its compiled callable. So decisions and caches run in eager
Python outside any compiled region: a unit the user compiled (`block.compile(fullgraph=True)`, diffusers'
`compile_repeated_blocks()`) keeps running compiled, before or after attach(), and hooks that replace
`forward` (accelerate offloading) stay inside, untouched. torch.compile of a whole denoiser inlines its
units' `forward` past that slot, so each unit's instance `forward` also routes a call that did not come
through the slot into it: the compiled parent graph-breaks there and the unit runs under the session. Only instance attributes change, never a class;
with no active session every wrapper calls straight through, so outputs are bit-identical.
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

from ..adapters import Adapter, find_adapter, resolve_units
from ..errors import SessionError

__all__ = ["attach", "detach", "hooked", "activate", "Hooked", "Unit"]
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
    """What attach() installed on one model: adapter, units, slots, owners and the active session."""

    def __init__(self, model: nn.Module, adapter: Adapter):
        self.model = model
        self.adapter = adapter
        self.units: list[Unit] = []
        self.slots: list[_Slot] = []
        self.owners = 0  # attach() calls not yet matched by detach()
        self.session = None  # set only inside activate()
        self.control = None  # diffskip.control's per-unit callable, set only inside control.controlling()
        self.flops: dict[tuple, tuple[float, dict[int, float]]] = {}  # measured per input signature
        self.lock = threading.Lock()
        self.timestep_index: int | None = None
        self.inside = False  # True while a unit runs its own forward through diffskip's slot
        self.forwards: list[tuple[nn.Module, bool, Any, Callable]] = []  # module, had own, it, trampoline

    def rearm(self) -> None:
        """Re-install diffskip's slots that a later `compile()` replaced (the compiled callable runs inside)."""
        for unit in self.units:
            if unit.slot.rearm():
                logger.info("unit %d of %s was compiled after attach(); its compiled call now runs inside diffskip",
                            unit.index, type(self.model).__name__)
        self.slots[-1].rearm()  # the model's own slot


def attach(model: nn.Module, adapter: Adapter | None = None) -> nn.Module:
    """Install diffskip's call slots on the model and its units; inert until a session is active.

    Attaching an attached model only counts one more owner; each owner detaches on its own.
    """
    h = model.__dict__.get(_ATTR)
    if h is not None:
        if adapter is not None and adapter != h.adapter:
            raise SessionError(f"{type(model).__name__} is already attached with another adapter; "
                               f"call diffskip.detach(model) first.")
        h.owners += 1
        return model
    h = Hooked(model, adapter or find_adapter(model))
    for i, module in enumerate(resolve_units(model, h.adapter)):
        def make_unit(slot: _Slot, i: int = i) -> Callable:
            def unit_call(*args, **kwargs):
                s, outer = h.session, h.inside
                h.inside = True
                try:
                    if h.control is not None:  # a control branch adds its residual to the unit's output
                        return h.control(h.units[i], lambda *a, **k: slot.inner(*a, **k) if s is None else
                                         s.unit_call(h.units[i], a, k), args, kwargs)
                    return slot.inner(*args, **kwargs) if s is None else s.unit_call(h.units[i], args, kwargs)
                finally:
                    h.inside = outer
            return unit_call
        slot = _Slot(module, make_unit)
        h.slots.append(slot)
        h.units.append(Unit(i, module, inspect.signature(module.forward), slot))
        _trampoline(h, module, slot)

    def make_model(slot: _Slot) -> Callable:
        def model_call(*args, **kwargs):
            s = h.session
            return slot.inner(*args, **kwargs) if s is None else s.model_call(slot.inner, args, kwargs)
        return model_call

    h.slots.append(_Slot(model, make_model))
    params = list(inspect.signature(model.forward).parameters)
    h.timestep_index = params.index(h.adapter.timestep) if h.adapter.timestep in params else None
    h.owners = 1
    model.__dict__[_ATTR] = h
    return model


def _trampoline(h: Hooked, module: nn.Module, slot: _Slot) -> None:
    """Route a unit `forward` reached without the slot (a compiled parent inlined it) into the slot."""
    had, own, fwd = "forward" in module.__dict__, module.__dict__.get("forward"), module.forward

    def forward(*args, **kwargs):
        return fwd(*args, **kwargs) if h.inside else slot.call(*args, **kwargs)

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
    if h.session is not None:
        raise SessionError("detach() inside an active diffskip session; leave the `with` block first.")
    h.owners -= 1
    if h.owners > 0:
        return model
    for slot in reversed(h.slots):
        slot.restore()
    for module, had, own, trampoline in h.forwards:
        if module.__dict__.get("forward") is not trampoline:  # a later hook wrapped it: leave it, pass-through
            h.inside = True  # (never reset: the trampolines it still calls pass straight to the forward)
            continue
        if had:
            module.forward = own
        else:
            del module.__dict__["forward"]
    del model.__dict__[_ATTR]
    return model


@contextlib.contextmanager
def activate(model: nn.Module, session) -> Iterator:
    """Make `session` the active one for an attached model for the duration of the block."""
    h = hooked(model)
    if not h.lock.acquire(blocking=False):
        raise SessionError(f"{type(model).__name__} is already running a diffskip session (another thread, or a "
                           f"nested call); one denoiser runs one session at a time. Fix: serialise the calls, "
                           f"or give each thread its own pipeline (diffusers' pipe.copy / from_pipe of a copy).")
    h.rearm()
    h.session = session
    try:
        yield session
    finally:
        h.session = None
        h.lock.release()
