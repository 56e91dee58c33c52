"""The node classes: one per registered policy (inputs generated from its dataclass) and the report node.

`NODE_CLASS_MAPPINGS` and `NODE_DISPLAY_NAME_MAPPINGS` are live mappings computed from the policy registry on
every access, so a policy registered later (`diffskip.register_policy`) is a node without a module reload.
ComfyUI copies the mappings once when it loads node packs: register a policy before that (at import of your
own node pack) for ComfyUI to list it.
"""
from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Callable

from ..policies import POLICIES, Policy
from .patch import _run_of, apply_policy

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "NONE", "CATEGORY", "DiffSkipReport", "node_defaults"]

CATEGORY = "diffskip"
NONE = -1  # ComfyUI widgets have no None: -1 stands for it in optional int fields

# Node defaults that differ from the dataclass's. Profile's own (keep=1, every=0) replays ~85% of a UNet's
# units between the first and the last step (15 dB to the unpatched sample in a real ComfyUI); every=2, keep=0
# runs interval:every=2's schedule, which beat fewer steps at equal FLOPs on both embedded models at 20 and 50
# steps (docs/bench_classifier.md). Mask: cycle=1, so the default runs at any step count.
NODE_DEFAULTS: dict[str, dict[str, Any]] = {"profile": {"every": 2, "keep": 0}}
RISKY: dict[tuple[str, str], str] = {  # one line in the widget's tooltip
    ("profile", "every"): "Risky: 0 (or a large N with a small keep) replays most units between the first and "
                          "the last step (15 dB to the unpatched sample in a real ComfyUI at every=0, keep=1)."}


def node_defaults(cls: type[Policy]) -> dict[str, Any]:
    """Return the node's default value of each field of a policy (dataclass defaults, node overrides)."""
    own = NODE_DEFAULTS.get(cls.name, {})
    return {f.name: own.get(f.name, f.metadata.get("node_default", f.default)) for f in dataclasses.fields(cls)}


def _input(cls: type[Policy], f: dataclasses.Field, hint) -> tuple:
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((t for t in (args or (hint,)) if t is not type(None)), str)
    lo, hi = f.metadata.get("range", (None, None))
    default = node_defaults(cls)[f.name]
    tip = f.metadata.get("tooltip", f.name) + (f" ({NONE}: none)" if optional else "")
    if (cls.name, f.name) in RISKY:
        tip = f"{tip.rstrip('.')}. {RISKY[cls.name, f.name]}"
    if base is str:
        return ("STRING", {"default": default, "tooltip": tip})
    opts: dict[str, Any] = {"default": NONE if default is None else default, "tooltip": tip}
    if lo is not None:
        opts["min"] = NONE if optional else lo
    if hi is not None:
        opts["max"] = hi
    if base is float:
        return ("FLOAT", {**opts, "step": 0.01})
    return ("INT", {**opts, "step": 1})


def _fields(cls: type[Policy]) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    own = [f for f in dataclasses.fields(cls) if f.name not in ("head", "tail")]
    shared = [f for f in dataclasses.fields(cls) if f.name in ("head", "tail")]
    return [(f, hints[f.name]) for f in own + shared]


@functools.lru_cache(maxsize=None)
def _policy_node(cls: type[Policy]) -> type:
    """Build (once per policy class) the node class whose widgets are the policy's fields."""
    fields = _fields(cls)

    def INPUT_TYPES(_cls) -> dict:
        return {"required": {"model": ("MODEL", {"tooltip": "the model to accelerate (a clone is patched)"}),
                             **{f.name: _input(cls, f, h) for f, h in fields}}}

    def apply(self, model, **values):
        kwargs = {f.name: None if (values[f.name] == NONE and type(None) in typing.get_args(h)) else values[f.name]
                  for f, h in fields}
        return (apply_policy(model, cls(**kwargs)),)

    return type(f"DiffSkip{cls.__name__}", (), {
        "INPUT_TYPES": classmethod(INPUT_TYPES), "RETURN_TYPES": ("MODEL",), "RETURN_NAMES": ("model",),
        "FUNCTION": "apply", "CATEGORY": CATEGORY, "apply": apply, "__module__": __name__,
        "DESCRIPTION": (cls.__doc__ or cls.name).strip().splitlines()[0]})


class DiffSkipReport:
    """Report what the last sampling run of a diffskip-patched model computed and reused."""

    RETURN_TYPES = ("LATENT", "STRING")
    RETURN_NAMES = ("latent", "report")
    FUNCTION = "report"
    CATEGORY = CATEGORY
    OUTPUT_NODE = True
    DESCRIPTION = "Report computed / reused units and denoiser FLOPs executed by the last diffskip run."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": ("MODEL", {"tooltip": "the model a diffskip node returned"}),
                             "latent": ("LATENT", {"tooltip": "the sampler's output (orders this node after it)"})}}

    def report(self, model, latent):
        run = _run_of(model)
        if run is None:
            text = "no diffskip policy on this model; connect the MODEL output of a DiffSkip policy node."
        elif run.stats is None:
            text = f"policy {run.policy}: no sampling run yet."
        else:
            text = f"policy {run.policy}: {run.stats}"
        return {"ui": {"text": [text]}, "result": (latent, text)}


def _classes() -> dict[str, type]:
    from .plan import plan_node

    nodes = {f"DiffSkip{cls.__name__}": _policy_node(cls) for cls in POLICIES.values()}
    return {**nodes, "DiffSkipReport": DiffSkipReport, "DiffSkipPlan": plan_node()}


def _names() -> dict[str, str]:
    policies = {f"DiffSkip{cls.__name__}": f"DiffSkip {cls.__name__} (cache)" for cls in POLICIES.values()}
    return {**policies, "DiffSkipReport": "DiffSkip Report", "DiffSkipPlan": "DiffSkip Plan (tuned)"}


class _Live(Mapping):
    """A read-only mapping recomputed from the policy registry on every access."""

    def __init__(self, build: Callable[[], dict]):
        self._build = build

    def __getitem__(self, key: str) -> Any:
        return self._build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._build()!r})"


NODE_CLASS_MAPPINGS: Mapping[str, type] = _Live(_classes)
NODE_DISPLAY_NAME_MAPPINGS: Mapping[str, str] = _Live(_names)
