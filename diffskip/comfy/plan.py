"""ComfyUI node: load a plan file from `diffskip tune` and apply its policy (steps go to the KSampler)."""
from __future__ import annotations

from ..errors import DiffSkipError
from ..plan_files import load_plan
from ..policies import parse

SAMPLERS = {None: "the checkpoint's own", "own": "the checkpoint's own", "dpm++": "dpmpp_2m"}


class DiffSkipPlan:
    """Apply a tuned plan: its policy on a clone of the model; wire `steps` into the KSampler."""

    RETURN_TYPES = ("MODEL", "INT", "STRING")
    RETURN_NAMES = ("model", "steps", "sampler")
    FUNCTION = "apply"
    CATEGORY = "diffskip"
    DESCRIPTION = "Load a diffskip plan file (diffskip tune): policy on the model, steps for the KSampler."

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"model": ("MODEL", {"tooltip": "the model to accelerate (a clone is patched)"}),
                             "plan": ("STRING", {"default": "plan.json", "tooltip": "path of a plan file"})}}

    def apply(self, model, plan: str):
        from . import _run_of, apply_policy

        data = load_plan(plan)
        if data.get("skip"):
            raise DiffSkipError(f"{plan}: the plan starts with an analytic jump of {data['skip']} steps, which "
                                f"ComfyUI samplers cannot run; tune with `diffskip tune --no-jumps` for ComfyUI.")
        patched = apply_policy(model, parse(data["policy"]))
        _run_of(patched).expect_steps = data["num_steps"]
        return patched, data["num_steps"], SAMPLERS[data.get("scheduler")]
