"""attach()/detach(): instance-level forward wrappers on a denoiser and its units, inert without a session.

Only `forward` attributes of the given instances change (never a class), and `detach()` restores exactly
what was there. With no active session every wrapper calls straight through, so outputs are bit-identical.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .adapters import Adapter, find_adapter, resolve_units

__all__ = ["attach", "detach", "hooked", "HookOrderError"]

_ATTR = "_diffskip_hooks"


class HookOrderError(RuntimeError):
    """detach() found another hook wrapped on top of a diffskip wrapper."""


@dataclass
class Unit:
    """One cacheable unit as the session sees it: position, the forward it wraps and its signature."""

    index: int
    module: nn.Module
    fn: Callable[..., Any]
    signature: inspect.Signature


class Hooked:
    """What attach() installed on one model: its adapter, units, saved forwards and the active session."""

    def __init__(self, model: nn.Module, adapter: Adapter):
        self.model = model
        self.adapter = adapter
        self.units: list[Unit] = []
        self.session = None  # set only inside `with diffskip.session(...)`
        self.flops: dict[tuple, tuple[float, dict[int, float]]] = {}  # measured per input signature
        self._saved: list[tuple[nn.Module, bool, Any, Callable]] = []  # module, had own forward, it, wrapper
        self._timestep_index: int | None = None

    def wrap(self, module: nn.Module, make: Callable[[Callable], Callable]) -> Callable:
        """Replace `module.forward` on the instance with `make(current_forward)`; remember what was there."""
        had = "forward" in module.__dict__
        current = module.forward
        wrapper = functools.wraps(current)(make(current))
        self._saved.append((module, had, module.__dict__.get("forward"), wrapper))
        module.forward = wrapper
        return current

    def timestep(self, args: tuple, kwargs: dict) -> float:
        """Read the denoiser's timestep argument as a float (the session's step clock)."""
        name = self.adapter.timestep
        t = kwargs.get(name) if name in kwargs else (
            args[self._timestep_index] if self._timestep_index is not None and self._timestep_index < len(args)
            else None)
        if t is None:
            raise TypeError(f"{type(self.model).__name__} was called without its {name!r} argument; diffskip's "
                            f"step clock needs it. Set the adapter's timestep= to the right argument name.")
        return float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)


def _first_tensor(args: tuple, kwargs: dict) -> torch.Tensor:
    for v in (*args, *kwargs.values()):
        if isinstance(v, torch.Tensor):
            return v
    raise TypeError("the denoiser was called without any tensor argument")


def attach(model: nn.Module, adapter: Adapter | None = None) -> nn.Module:
    """Wrap the model's and its units' forwards on this instance; inert until a session is active."""
    if _ATTR in model.__dict__:
        if adapter is not None and adapter != model.__dict__[_ATTR].adapter:
            raise RuntimeError(f"{type(model).__name__} is already attached with another adapter; "
                               f"call diffskip.detach(model) first.")
        return model
    adapter = adapter or find_adapter(model)
    h = Hooked(model, adapter)
    units = resolve_units(model, adapter)
    for i, module in enumerate(units):
        def make_unit(fn, i=i):
            def unit_forward(*args, **kwargs):
                s = h.session
                return fn(*args, **kwargs) if s is None else s.unit_call(h.units[i], args, kwargs)
            return unit_forward
        fn = h.wrap(module, make_unit)
        h.units.append(Unit(i, module, fn, inspect.signature(fn)))

    def make_model(fn):
        def model_forward(*args, **kwargs):
            s = h.session
            if s is None:
                return fn(*args, **kwargs)
            x = _first_tensor(args, kwargs)
            return s.model_call(fn, args, kwargs, h.timestep(args, kwargs), x)
        return model_forward

    fn = h.wrap(model, make_model)
    params = list(inspect.signature(fn).parameters)
    h._timestep_index = params.index(adapter.timestep) if adapter.timestep in params else None
    model.__dict__[_ATTR] = h
    return model


def hooked(model: nn.Module) -> Hooked:
    """Return the attach() state of a model, or raise if it is not attached."""
    h = model.__dict__.get(_ATTR)
    if h is None:
        raise RuntimeError(f"{type(model).__name__} is not attached; call diffskip.attach(model) first "
                           f"(DiffSkipPipeline does this for you).")
    return h


def detach(model: nn.Module) -> nn.Module:
    """Restore every forward attach() replaced; refuse if a foreign hook was wrapped on top since."""
    h = hooked(model)
    if h.session is not None:
        raise RuntimeError("detach() inside an active diffskip session; leave the `with` block first.")
    for module, _, _, wrapper in h._saved:
        if module.__dict__.get("forward") is not wrapper:
            found = module.__dict__.get("forward", type(module).forward)
            raise HookOrderError(
                f"cannot detach: {type(module).__name__}.forward is now {getattr(found, '__qualname__', found)!r}, "
                f"a hook added after diffskip.attach() (e.g. enable_model_cpu_offload or group offloading). "
                f"Allowed: detach while diffskip's wrappers are outermost. Fix: remove that hook first "
                f"(pipe.remove_all_hooks() / accelerate.hooks.remove_hook_from_module), then detach.")
    for module, had, previous, _ in reversed(h._saved):
        if had:
            module.forward = previous
        else:
            del module.__dict__["forward"]
    del model.__dict__[_ATTR]
    return model


@contextlib.contextmanager
def activate(model: nn.Module, session) -> Iterator:
    """Make `session` the active one for an attached model for the duration of the block."""
    h = hooked(model)
    if h.session is not None:
        raise RuntimeError("a diffskip session is already active on this model; sessions do not nest.")
    h.session = session
    try:
        yield session
    finally:
        h.session = None
