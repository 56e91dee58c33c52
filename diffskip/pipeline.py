"""DiffSkipPipeline: wrap any diffusers pipeline by composition; calls keep the pipeline's signature."""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .analytic import GaussianSkip
from .control.pipe import control_context, resolve_control
from .engine import hooks
from .engine.session import resolve_span, session
from .engine.stats import Stats
from .errors import SessionError, UnsupportedPipelineError
from .loading import (CALL_DEFAULTS, gaussian_stats, load_pipeline, read_call_defaults, read_default_steps,
                      resolve_model)
from .policies import Policy, parse

# resolve_model, read_call_defaults and CALL_DEFAULTS live in diffskip.loading (re-exported for existing imports)
__all__ = ["DiffSkipPipeline", "find_denoiser", "resolve_model", "read_call_defaults", "CALL_DEFAULTS"]

DENOISERS = ("transformer", "unet")  # component names searched, in order
# the wrapper's own attributes; writes of any other go to the wrapped pipeline
_OWN = frozenset({"pipe", "policy", "denoiser", "denoiser_name", "count_flops", "skip", "last_stats",
                  "call_defaults", "source", "control", "last_control", "default_steps", "uncond"})


def find_denoiser(pipe: Any, name: str | None = None) -> tuple[str, nn.Module]:
    """Return (component name, module) of a pipeline's denoiser: `name`, else `transformer` or `unet`."""
    found = name or next((n for n in DENOISERS if isinstance(getattr(pipe, n, None), nn.Module)), None)
    model = getattr(pipe, found, None) if found else None
    if not isinstance(model, nn.Module):
        comps = sorted(getattr(pipe, "components", {}) or {})
        raise UnsupportedPipelineError(
            f"{type(pipe).__name__} has no denoiser component {name or ' or '.join(DENOISERS)!r}; components: "
            f"{comps}. Allowed: a pipeline with a `transformer` or `unet`, or pass denoiser='<component name>' "
            f"naming an nn.Module registered with diffskip.register().")
    return found, model


def _remaining_steps(scheduler, t: float) -> int | None:
    """Count the distinct scheduler timesteps from the first one the denoiser saw (`t`) to the end.

    Locating `t` (or `t * 1000`, as Flux passes timestep / 1000, or `(1 - t) * 1000`, as the Lumina and Z-Image
    pipelines pass a rising 1 - timestep / 1000) handles img2img's shortened schedules.
    """
    ts = getattr(scheduler, "timesteps", None)
    if ts is None or len(ts) == 0:
        return None
    ts = torch.unique_consecutive(torch.as_tensor(ts, dtype=torch.float64).cpu())
    for seen in (t, t * 1000.0, (1.0 - t) * 1000.0):
        hit = torch.nonzero(torch.isclose(ts, torch.tensor(seen, dtype=torch.float64), rtol=1e-4, atol=1e-3))
        if hit.numel():
            return int(ts.numel() - hit[0, 0])
    return None


class DiffSkipPipeline:
    """Run a diffusers pipeline with a caching policy on its denoiser; the wrapped object stays exact.

    Args:
        pipe: any `DiffusionPipeline` with a `transformer` or `unet` component (or name it in `denoiser`).
        policy: a Policy or spec string, e.g. "interval:every=3"; change it later with `pipe.policy = ...`.
        denoiser: the component to accelerate, when it is not `transformer` / `unet`.
        count_flops: measure executed vs full denoiser FLOPs into `last_stats`.
        skip: a `GaussianSkip` replacing the first steps with the Gaussian closed-form jump.
        call_defaults: call options applied to every call unless given (a model folder's diffskip_call.json).
        source: the model folder, where the Gaussian statistics of analytic skipping are looked up.
        control: a control model (diffskip.control) or its folder; calls then take `control_image=` and
            `control_scale=` (docs/control.md).

    `uncond` ("auto"): the unconditional rows of classifier-free guidance for policies with `cfg=` > 1, found
    from each call (see `_uncond`), or any `diffskip.session(uncond=)` value to set them.

    Attribute reads and writes other than the wrapper's own go to the wrapped pipeline
    (`fast.scheduler = DPMSolverMultistepScheduler.from_config(...)` changes the pipeline's scheduler).
    """

    def __init__(self, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                 count_flops: bool = True, skip: GaussianSkip | None = None,
                 call_defaults: dict[str, Any] | None = None, source: str | None = None,
                 control: nn.Module | str | None = None):
        self.__dict__["pipe"] = pipe  # set first: attribute access falls through to it
        name, model = find_denoiser(pipe, denoiser)
        self.__dict__["denoiser_name"] = name
        self.__dict__["denoiser"] = hooks.attach(model)
        self.policy = policy
        self.count_flops = count_flops
        if skip is not None and not isinstance(skip, GaussianSkip):
            raise TypeError(f"skip must be a diffskip.GaussianSkip or None, got {type(skip).__name__}.")
        self.skip = skip
        self.call_defaults = dict(call_defaults or {})
        self.default_steps: int | None = None  # a model folder's step count for calls that name none
        self.source = source or getattr(getattr(pipe, "config", None), "_name_or_path", None)
        self.last_stats: Stats | None = None
        self.control = resolve_control(control, self.source or "", model)
        self.last_control = None  # the last call's ControlRun (branch runs per position)
        self.uncond: Any = "auto"  # guidance's unconditional rows for cfg= policies: "auto" or a session(uncond=)

    @classmethod
    def from_pretrained(cls, path: str, policy: Policy | str = "never", denoiser: str | None = None,
                        skip: GaussianSkip | None = None, plan: str | Path | dict | None = None,
                        control: nn.Module | str | None = None, force: bool = False, **kwargs) -> DiffSkipPipeline:
        """Load a diffusers pipeline (an embedded name like 'fashion-sd', a folder or a hub id) and wrap it.

        `plan`: a plan file from `tune` / `diffskip tune` (policy, steps, scheduler, jump), applied on load; it
        must have been tuned on this model's denoiser unless `force=True`. Other kwargs go to diffusers.
        """
        from .plan_files import check_plan, load_plan

        policy = parse(policy)  # a bad spec, plan or force fails before any weights load
        if not isinstance(force, bool):
            raise SessionError(f"force={force!r} is invalid; allowed: True or False.")
        data = None if plan is None else check_plan(plan) if isinstance(plan, dict) else load_plan(plan)
        if isinstance(control, (str, Path)):  # a branch trained for another embedded base: refused before loading
            from .assets.controls import check_base, control_path

            check_base(control_path(control), path)
        pipe, folder = load_pipeline(path, **kwargs)
        fast = cls(pipe, policy, denoiser=denoiser, skip=skip, call_defaults=read_call_defaults(folder), source=folder,
                   control=control)
        fast.default_steps = read_default_steps(folder)
        if data is not None:
            fast.apply_plan(plan, force=force)
        return fast

    def gaussian_stats(self, required: bool = True):
        """Return the model folder's GaussianStats (analytic skipping), or None / raise when it has none."""
        return gaussian_stats(self.source, required)

    def apply_plan(self, plan: str | Path | dict, force: bool = False) -> None:
        """Use a tuned plan (a plan file or its dict): policy, step count, scheduler and analytic jump.

        The plan must have been tuned on this denoiser (its recorded fingerprint) unless `force=True`.
        """
        from .plan_files import apply_plan

        apply_plan(self, plan, force)

    def tune(self, prompts: list[str], budget: float = 0.35, num_inference_steps: int | None = None,
             heldout: list[str] | None = None, save: str | Path | None = None, **kwargs):
        """Find the best plan within `budget` of the FLOPs of `num_inference_steps` plain steps (diffskip.tune).

        Searches steps x policy x scheduler (own, DPM-Solver++) x analytic jump on `prompts`, validates on
        `heldout`, saves the plan JSON to `save`; returns the TuneResult. Does not change this pipeline
        (call `apply_plan(result_path)` to use it). Options: seed, schedulers, jumps, profile, call kwargs.
        """
        from .plan_files import save_plan, tune_pipeline

        result = tune_pipeline(self, prompts, budget, num_inference_steps, heldout=heldout, **kwargs)
        if save is not None:
            save_plan(result, save, self.denoiser, model=self.source)
        return result

    @classmethod
    def from_pipe(cls, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                  skip: GaussianSkip | None = None, control: nn.Module | str | None = None) -> DiffSkipPipeline:
        """Wrap an existing pipeline; it keeps running unaccelerated when called directly."""
        return cls(pipe, policy, denoiser=denoiser, skip=skip, control=control)

    def __call__(self, *args, **kwargs):
        """Call the wrapped pipeline with the policy active on its denoiser; stats go to `last_stats`."""
        from .analytic.pipe import skipping

        if self.__dict__.get("denoiser") is None:
            raise SessionError("this DiffSkipPipeline was detached; call the plain pipeline that detach() returned, "
                               "or wrap it again with DiffSkipPipeline.from_pipe(pipe, policy=...).")
        kwargs = {**self.call_defaults, **kwargs}
        if self.default_steps and "num_inference_steps" not in _bound(self.pipe, args, kwargs):
            kwargs["num_inference_steps"] = self.default_steps
        sched = getattr(self.pipe, "scheduler", None)
        steps = lambda t: _remaining_steps(sched, t)  # noqa: E731
        with control_context(self.pipe, self.denoiser, self.control, args, kwargs) as run, \
                session(self.denoiser, self.policy, num_steps=steps, count_flops=self.count_flops,
                        uncond=_uncond(self.pipe, args, kwargs) if self.uncond == "auto" else self.uncond) as s:
            if self.skip is None:
                out = self.pipe(*args, **kwargs)
            else:
                with skipping(self.pipe, self.skip, self.denoiser, args, kwargs) as kw:
                    out = self.pipe(*args, **kw)
                s.stats.skipped_steps = self.skip.saved_calls
        self.last_stats, self.last_control = s.stats, run
        return out

    def to(self, *args, **kwargs) -> DiffSkipPipeline:
        """Move the wrapped pipeline (`pipe.to(...)`) and return this wrapper, so chaining keeps it."""
        self.pipe.to(*args, **kwargs)
        return self

    def detach(self) -> Any:
        """Remove this wrapper's hold on the denoiser (the last one restores it) and return the plain pipeline."""
        if self.__dict__.get("denoiser") is None:
            raise SessionError("this DiffSkipPipeline was already detached; wrap the pipeline again to use it.")
        hooks.detach(self.denoiser)
        self.__dict__["denoiser"] = None
        return self.pipe

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "policy":
            value = parse(value)
            h = hooks.hooked(self.denoiser)
            if h.adapter is not None:  # else the units are detected on the first call, which checks the policy
                resolve_span(value, h.adapter, len(h.units), type(h.model).__name__)  # head/tail fit: check now
        if name in _OWN:
            self.__dict__[name] = value
        else:
            setattr(self.__dict__["pipe"], name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["pipe"], name)

    def __repr__(self) -> str:
        skip = f", skip={self.skip}" if self.skip is not None else ""
        return (f"DiffSkipPipeline({type(self.pipe).__name__}, policy={self.policy}, "
                f"denoiser={self.denoiser_name}{skip})")


def _uncond(pipe: Any, args: tuple, kwargs: dict) -> Any:
    """Return session(uncond=) for a diffusers call: 'half' when one call per step runs twice the images the call
    asks for (diffusers' batched [uncond, cond] guidance), 1 when two calls per step each run them (the
    conditional pass first, then the unconditional one), else None (a cfg > 1 policy then raises).

    Images = prompts (`prompt`, else `prompt_embeds` rows) x `num_images_per_prompt` / `num_videos_per_prompt`.
    Pipelines batching [cond, uncond] (Lumina v1) need `fast.uncond = "second-half"`.
    """
    b = inspect.signature(pipe.__call__).bind_partial(*args, **kwargs)
    b.apply_defaults()
    a = b.arguments
    prompt, embeds = a.get("prompt"), a.get("prompt_embeds")
    n = 1 if isinstance(prompt, str) else len(prompt) if isinstance(prompt, (list, tuple)) else \
        embeds.shape[0] if isinstance(embeds, torch.Tensor) else None
    per = a.get("num_images_per_prompt", a.get("num_videos_per_prompt")) or 1
    if n is None or not isinstance(per, int):
        return None
    images = n * per
    return lambda batch, calls: "half" if calls == 1 and batch == 2 * images else \
        1 if calls == 2 and batch == images else None


def _bound(pipe: Any, args: tuple, kwargs: dict) -> dict:
    """Return the arguments a pipeline call names (positional ones by their parameter names)."""
    return inspect.signature(pipe.__call__).bind_partial(*args, **kwargs).arguments
