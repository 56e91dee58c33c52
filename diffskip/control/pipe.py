"""Control in DiffSkipPipeline: load a control model, turn `control_image=` / `control_scale=` into a ControlRun."""
from __future__ import annotations

import contextlib
import math
import numbers
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import SessionError, short

__all__ = ["resolve_control", "control_context", "check_control_scale", "CONTROL_SCALE"]
CONTROL_SCALE = (0.0, 10.0)  # allowed control_scale range: 0 runs the base model, 1 as trained


def resolve_control(control: nn.Module | str | Path | None, model: str = "",
                    denoiser: nn.Module | None = None) -> nn.Module | None:
    """Return a control model from a model, a shipped branch's name, a folder, or None.

    A branch that records its base model is refused in one line on another base (`model`: the base's name,
    `denoiser`: the loaded base denoiser).
    """
    from .inject import load_control  # diffusers loads only when control is used

    if control is None or isinstance(control, nn.Module):
        if control is not None and not hasattr(control, "branch"):
            raise TypeError(f"control={type(control).__name__} is not a control model; allowed: a RelaCtrlModel, "
                            f"a FullControlNetModel or the folder of one (controlnets/<name>).")
        return control
    from ..assets.controls import check_base, control_path

    check_base(control_path(control), model, denoiser)
    return load_control(control)


def check_control_scale(scale: Any) -> float:
    """Return `scale` as a float, or raise unless it is a finite real number in CONTROL_SCALE."""
    lo, hi = CONTROL_SCALE
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) \
            or not lo <= scale <= hi:
        raise SessionError(f"control_scale={short(scale)} is invalid; allowed: a finite number in [{lo:g}, {hi:g}] "
                           f"(0 runs the base model, 1 the control as trained).")
    return float(scale)


def _image_size(pipe: Any, denoiser: nn.Module, kwargs: dict) -> int:
    if kwargs.get("height") is not None:
        return int(kwargs["height"])
    return int(denoiser.config.sample_size * getattr(pipe, "vae_scale_factor", 8))


def _prompt_count(args: tuple, kwargs: dict) -> int | None:
    """Number of prompts of a pipeline call (None when it is given neither as `prompt` nor `prompt_embeds`)."""
    prompt = kwargs.get("prompt", args[0] if args else None)
    if isinstance(prompt, str):
        return 1
    if isinstance(prompt, (list, tuple)):
        return len(prompt)
    embeds = kwargs.get("prompt_embeds")
    return None if embeds is None else int(embeds.shape[0])


def control_context(pipe: Any, denoiser: nn.Module, model: nn.Module | None, args: tuple, kwargs: dict):
    """Pop control_image / control_scale from call kwargs; return a context that runs the control (or a no-op)."""
    image, scale = kwargs.pop("control_image", None), kwargs.pop("control_scale", 1.0)
    if model is None:
        if image is not None:
            raise SessionError("control_image was given but this pipeline has no control model; load one with "
                               "DiffSkipPipeline.from_pretrained(..., control='controlnets/<name>').")
        return contextlib.nullcontext(None)
    scale = check_control_scale(scale)
    if image is None:
        raise SessionError("this pipeline has a control model; pass control_image=... (a PIL image, a list or a "
                           "tensor), or control_scale=0 with any image to run the base model.")
    from .inject import ControlRun, as_condition_images, condition_tokens, controlling

    cond = as_condition_images(image, _image_size(pipe, denoiser, kwargs))
    prompts = _prompt_count(args, kwargs)
    if len(cond) != 1 and len(cond) != prompts:
        raise SessionError(f"{len(cond)} condition images for {prompts or 'an unknown number of'} prompts; allowed: "
                           f"one condition image for all prompts, or one per prompt.")
    tokens = condition_tokens(pipe.vae, denoiser, cond.to(denoiser.device)).to(model.device)
    per_prompt = int(kwargs.get("num_images_per_prompt") or 1)
    if per_prompt > 1 and tokens.shape[0] > 1:
        tokens = tokens.repeat_interleave(per_prompt, dim=0)  # the pipeline repeats each prompt in place
    return controlling(denoiser, ControlRun(model, tokens, scale))
