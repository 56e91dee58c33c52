"""Start a sampling loop from a Gaussian jump: the jumped latents and the scheduler cut to the remaining steps.

Two forms, one per `GaussianSkip.conditional`:
- plain: the latents your loop would feed its first step jump in closed form to step `k`; the scheduler keeps
  steps k.. (diffusers img2img style: timesteps and per-step sigmas cut together, multistep history empty).
- conditional (prompt-aware): step 0 runs the model as usual; its (guided) prediction gives each sample's own
  Gaussian mean, and the scheduler's first `step` returns the closed-form jump from step 0 to step k with that
  mean instead of a solver step. The schedule the loop iterates is [t_0, t_k, t_k+1, ...].
"""
from __future__ import annotations

from typing import Any

import torch

from .frames import Frames, frames_now, prediction_type, tail_scheduler, to_x0
from .gaussian import GaussianSkip, conditional_mean, gaussian_jump

__all__ = ["start", "check_fresh", "cut_schedule", "jump_on_first_step"]


def check_fresh(skip: GaussianSkip, scheduler: Any) -> Frames:
    """The scheduler's frames; raise unless set_timesteps ran, no step was taken and a step is left."""
    ts = getattr(scheduler, "timesteps", None)
    if ts is None or len(ts) == 0 or getattr(scheduler, "num_inference_steps", None) is None:
        raise ValueError(f"{type(scheduler).__name__} has no timesteps; call scheduler.set_timesteps(num_steps) "
                         f"before skip.start(x, scheduler).")
    if getattr(scheduler, "_step_index", None) is not None:
        raise ValueError(f"{type(scheduler).__name__} already took a step; call skip.start(x, scheduler) right "
                         f"after scheduler.set_timesteps(num_steps), before the loop.")
    if skip.steps >= len(ts):
        raise ValueError(f"GaussianSkip(steps={skip.steps}) leaves no step of {len(ts)} to run; skip at most "
                         f"{len(ts) - 1}.")
    return frames_now(scheduler)


def cut_schedule(scheduler: Any, k: int, keep_first: bool) -> None:
    """Drop steps 1..k-1 (`keep_first`) or 0..k-1 from a scheduler whose `set_timesteps` just ran."""
    if not keep_first:
        tail_scheduler(scheduler, k)
        return
    n = len(scheduler.timesteps)
    scheduler.timesteps = torch.cat([scheduler.timesteps[:1], scheduler.timesteps[k:]])
    sig = getattr(scheduler, "sigmas", None)
    if sig is not None and len(sig) == n + 1:
        scheduler.sigmas = torch.cat([torch.as_tensor(sig[:1]), torch.as_tensor(sig[k:])])


def jump_on_first_step(scheduler: Any, skip: GaussianSkip, fr: Frames) -> None:
    """Replace the scheduler's next `step` (step 0) by the prompt-aware jump to step `skip.steps`, once."""
    from diffusers.schedulers.scheduling_utils import SchedulerOutput

    own = scheduler.__dict__.get("step")  # an instance-level override someone else installed
    ptype, k = prediction_type(scheduler), skip.steps

    def step(model_output, timestep, sample, *args, **kwargs):
        if own is None:
            del scheduler.step
        else:
            scheduler.step = own
        c, a_in, s_in = fr.model_frame(0)
        x = sample.detach().to(torch.float64).cpu()
        pred = model_output.detach().to(torch.float64).cpu()[:, : x.shape[1]]
        x0 = to_x0(pred, c * x, a_in, s_in, ptype)
        src, dst = (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k]))
        mean = conditional_mean(skip.stats, x0, x, src)
        out = gaussian_jump(skip.stats, x, src, dst, mean=mean).to(device=sample.device, dtype=sample.dtype)
        if hasattr(scheduler, "_step_index"):
            scheduler._step_index = 1  # the next call is t_k, at index 1 of the cut schedule
        return SchedulerOutput(prev_sample=out) if kwargs.get("return_dict", True) else (out,)

    scheduler.step = step


def start(skip: GaussianSkip, x: torch.Tensor, scheduler: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Jump `x` (the latents the loop feeds its first step) and cut `scheduler`; return (latents, timesteps)."""
    if skip.steps == 0:
        return x, scheduler.timesteps
    fr = check_fresh(skip, scheduler)
    k = skip.steps
    if skip.conditional:
        cut_schedule(scheduler, k, keep_first=True)
        jump_on_first_step(scheduler, skip, fr)
        return x, scheduler.timesteps
    src, dst = (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k]))
    out = gaussian_jump(skip.stats, x.detach().to(torch.float64).cpu(), src, dst)
    cut_schedule(scheduler, k, keep_first=False)
    return out.to(device=x.device, dtype=x.dtype), scheduler.timesteps
