"""Small helpers over nested tensor structures: find, slice batch rows, merge rows back."""
from __future__ import annotations

import inspect
from typing import Any

import torch

__all__ = ["first_tensor", "slice_rows", "merge_rows", "take_rows", "rate", "extrapolate", "nbytes", "skeleton",
           "placeholder", "refill"]


def first_tensor(x: Any) -> torch.Tensor | None:
    """Return the first tensor in a nested tuple/list/dict structure (None if there is none)."""
    if isinstance(x, torch.Tensor):
        return x
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    for v in items:
        t = first_tensor(v)
        if t is not None:
            return t
    return None


def _take(x: Any, rows: torch.Tensor, batch: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x.index_select(0, rows.to(x.device)) if x.dim() > 0 and x.shape[0] == batch else x
    if isinstance(x, (tuple, list)):
        return type(x)(_take(v, rows, batch) for v in x)
    if isinstance(x, dict):
        return {k: _take(v, rows, batch) for k, v in x.items()}
    return x


def slice_rows(sig: inspect.Signature, bound: inspect.BoundArguments, rows: torch.Tensor, batch: int,
               unbatched: tuple[str, ...] = ()) -> inspect.BoundArguments:
    """Keep only batch `rows` of every batched argument (dim 0 == batch), except the `unbatched` names."""
    args = {k: v if k in unbatched else _take(v, rows, batch) for k, v in bound.arguments.items()}
    return inspect.BoundArguments(sig, args)


def merge_rows(full: Any, part: Any, rows: torch.Tensor) -> Any:
    """Return `full` with batch `rows` replaced by `part` (same nested structure; new tensors, no in-place)."""
    if isinstance(full, torch.Tensor):
        return full.index_copy(0, rows.to(full.device), part.to(full.dtype))
    if isinstance(full, (tuple, list)):
        return type(full)(merge_rows(f, p, rows) for f, p in zip(full, part))
    return full


def take_rows(x: Any, rows: torch.Tensor) -> Any:
    """Return batch `rows` of every tensor in a nested structure (dim 0 is the batch of the first tensor)."""
    t = first_tensor(x)
    return x if t is None else _take(x, rows, t.shape[0])


def _per_row(op, a: Any, b: Any, k: torch.Tensor) -> Any:
    """Apply op(a, b, k viewed per batch row) to matching tensors of two nested structures; other leaves stay a."""
    if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == k.shape[0]:
        return op(a, b, k.to(a.dtype).view(-1, *[1] * (a.dim() - 1)))
    if isinstance(a, (tuple, list)):
        return type(a)(_per_row(op, x, y, k) for x, y in zip(a, b))
    return a


def rate(cur: Any, prev: Any, k: torch.Tensor) -> Any:
    """Return (cur - prev) * k per batch row (k: (B,)), through nested tuples."""
    return _per_row(lambda a, b, kk: (a - b) * kk, cur, prev, k)


def extrapolate(cur: Any, slope: Any, k: torch.Tensor) -> Any:
    """Return cur + slope * k per batch row (k: (B,)) as one fused multiply-add, through nested tuples."""
    return _per_row(torch.addcmul, cur, slope, k)


def nbytes(x: Any) -> int:
    """Return the bytes of every tensor in a nested structure (dicts, tuples, lists)."""
    if isinstance(x, torch.Tensor):
        return x.numel() * x.element_size()
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (tuple, list)) else ()
    return sum(nbytes(v) for v in items)


def skeleton(x: Any) -> Any:
    """Return a structure's shape: tensors become (shape, dtype, device); other leaves stay as they are."""
    if isinstance(x, torch.Tensor):
        return _Meta(tuple(x.shape), x.dtype, x.device)
    if isinstance(x, (tuple, list)):
        return type(x)(skeleton(v) for v in x)
    return x


def placeholder(sk: Any) -> Any:
    """Return zeros in the shape of a skeleton (a value nothing live will read: see engine/lineage.py)."""
    if isinstance(sk, _Meta):
        return torch.zeros(sk.shape, dtype=sk.dtype, device=sk.device)
    if isinstance(sk, (tuple, list)):
        return type(sk)(placeholder(v) for v in sk)
    return sk


def refill(sk: Any, tensors) -> Any:
    """Rebuild a structure from its skeleton, taking its tensors in order from the iterator `tensors`."""
    if isinstance(sk, _Meta):
        return next(tensors)
    if isinstance(sk, (tuple, list)):
        return type(sk)(refill(v, tensors) for v in sk)
    return sk


class _Meta(tuple):
    """(shape, dtype, device) of a tensor that a placeholder stands in for."""

    def __new__(cls, shape, dtype, device):
        return super().__new__(cls, (shape, dtype, device))

    shape = property(lambda self: self[0])
    dtype = property(lambda self: self[1])
    device = property(lambda self: self[2])
