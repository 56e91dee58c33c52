"""The Adapter dataclass, the registry keyed "package:Class", and unit resolution."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["Adapter", "register", "find_adapter", "resolve_units", "UnsupportedModelError"]

_REGISTRY: dict[str, Adapter] = {}


@dataclass(frozen=True)
class Adapter:
    """Describe a denoiser's cacheable units in execution order and how to replay a skipped one.

    Args:
        units: attribute names on the model, in execution order; a ModuleList expands to its items and
            a None attribute (e.g. an absent mid block) is left out. A dotted path goes deeper: after the
            name, "*" replaces each module by its children and "1:" / ":-1" / "2" slice the list so far
            (ComfyUI's UNet: "input_blocks.1:.*" = the layers of every input block but the first).
        reuse: "output" returns the unit's cached output (DeepCache / A-SDM feature inheritance, UNets);
            "residual" adds the unit's cached residual to its fresh input (First-Block-Cache, DiTs).
        streams: for "residual": the input argument that each output position continues; a single name
            means the unit returns one tensor. A None position is replayed from the cached value as is.
            "args[i]" names the i-th positional argument of a unit whose forward is (*args, **kwargs).
        head: leading units that always compute by default (the first one is the drift probe).
        tail: trailing units that always compute by default.
        timestep: name of the denoiser forward argument holding the timestep (the step clock).
        unbatched: unit arguments that carry no batch dimension (never sliced for per-sample compute).
        layers: expand each unit into its layers (finer granularity): groups of child ModuleList names; the
            lists of a group interleave by index, groups follow in order (diffusers UNet blocks run
            resnets[0], attentions[0], resnets[1], ..., then their down/upsampler). A unit without them stays whole.
    """

    units: tuple[str, ...]
    reuse: Literal["output", "residual"]
    streams: str | tuple[str | None, ...] = "hidden_states"
    head: int = 1
    tail: int = 0
    timestep: str = "timestep"
    unbatched: tuple[str, ...] = field(default=())
    layers: tuple[tuple[str, ...], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.reuse not in ("output", "residual"):
            raise ValueError(f"Adapter.reuse={self.reuse!r} is invalid; allowed: 'output' or 'residual'.")
        if not self.units or isinstance(self.units, str):
            raise ValueError(f"Adapter.units={self.units!r} must be a non-empty tuple of attribute names.")


def _key(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}:{cls.__name__}"


def register(model_cls: type | str, adapter: Adapter | None = None, **fields) -> Adapter:
    """Register an adapter for a model class (or a "package:Class" key); fields build one inline."""
    if (adapter is None) == (not fields):
        raise TypeError("register() takes either an Adapter or its fields, e.g. "
                        "register(MyNet, units=('blocks',), reuse='residual').")
    adapter = adapter or Adapter(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})
    _REGISTRY[model_cls if isinstance(model_cls, str) else _key(model_cls)] = adapter
    return adapter


def find_adapter(model: nn.Module) -> Adapter:
    """Return the adapter registered for the model's class or its nearest registered base class."""
    for cls in type(model).__mro__:
        if _key(cls) in _REGISTRY:
            return _REGISTRY[_key(cls)]
    lists = [name for name, m in model.named_children() if isinstance(m, nn.ModuleList)]
    raise UnsupportedModelError(
        f"no diffskip adapter for {_key(type(model))}; supported: {sorted(_REGISTRY)}. Its ModuleLists are "
        f"{lists or 'none'}. Register one, e.g. diffskip.register({type(model).__name__}, "
        f"units=({(lists or ['blocks'])[0]!r},), reuse='residual', streams='hidden_states').")


def _slice(part: str, path: str) -> slice:
    try:
        return slice(*(int(v) if v else None for v in part.split(":"))) if ":" in part else slice(int(part),
                                                                                                 int(part) + 1 or None)
    except ValueError:
        raise UnsupportedModelError(f"adapter unit path {path!r}: {part!r} is not '*', an index or a slice "
                                    f"like '1:' or ':-1'.") from None


def resolve_units(model: nn.Module, adapter: Adapter) -> list[nn.Module]:
    """Return the model's cacheable units in execution order."""
    units: list[nn.Module] = []
    for path in adapter.units:
        name, *rest = path.split(".")
        if not hasattr(model, name):
            raise UnsupportedModelError(f"{type(model).__name__} has no attribute {name!r} named by its adapter "
                                        f"units={adapter.units}; fix the adapter's units.")
        item = getattr(model, name)
        if item is None:
            continue
        found = list(item) if isinstance(item, nn.ModuleList) else [item]
        for part in rest:  # "blocks.1:.*": slice the list, then expand each module into its children
            found = [c for m in found for c in m.children()] if part == "*" else found[_slice(part, path)]
        units.extend(found)
    if not units:
        raise UnsupportedModelError(f"{type(model).__name__}: adapter units={adapter.units} found no modules.")
    return [layer for unit in units for layer in _layers(unit, adapter.layers)] if adapter.layers else units


def _layers(unit: nn.Module, groups: tuple[tuple[str, ...], ...]) -> list[nn.Module]:
    """Return a unit's layers in execution order (see Adapter.layers), or [unit] when it has none."""
    out: list[nn.Module] = []
    for group in groups:
        lists = [list(getattr(unit, name, None) or []) for name in group]
        for i in range(max(map(len, lists), default=0)):
            out.extend(lst[i] for lst in lists if i < len(lst))
    return out or [unit]



def resolve_layout(model: nn.Module, adapter: Adapter) -> list[tuple[nn.Module, str | tuple[str | None, ...] | None]]:
    """Return each cacheable unit with its residual stream spec (None for output reuse), in execution order."""
    streams = adapter.streams if adapter.reuse == "residual" else None
    return [(unit, streams) for unit in resolve_units(model, adapter)]
