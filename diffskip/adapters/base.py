"""The Adapter dataclass, the registry keyed "package:Class", and unit resolution."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterator, Literal, Union

from torch import nn

from ..errors import UnsupportedModelError

__all__ = ["Adapter", "register", "registered", "find_adapter", "resolve_units", "resolve_layout",
           "UnsupportedModelError"]

Spec = Union[str, tuple[Union[str, None], ...]]  # a unit's residual streams (see Adapter.streams)
_REGISTRY: dict[str, Adapter] = {}


@dataclass(frozen=True)
class Adapter:
    """Describe a denoiser's cacheable units in execution order and how to replay a skipped one.

    Args:
        units: attribute names on the model, in execution order; a ModuleList expands to its items and
            a None attribute (e.g. an absent mid block) is left out. A dotted path goes deeper: after the
            name, another name is an attribute of each module so far ("transformer.blocks"), "*" replaces
            each module by its children and "1:" / ":-1" / "2" slice the list so far (ComfyUI's UNet:
            "input_blocks.1:.*" = the layers of every input block but the first).
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
        list_streams: ((entry of units, streams), ...): the streams of the units of that entry where they differ
            from `streams` (FLUX.2: double blocks return two streams, single blocks one); a dict is accepted.
        rising: the timestep rises during sampling (0 = noise, 1 = clean: the Lumina, Lumina 2, Z-Image and
            Ideogram 4 pipelines pass 1 - t / 1000), so the step clock reads it reversed.
    """

    units: tuple[str, ...]
    reuse: Literal["output", "residual"]
    streams: str | tuple[str | None, ...] = "hidden_states"
    head: int = 1
    tail: int = 0
    timestep: str = "timestep"
    unbatched: tuple[str, ...] = field(default=())
    layers: tuple[tuple[str, ...], ...] = field(default=())
    list_streams: tuple[tuple[str, Spec], ...] = field(default=())
    rising: bool = False

    def __post_init__(self) -> None:
        if self.reuse not in ("output", "residual"):
            raise ValueError(f"Adapter.reuse={self.reuse!r} is invalid; allowed: 'output' or 'residual'.")
        if not self.units or isinstance(self.units, str):
            raise ValueError(f"Adapter.units={self.units!r} must be a non-empty tuple of attribute names.")
        for name in ("units", "unbatched"):  # frozen and hashable: lists become tuples
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "layers", tuple(tuple(group) for group in self.layers))
        pairs = self.list_streams.items() if isinstance(self.list_streams, dict) else self.list_streams
        pairs = tuple((path, _spec(spec)) for path, spec in pairs)  # frozen and hashable: lists become tuples
        object.__setattr__(self, "streams", _spec(self.streams))
        object.__setattr__(self, "list_streams", pairs)
        unknown = [path for path, _ in pairs if path not in self.units]
        if unknown:
            raise ValueError(f"Adapter.list_streams names {unknown}, which are not entries of units={self.units}; "
                             f"key each stream spec by one of those entries.")

    def streams_of(self, entry: str) -> Spec | None:
        """Return the residual streams of the units of one `units` entry (None for output reuse)."""
        if self.reuse != "residual":
            return None
        return dict(self.list_streams).get(entry, self.streams)


def _spec(spec: Spec | list) -> Spec:
    return spec if isinstance(spec, str) else tuple(spec)


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


@contextlib.contextmanager
def registered(model_cls: type | str, adapter: Adapter | None = None, **fields) -> Iterator[Adapter]:
    """Register an adapter for the duration of a `with` block, then restore what the registry held (tests)."""
    key = model_cls if isinstance(model_cls, str) else _key(model_cls)
    before = _REGISTRY.get(key)
    try:
        yield register(model_cls, adapter, **fields)
    finally:
        if before is None:
            _REGISTRY.pop(key, None)
        else:
            _REGISTRY[key] = before


def find_adapter(model: nn.Module) -> Adapter:
    """Return the adapter registered for the model's class or its nearest registered base class."""
    for cls in type(model).__mro__:
        if _key(cls) in _REGISTRY:
            return _REGISTRY[_key(cls)]
    lists = [name for name, m in model.named_children() if isinstance(m, nn.ModuleList)]
    raise UnsupportedModelError(
        f"no diffskip adapter for {_key(type(model))}; supported: {sorted(_REGISTRY)}. Its ModuleLists are "
        f"{lists or 'none'}. Register one, e.g. diffskip.register({type(model).__name__}, "
        f"units=({(lists or ['blocks'])[0]!r},), reuse='residual', streams='hidden_states'), or detect it: "
        f"diffskip.adapters.detect(model, probe=lambda: model(**inputs)).")


def _slice(part: str, path: str) -> slice:
    try:
        return slice(*(int(v) if v else None for v in part.split(":"))) if ":" in part else slice(int(part),
                                                                                                 int(part) + 1 or None)
    except ValueError:
        raise UnsupportedModelError(f"adapter unit path {path!r}: {part!r} is not '*', a name, an index or a slice "
                                    f"like '1:' or ':-1'.") from None


def resolve_units(model: nn.Module, adapter: Adapter) -> list[nn.Module]:
    """Return the model's cacheable units in execution order."""
    return [unit for unit, _ in resolve_layout(model, adapter)]


def _entry(model: nn.Module, adapter: Adapter, path: str) -> list[nn.Module]:
    """Return the modules one `units` entry names ("blocks", "transformer.blocks", "input_blocks.1:.*")."""
    name, *rest = path.split(".")
    if not hasattr(model, name):
        raise UnsupportedModelError(f"{type(model).__name__} has no attribute {name!r} named by its adapter "
                                    f"units={adapter.units}; fix the adapter's units.")
    found = [getattr(model, name)]
    for part in rest:  # "blocks.1:.*": slice the list, expand each module into its children, or go deeper
        found = [c for m in found for c in _items(m)]
        if part == "*":
            found = [c for m in found for c in m.children()]
        elif part.isidentifier():
            found = [getattr(m, part, None) for m in found]
        else:
            found = found[_slice(part, path)]
    return [c for m in found for c in _items(m)]


def _items(m: nn.Module | None) -> list[nn.Module]:
    return [] if m is None else list(m) if isinstance(m, nn.ModuleList) else [m]


def _layers(unit: nn.Module, groups: tuple[tuple[str, ...], ...]) -> list[nn.Module]:
    """Return a unit's layers in execution order (see Adapter.layers), or [unit] when it has none."""
    out: list[nn.Module] = []
    for group in groups:
        lists = [list(getattr(unit, name, None) or []) for name in group]
        for i in range(max(map(len, lists), default=0)):
            out.extend(lst[i] for lst in lists if i < len(lst))
    return out or [unit]


def resolve_layout(model: nn.Module, adapter: Adapter) -> list[tuple[nn.Module, Spec | None]]:
    """Return each cacheable unit with its residual stream spec (None for output reuse), in execution order."""
    units: list[tuple[nn.Module, Spec | None]] = []
    for path in adapter.units:
        spec = adapter.streams_of(path)
        units.extend((unit, spec) for unit in _entry(model, adapter, path))
    if not units:
        raise UnsupportedModelError(f"{type(model).__name__}: adapter units={adapter.units} found no modules.")
    if adapter.layers:
        return [(layer, spec) for unit, spec in units for layer in _layers(unit, adapter.layers)]
    return units
