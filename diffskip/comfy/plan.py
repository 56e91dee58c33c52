"""ComfyUI node: apply a plan file from `diffskip tune`; its steps, sampler and scheduler wire into the sampler.

ComfyUI links an output into a COMBO input (KSampler's `sampler_name`, `scheduler`) only when the output's
type is that input's own list of names, so the node's RETURN_TYPES are `comfy.samplers.KSampler.SAMPLERS` and
`.SCHEDULERS` (read at access, inside ComfyUI; "COMBO" where comfy is not importable). A SAMPLER output (the
object `comfy.samplers.sampler_object` builds) feeds SamplerCustom / SamplerCustomAdvanced.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from .. import assets
from ..errors import DiffSkipError, short
from ..plan_files import load_plan
from ..policies import parse
from .patch import apply_policy, expect_steps

__all__ = ["plan_node", "comfy_names"]

# diffusers scheduler -> the ComfyUI sampler that takes the same steps (DDIM with eta=0 is Euler in sigma space)
SAMPLER_OF = {"DDIMScheduler": "ddim", "EulerDiscreteScheduler": "euler", "DPMSolverMultistepScheduler": "dpmpp_2m"}
# diffusers timestep spacing -> the ComfyUI scheduler that picks the same timesteps
SPACING_OF = {"leading": "ddim_uniform", "linspace": "sgm_uniform", "trailing": "simple"}


def _comfy_samplers():
    """Return comfy.samplers inside ComfyUI, None elsewhere (no comfy import at module top)."""
    try:
        import comfy.samplers
    except ImportError:
        return None
    return comfy.samplers


def _scheduler_config(data: dict, plan: str) -> dict:
    """Return the scheduler config of the model the plan was tuned on (its folder or embedded name)."""
    model = data.get("model")
    folder = assets.path(model) if isinstance(model, str) and assets.is_embedded(model) else \
        Path(model) if isinstance(model, str) else None
    cfg = None if folder is None else folder / "scheduler" / "scheduler_config.json"
    if cfg is None or not cfg.is_file():
        raise DiffSkipError(f"{short(plan)}: the plan's model {short(model)} has no scheduler/scheduler_config.json "
                            f"here, so its ComfyUI sampler is unknown; fix: set the plan's \"model\" to the diffusers "
                            f"folder (or embedded name) it was tuned on.")
    return json.loads(cfg.read_text(encoding="utf-8"))


def comfy_names(scheduler: str | None, config: dict) -> tuple[str, str]:
    """Return the ComfyUI (sampler_name, scheduler) closest to a plan's scheduler ('own' / 'dpm++') and config."""
    cls = "DPMSolverMultistepScheduler" if scheduler == "dpm++" else config.get("_class_name")
    dpm_ok = scheduler == "dpm++" or (config.get("algorithm_type", "dpmsolver++") == "dpmsolver++"
                                      and config.get("solver_order", 2) == 2)
    sampler = SAMPLER_OF.get(cls) if cls != "DPMSolverMultistepScheduler" or dpm_ok else None
    if config.get("use_karras_sigmas"):
        sched = "karras"
    elif config.get("use_exponential_sigmas"):
        sched = "exponential"
    elif config.get("use_beta_sigmas"):
        sched = "beta"
    else:
        sched = SPACING_OF.get(config.get("timestep_spacing", "leading"))
    if sampler is None or sched is None:
        raise DiffSkipError(f"the plan was tuned on {cls} (timestep_spacing={config.get('timestep_spacing')!r}), "
                            f"which maps to no ComfyUI sampler; allowed: {sorted(SAMPLER_OF)} with spacing "
                            f"{sorted(SPACING_OF)}; fix: tune with `diffskip tune --schedulers dpm++ --no-jumps`.")
    return sampler, sched


def _check_listed(sampler: str, sched: str, samplers: list, schedulers: list) -> None:
    if sampler not in samplers or sched not in schedulers:
        raise DiffSkipError(f"this ComfyUI lists no sampler {sampler!r} / scheduler {sched!r} for the plan; "
                            f"allowed samplers: {short(samplers)}; update ComfyUI or tune with another scheduler.")


class _Plan:
    """Apply a tuned plan: its policy on a clone of the model; wire steps, sampler_name and scheduler on."""

    RETURN_NAMES = ("model", "steps", "sampler_name", "scheduler", "sampler")
    FUNCTION = "apply"
    CATEGORY = "diffskip"
    DESCRIPTION = ("Load a diffskip plan file (diffskip tune --no-jumps): the policy on the model; steps, "
                   "sampler_name and scheduler for the KSampler (or sampler for SamplerCustom).")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": ("MODEL", {"tooltip": "the model to accelerate (a clone is patched)"}),
                             "plan": ("STRING", {"default": "plan.json", "tooltip": "path of a plan file"})}}

    def apply(self, model, plan: str) -> tuple[Any, ...]:
        data = load_plan(plan)
        if data.get("skip"):
            raise DiffSkipError(f"{plan}: the plan starts with an analytic jump of {data['skip']} steps, which "
                                f"ComfyUI samplers cannot run; tune with `diffskip tune --no-jumps` for ComfyUI.")
        sampler, sched = comfy_names(data.get("scheduler"), _scheduler_config(data, plan))
        cs = _comfy_samplers()
        if cs is None:
            raise DiffSkipError("the DiffSkip Plan node runs inside ComfyUI (comfy.samplers is not importable here); "
                                "outside it use diffskip.comfy.plan.comfy_names or `diffskip generate --plan`.")
        _check_listed(sampler, sched, cs.KSampler.SAMPLERS, cs.KSampler.SCHEDULERS)
        patched = apply_policy(model, parse(data["policy"]))
        expect_steps(patched, data["num_steps"])
        return patched, data["num_steps"], sampler, sched, cs.sampler_object(sampler)


class _Key:
    """Hashable by identity: ComfyUI's name lists are plain lists, compared by identity for the cache."""

    def __init__(self, value: Any):
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.value is self.value


@functools.lru_cache(maxsize=8)
def _build(samplers: _Key, schedulers: _Key) -> type:
    types = ("MODEL", "INT", samplers.value, schedulers.value, "SAMPLER")
    return type("DiffSkipPlan", (_Plan,), {"RETURN_TYPES": types, "__module__": __name__})


def plan_node() -> type:
    """Return the DiffSkipPlan node class, typed with this ComfyUI's sampler and scheduler name lists."""
    cs = _comfy_samplers()
    if cs is None:
        return _build(_Key("COMBO"), _Key("COMBO"))
    return _build(_Key(cs.KSampler.SAMPLERS), _Key(cs.KSampler.SCHEDULERS))
