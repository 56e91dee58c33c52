"""Lineage: which units' outputs each unit (and the denoiser's output) reads, measured on a session's first call.

Under a policy that replays every skippable unit together, a replayed unit whose output only feeds other
replayed units is never read by anything live, so its value need not be kept (DeepCache keeps one feature
for the same reason). Which outputs are read is found once per input signature: every tensor an op creates
is labelled with the units whose outputs it was computed from (through the glue code between units, such as
a UNet's skip-connection concatenations), and a unit's own outputs are labelled with that unit alone.
"""
from __future__ import annotations

from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

import torch

__all__ = ["Lineage", "OUTPUT"]

OUTPUT = -1  # key of the denoiser's own output in `Lineage.reads`


class Lineage(TorchDispatchMode):
    """Label tensors with the units they come from; `reads[u]` = units whose outputs unit `u` reads."""

    def __init__(self) -> None:
        super().__init__()
        self.labels = WeakTensorKeyDictionary()
        self.reads: dict[int, frozenset[int]] = {}
        self.needed: set[int] = set()  # units whose outputs something outside the skippable span read

    def sources(self, x: Any) -> frozenset[int]:
        out: frozenset[int] = frozenset()
        for t in tree_leaves(x):
            if isinstance(t, torch.Tensor) and t in self.labels:
                out |= self.labels[t]
        return out

    def enter_unit(self, index: int, args: tuple, kwargs: dict) -> None:
        self.reads[index] = self.reads.get(index, frozenset()) | self.sources((args, kwargs))

    def exit_unit(self, index: int, out: Any) -> None:
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.labels[t] = frozenset((index,))

    def carried(self, exclude: Any) -> frozenset[int]:
        """Return the labels that some live tensor carries, other than the tensors in `exclude`."""
        skip = {id(t) for t in tree_leaves(exclude) if isinstance(t, torch.Tensor)}
        out: set[int] = set()
        for t, labels in list(self.labels.items()):
            if id(t) not in skip:
                out |= labels
        return frozenset(out)

    def finish(self, out: Any) -> dict[int, frozenset[int]]:
        self.reads[OUTPUT] = self.sources(out)
        return self.reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        src = self.sources((args, kwargs))
        if src:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.labels[t] = src
        else:  # a fresh value (or one computed from unlabelled inputs) carries no unit label
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and t in self.labels:
                    del self.labels[t]
        return out


def live_reads(reads: dict[int, frozenset[int]], skippable: range) -> frozenset[int]:
    """Return the skippable units whose outputs a unit outside `skippable`, or the output, reads directly."""
    readers = [u for u in reads if u not in skippable]
    return frozenset(s for u in readers for s in reads[u] if s in skippable)
