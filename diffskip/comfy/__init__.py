"""ComfyUI custom nodes: one node per caching policy (inputs generated from its dataclass) and a report node.

Nothing imports comfy and nothing is patched at import. A policy node returns `model.clone()` carrying an
OUTER_SAMPLE wrapper (composable `add_wrapper_with_key`) that attaches diffskip to the clone's
diffusion_model (inert wrappers, so other clones of the same model keep running at full cost) and opens
one session per sampling run, with `num_steps` from the sigmas. On ComfyUI versions without the wrapper API
it falls back to `set_model_unet_function_wrapper`, chaining any wrapper already set there.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from ..adapters import find_adapter, resolve_units
from ..engine import hooks
from ..engine.session import Session, resolve_span, session
from ..engine.stats import Stats
from ..errors import DiffSkipError
from ..policies import POLICIES, Policy

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "apply_policy", "last_stats"]

KEY = "diffskip"  # wrapper key; a later diffskip node on the same clone chain replaces the earlier one
OUTER_SAMPLE = "outer_sample"  # comfy.patcher_extension.WrappersMP.OUTER_SAMPLE
CATEGORY = "diffskip"
NONE = -1  # ComfyUI widgets have no None: -1 stands for it in optional int fields


class _Run:
    """State shared by a patched clone's wrapper and the report node: the policy and the last run's stats."""

    def __init__(self, policy: Policy):
        self.policy = policy
        self.stats: Stats | None = None
        self.expect_steps: int | None = None  # a tuned plan's step count (DiffSkip Plan node)

    def check_steps(self, n: int) -> None:
        if self.expect_steps is not None and n != self.expect_steps:
            raise DiffSkipError(f"the diffskip plan was tuned for {self.expect_steps} steps but the sampler runs "
                                f"{n}; allowed: set the KSampler's steps to {self.expect_steps} (wire the "
                                f"plan node's steps output into it).")

    def __deepcopy__(self, memo: dict) -> _Run:
        return self  # ModelPatcher.clone deep-copies model_options; the stats must stay reachable


class _OuterSample(_Run):
    """OUTER_SAMPLE wrapper: one diffskip session around one sampling run of the guider's model."""

    def __call__(self, executor, *args, **kwargs):
        patcher = executor.class_obj.model_patcher
        model = hooks.attach(patcher.get_model_object("diffusion_model"))
        sigmas = kwargs["sigmas"] if "sigmas" in kwargs else args[3]
        self.check_steps(len(sigmas) - 1)
        with session(model, self.policy, num_steps=len(sigmas) - 1) as s:
            out = executor(*args, **kwargs)
        self.stats = s.stats
        return out


class _UnetFunction(_Run):
    """Legacy model_function_wrapper: activates one persistent session per denoiser call (the step clock
    starts a new run by itself when the timestep rises)."""

    def __init__(self, policy: Policy, model, previous: Callable | None):
        super().__init__(policy)
        self.model, self.previous = hooks.attach(model), previous
        self.session: Session | None = None
        self._sigmas = None

    def __call__(self, apply_model: Callable, params: dict) -> Any:
        self._sigmas = params["c"].get("transformer_options", {}).get("sample_sigmas")
        if self.session is None:
            self.session = Session(hooks.hooked(self.model), self.policy, num_steps=self._steps)
        with hooks.activate(self.model, self.session):
            out = (self.previous(apply_model, params) if self.previous is not None
                   else apply_model(params["input"], params["timestep"], **params["c"]))
        self.stats = self.session.stats
        return out

    def _steps(self, t: float) -> int | None:
        return None if self._sigmas is None else len(self._sigmas) - 1


def apply_policy(model, policy: Policy):
    """Return a clone of a ComfyUI ModelPatcher that samples with `policy`; the input model is untouched."""
    m = model.clone()
    net = m.get_model_object("diffusion_model")
    adapter = find_adapter(net)  # unsupported model: raise now, naming how to register
    resolve_span(policy, adapter, len(resolve_units(net, adapter)), type(net).__name__)  # head/tail fit: now
    if hasattr(m, "add_wrapper_with_key"):
        if hasattr(m, "remove_wrappers_with_key"):
            m.remove_wrappers_with_key(OUTER_SAMPLE, KEY)
        m.add_wrapper_with_key(OUTER_SAMPLE, KEY, _OuterSample(policy))
    else:
        previous = m.model_options.get("model_function_wrapper")
        if isinstance(previous, _UnetFunction):  # replace an earlier diffskip node, keep what it wrapped
            previous = previous.previous
        m.set_model_unet_function_wrapper(_UnetFunction(policy, m.get_model_object("diffusion_model"), previous))
    return m


def _run_of(model) -> _Run | None:
    for w in getattr(model, "wrappers", {}).get(OUTER_SAMPLE, {}).get(KEY, []):
        if isinstance(w, _Run):
            return w
    w = getattr(model, "model_options", {}).get("model_function_wrapper")
    return w if isinstance(w, _Run) else None


def last_stats(model) -> Stats | None:
    """Return the stats of the last sampling run of a model patched by a diffskip node (None before one)."""
    run = _run_of(model)
    return None if run is None else run.stats


# -- node inputs generated from the policy dataclasses -----------------------------------------------------
def _input(f: dataclasses.Field, hint) -> tuple:
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((t for t in (args or (hint,)) if t is not type(None)), str)
    lo, hi = f.metadata.get("range", (None, None))
    default = f.metadata.get("node_default", f.default)  # e.g. Mask: cycle=1, so the default runs at any step count
    tip = f.metadata.get("tooltip", f.name) + (f" ({NONE}: none)" if optional else "")
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


def _policy_node(cls: type[Policy]) -> type:
    fields = _fields(cls)

    def INPUT_TYPES(_cls) -> dict:
        return {"required": {"model": ("MODEL", {"tooltip": "the model to accelerate (a clone is patched)"}),
                             **{f.name: _input(f, h) for f, h in fields}}}

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


_NODES = {f"DiffSkip{cls.__name__}": _policy_node(cls) for cls in POLICIES.values()}
from .plan import DiffSkipPlan  # noqa: E402  (it uses apply_policy above)

NODE_CLASS_MAPPINGS: dict[str, type] = {**_NODES, "DiffSkipReport": DiffSkipReport, "DiffSkipPlan": DiffSkipPlan}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    **{k: f"DiffSkip {v.__name__[len('DiffSkip'):]} (cache)" for k, v in _NODES.items()},
    "DiffSkipReport": "DiffSkip Report", "DiffSkipPlan": "DiffSkip Plan (tuned)"}
