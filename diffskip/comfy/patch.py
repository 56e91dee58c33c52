"""Patch a ComfyUI ModelPatcher clone with a policy: the OUTER_SAMPLE wrapper (or the legacy unet wrapper).

A patched clone carries an OUTER_SAMPLE wrapper (composable `add_wrapper_with_key`) that attaches diffskip to
the clone's diffusion_model (inert wrappers, so other clones of the same model keep running at full cost)
and opens one session per sampling run, with `num_steps` from the sigmas. On ComfyUI versions without the
wrapper API it falls back to `set_model_unet_function_wrapper`, chaining any wrapper already set there.
"""
from __future__ import annotations

from typing import Any, Callable

from ..adapters import find_adapter, resolve_units
from ..engine import hooks
from ..engine.session import Session, resolve_span, session
from ..engine.stats import Stats
from ..errors import DiffSkipError
from ..policies import Policy

__all__ = ["apply_policy", "last_stats", "policy_of", "expect_steps", "KEY", "OUTER_SAMPLE"]

KEY = "diffskip"  # wrapper key; a later diffskip node on the same clone chain replaces the earlier one
OUTER_SAMPLE = "outer_sample"  # comfy.patcher_extension.WrappersMP.OUTER_SAMPLE


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


class CondOrUncond:
    """`session(uncond=)` for ComfyUI: which rows or call of a step are unconditional, from the `cond_or_uncond`
    list (0: a cond chunk, 1: an uncond chunk, batched in that order) that ComfyUI passes each model call."""

    def __init__(self) -> None:
        self.last: list | None = None  # the latest call's cond_or_uncond

    def see(self, module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook on the diffusion model: remember the call's cond_or_uncond."""
        self.last = (kwargs.get("transformer_options") or {}).get("cond_or_uncond")

    def __call__(self, batch: int, calls: int):
        order = self.last
        if order in ([1, 0], [0, 1]) and batch % 2 == 0:  # one call per step, two equal chunks
            return "half" if order[0] == 1 else "second-half"
        if order == [1]:  # one chunk per call: this call (the calls-th of step 0) is the unconditional one
            return calls - 1
        return None  # not known yet (a cond-only call), or chunks diffskip cannot pair: cfg > 1 then raises


class _OuterSample(_Run):
    """OUTER_SAMPLE wrapper: one diffskip session around one sampling run of the guider's model."""

    def __call__(self, executor, *args, **kwargs):
        patcher = executor.class_obj.model_patcher
        model = hooks.attach(patcher.get_model_object("diffusion_model"))
        sigmas = kwargs["sigmas"] if "sigmas" in kwargs else args[3]
        self.check_steps(len(sigmas) - 1)
        rows = CondOrUncond()
        handle = model.register_forward_pre_hook(rows.see, with_kwargs=True, prepend=True)
        try:
            with session(model, self.policy, num_steps=len(sigmas) - 1, uncond=rows) as s:
                out = executor(*args, **kwargs)
        finally:
            handle.remove()
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
        self.rows = CondOrUncond()

    def __call__(self, apply_model: Callable, params: dict) -> Any:
        self._sigmas = params["c"].get("transformer_options", {}).get("sample_sigmas")
        self.rows.last = params.get("cond_or_uncond")
        if self.session is None:
            self.session = Session(hooks.hooked(self.model), self.policy, num_steps=self._steps, uncond=self.rows)
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
        m.set_model_unet_function_wrapper(_UnetFunction(policy, net, previous))
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


def policy_of(model) -> Policy | None:
    """Return the policy a diffskip node put on this model (None when it carries none)."""
    run = _run_of(model)
    return None if run is None else run.policy


def expect_steps(model, n: int) -> None:
    """Make sampling a diffskip-patched model refuse any step count but `n` (a tuned plan's)."""
    run = _run_of(model)
    if run is None:
        raise DiffSkipError("expect_steps() needs a model patched by a diffskip node (apply_policy).")
    run.expect_steps = n
