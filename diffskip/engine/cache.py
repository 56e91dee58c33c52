"""What one guidance branch keeps between steps: cached values per key (a unit, or a span of units) and the
forecaster that turns them into replayed values; and residual streams (how a replay meets a unit's inputs).
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

from .forecast import FORECASTERS, Forecaster
from .tensors import first_tensor, merge_rows, nbytes

__all__ = ["UnitCache", "Streams"]


class UnitCache:
    """Cached values of one guidance pass (cond / uncond / ...), keyed by unit index or span."""

    def __init__(self, forecast: int = 0):
        self.values: dict[Any, Any] = {}
        self.forecaster: Forecaster = FORECASTERS[forecast]()
        self.offsets: dict[Any, torch.Tensor] = {}  # key -> (B, N, D) fresh-minus-forecast at recomputed tokens

    def __contains__(self, key: Any) -> bool:
        return key in self.values

    def get(self, key: Any) -> Any:
        return self.values.get(key)

    def store(self, key: Any, value: Any, step: int, rows: tuple[int, ...] | None = None) -> None:
        """Cache `key`'s value computed at `step` (rows: only those batch rows computed; the rest of `value`
        must then be the previous raw value)."""
        self.forecaster.update(key, self.values.get(key), value, step, rows)
        self.values[key] = value
        if key in self.offsets:  # a compute supersedes the tokens recomputed since the last one
            if rows is None:
                del self.offsets[key]
            else:
                idx = torch.tensor(rows, device=first_tensor(value).device)
                self.offsets[key] = self.offsets[key].index_fill(0, idx, 0)

    def store_rows(self, key: Any, fresh: Any, rows: tuple[int, ...], step: int) -> None:
        """Cache the computed `rows` of `key` (`fresh` holds just those rows) over its previous raw value."""
        idx = torch.tensor(rows, device=first_tensor(fresh).device)
        self.store(key, merge_rows(self.values[key], fresh, idx), step, rows)

    def replay(self, key: Any, step: int) -> Any:
        """Return `key`'s value for `step`: as cached, or forecast."""
        value = self.forecaster.predict(key, self.values[key], step)
        off = self.offsets.get(key)
        return value if off is None else (value[0] + off, *value[1:])

    def patch_tokens(self, key: Any, idx: torch.Tensor, fresh: torch.Tensor, step: int) -> None:
        """Make the replayed residual of a one-stream `key` equal `fresh` (B, k, D) at tokens `idx` (B, k) at
        `step`; later steps replay fresh plus the forecast's change since `step` there (a compute resets it)."""
        forecast = self.forecaster.predict(key, self.values[key], step)[0]  # (B, N, D)
        at = idx.unsqueeze(-1).expand(-1, -1, forecast.shape[-1])
        off = self.offsets.get(key)
        base = torch.zeros_like(forecast) if off is None else off
        self.offsets[key] = base.scatter(1, at, fresh.to(forecast.dtype) - forecast.gather(1, at))

    def keep(self, key: Any, value: Any) -> None:
        """Hold a side value for `key` that is never forecast (a span's inputs, for token selection)."""
        self.values[key] = value

    def drop(self, key: Any) -> None:
        self.values.pop(key, None)
        self.offsets.pop(key, None)
        self.forecaster.drop(key)

    def nbytes(self) -> int:
        """Return the bytes this branch holds (values, token offsets and forecast state)."""
        return nbytes(self.values) + nbytes(self.offsets) + self.forecaster.nbytes()


class Streams:
    """Residual reuse: which unit inputs each output continues, so a skipped unit adds its cached residual."""

    def __init__(self, streams: str | tuple[str | None, ...]):
        self.single = isinstance(streams, str)
        self.names: tuple[str | None, ...] = (streams,) if self.single else tuple(streams)

    def compute(self, run, bound: inspect.BoundArguments) -> tuple[Any, tuple]:
        """Run a unit via `run(bound)`; return its output and out - in per stream (inputs cloned first:
        blocks that update their input in place would otherwise give a zero residual)."""
        inputs = {s: stream(bound, s).clone() for s in set(self.names) if s is not None}
        out = run(bound)
        outs = (out,) if self.single else tuple(out)
        res = tuple(_minus(o, inputs[s]) if s is not None else o for s, o in zip(self.names, outs))
        return out, res

    def replay(self, bound: inspect.BoundArguments, residual: tuple) -> Any:
        """Add a cached residual to the unit's fresh inputs."""
        outs = tuple(stream(bound, s) + r if s is not None and isinstance(r, torch.Tensor) else r
                     for s, r in zip(self.names, residual))
        return outs[0] if self.single else outs

    def identity(self, bound: inspect.BoundArguments) -> Any:
        """Return the unit's inputs in its output layout (a unit inside a replayed span adds nothing itself)."""
        outs = tuple(stream(bound, s) for s in self.names)
        return outs[0] if self.single else outs

    def spannable(self, residual: tuple) -> bool:
        """True when every output continues an input (a residual that a span can sum)."""
        return all(s is not None and isinstance(r, torch.Tensor) for s, r in zip(self.names, residual))


def _minus(out: Any, inp: torch.Tensor) -> Any:
    """Return out - inp; SHAPE_CHANGED where the unit changed the stream's shape (context parallelism splits the
    tokens inside the first block), a non-tensor output as it is."""
    if not isinstance(out, torch.Tensor):
        return out
    return out - inp if out.shape == inp.shape else SHAPE_CHANGED


SHAPE_CHANGED = "shape changed"  # a residual position that cannot be taken (see _minus)


def add(a: tuple, b: tuple) -> tuple:
    """Sum two residual tuples position by position (a position the later unit leaves non-tensor stays so)."""
    return tuple(x + y if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) else y for x, y in zip(a, b))


def stream(bound: inspect.BoundArguments, name: str) -> torch.Tensor:
    """Return a unit's input stream: an argument by name, or "args[i]", the i-th of a `*args` forward."""
    base, _, index = name.partition("[")
    value = bound.arguments[base]
    return value[int(index.rstrip("]"))] if index else value
