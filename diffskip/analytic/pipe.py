"""Run a diffusers pipeline from a Gaussian jump: draw the noise, jump, hand over latents and the remaining steps."""
from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any, Iterator

import torch

from .gaussian import GaussianSkip, StatsShapeError, gaussian_jump
from .frames import frames, tail_scheduler
from .start import check_fresh, cut_schedule, jump_on_first_step

__all__ = ["skipping", "UnsupportedSkipError"]


class UnsupportedSkipError(TypeError):
    """The pipeline cannot start from jumped latents (no `latents` argument, image-conditioned start, ...)."""


def _bound(pipe: Any, args: tuple, kwargs: dict) -> dict:
    """Bind a call's arguments to the pipeline's `__call__` signature, defaults included; check it can be skipped."""
    sig = inspect.signature(pipe.__call__)
    name = type(pipe).__name__
    missing = [p for p in ("latents", "num_inference_steps") if p not in sig.parameters]
    if missing:
        raise UnsupportedSkipError(
            f"{name}.__call__ has no {' / '.join(missing)} argument, so diffskip cannot hand it jumped latents; "
            f"analytic skipping needs a text/class-to-image pipeline that accepts `latents=` (e.g. "
            f"StableDiffusionPipeline, PixArtAlphaPipeline, StableDiffusion3Pipeline). Use skip=None here.")
    if "strength" in sig.parameters or hasattr(pipe, "_pack_latents"):
        why = ("starts from an encoded image (strength), not from noise" if "strength" in sig.parameters
               else "packs its latents into tokens and shifts its sigmas per resolution")
        raise UnsupportedSkipError(f"{name} {why}; analytic skipping supports noise-to-image pipelines with "
                                   f"unpacked (B, C, H, W) latents. Use skip=None here.")
    b = sig.bind_partial(*args, **kwargs)
    b.apply_defaults()
    given = [k for k in ("timesteps", "sigmas") if b.arguments.get(k) is not None]
    if given:
        raise UnsupportedSkipError(f"{name}: custom {given} with skip= is ambiguous; pass num_inference_steps and "
                                   f"let the GaussianSkip cut the scheduler's own schedule.")
    return b.arguments


def _latent_shape(pipe: Any, call: dict, denoiser: torch.nn.Module) -> tuple[int, ...]:
    """Return (B, C, H, W) of the initial latents the pipeline would draw for this call."""
    prompt, embeds = call.get("prompt"), call.get("prompt_embeds")
    if isinstance(prompt, str):
        batch = 1
    elif prompt is not None:
        batch = len(prompt)
    elif embeds is not None:
        batch = len(embeds)
    else:
        raise ValueError(f"{type(pipe).__name__}: pass `prompt` or `prompt_embeds` so the batch size is known.")
    batch *= call.get("num_images_per_prompt") or 1
    cfg, vsf = denoiser.config, pipe.vae_scale_factor
    height = call.get("height") or cfg.sample_size * vsf
    width = call.get("width") or cfg.sample_size * vsf
    return batch, cfg.in_channels, int(height) // vsf, int(width) // vsf


def _jumped_latents(pipe: Any, skip: GaussianSkip, call: dict, denoiser: torch.nn.Module) -> torch.Tensor:
    """Draw the initial noise as the pipeline would (user generator / latents) and jump it `skip.steps` steps."""
    from diffusers.utils.torch_utils import randn_tensor

    shape = _shape_check(pipe, skip, call, denoiser)
    device, dtype = pipe._execution_device, denoiser.dtype
    noise = call.get("latents")
    if noise is None:
        noise = randn_tensor(shape, generator=call.get("generator"), device=device, dtype=dtype)
    if skip.steps == 0:
        return noise
    n = call["num_inference_steps"]
    fr = frames(pipe.scheduler, n)
    if skip.steps >= len(fr):
        raise ValueError(f"GaussianSkip(steps={skip.steps}) leaves no step of {len(fr)} to run; skip at most "
                         f"{len(fr) - 1}.")
    full, tail = copy.deepcopy(pipe.scheduler), copy.deepcopy(pipe.scheduler)
    full.set_timesteps(n, device="cpu")
    tail.set_timesteps(n, device="cpu")
    tail_scheduler(tail, skip.steps)
    k = skip.steps
    # what the full run's first step sees; FlowMatch schedulers have no init_noise_sigma (their latents are not scaled)
    x_start = noise.to(torch.float64) * float(getattr(full, "init_noise_sigma", 1.0))
    x_k = gaussian_jump(skip.stats, x_start.cpu(), (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k])))
    # prepare_latents multiplies user latents by init_noise_sigma, read after set_timesteps cut the schedule
    return (x_k / float(getattr(tail, "init_noise_sigma", 1.0))).to(device=device, dtype=dtype)


def _shape_check(pipe: Any, skip: GaussianSkip, call: dict, denoiser: torch.nn.Module) -> tuple[int, ...]:
    """Return the call's latent shape (B, C, H, W); raise unless the statistics were fitted for it."""
    shape = _latent_shape(pipe, call, denoiser)
    if tuple(shape[1:]) != skip.stats.shape:
        raise StatsShapeError(f"{type(pipe).__name__} draws latents {shape[1:]} for this call but the Gaussian "
                              f"statistics were fitted on {skip.stats.shape}; fit statistics at this size "
                              f"(`diffskip fit-gaussian`) or call with the height/width they were fitted for.")
    return shape


@contextlib.contextmanager
def skipping(pipe: Any, skip: GaussianSkip, denoiser: torch.nn.Module, args: tuple,
             kwargs: dict) -> Iterator[dict]:
    """Yield call kwargs that start `pipe` from the jumped latents, with its scheduler cut to the remaining steps.

    The scheduler's own `set_timesteps` is wrapped on the instance for the duration of the call only; after it
    runs, the first `skip.steps` timesteps / sigmas are dropped (as diffusers' img2img does), which works for
    schedulers without custom `timesteps=` support (DDIM) and keeps shifted sigmas (SD3) unshifted twice. A
    conditional skip keeps step 0 and replaces its scheduler step by the prompt-aware jump (`start.py`).
    """
    call = _bound(pipe, args, kwargs)
    kw = dict(kwargs)
    if skip.conditional:
        _shape_check(pipe, skip, call, denoiser)
    else:
        kw["latents"] = _jumped_latents(pipe, skip, call, denoiser)
    sched = pipe.scheduler
    if skip.steps == 0:
        yield kw
        return
    original = sched.__dict__.get("set_timesteps")  # an instance-level override someone else installed
    inner = original or type(sched).set_timesteps.__get__(sched)

    def set_timesteps(*a, **k):
        inner(*a, **k)
        if skip.conditional:
            fr = check_fresh(skip, sched)
            cut_schedule(sched, skip.steps, keep_first=True)
            jump_on_first_step(sched, skip, fr)
        else:
            tail_scheduler(sched, skip.steps)

    sched.set_timesteps = set_timesteps
    own_step = sched.__dict__.get("step")
    try:
        yield kw
    finally:
        if original is None:
            del sched.set_timesteps
        else:
            sched.set_timesteps = original
        if sched.__dict__.get("step") is not own_step:  # a jump the call never reached
            sched.__dict__.pop("step")
