"""Schedule conversions: each diffusers scheduler's latents as x = a * x0 + s * eps, per inference step."""
from __future__ import annotations

import copy

import torch

__all__ = ["UnsupportedSchedulerError", "Frames", "family", "frames", "frames_now", "from_x0", "prediction_type",
           "tail_scheduler", "to_x0"]

# Where a scheduler's latents live (x = a x0 + s eps):
#   "vp"      DDPM-style alpha-bar read at the step's timestep: a = sqrt(abar_t), s = sqrt(1 - abar_t)
#   "vp_sig"  VE sigmas stored on the scheduler, latents in the VP frame: a = 1/sqrt(1+sig^2), s = sig*a
#   "ve"      k-diffusion / EDM style: latents x0 + sig*eps: a = 1, s = sig
#   "flow"    rectified flow (SD3, Flux): a = 1 - sig, s = sig
FAMILIES = {
    "DDIMScheduler": "vp", "DDPMScheduler": "vp", "DDIMParallelScheduler": "vp", "DDPMParallelScheduler": "vp",
    "DPMSolverMultistepScheduler": "vp_sig", "DPMSolverSinglestepScheduler": "vp_sig",
    "UniPCMultistepScheduler": "vp_sig", "DEISMultistepScheduler": "vp_sig", "SASolverScheduler": "vp_sig",
    "EulerDiscreteScheduler": "ve", "EulerAncestralDiscreteScheduler": "ve", "LMSDiscreteScheduler": "ve",
    "EDMEulerScheduler": "ve", "EDMDPMSolverMultistepScheduler": "ve",
    "FlowMatchEulerDiscreteScheduler": "flow",
}


class UnsupportedSchedulerError(TypeError):
    """The scheduler's latent parameterisation is not known to diffskip's analytic skipping."""


class Frames:
    """The scheduler's inference timesteps with the latent frame (a, s) of each step, float64."""

    def __init__(self, timesteps: torch.Tensor, a: torch.Tensor, s: torch.Tensor, kind: str) -> None:
        self.timesteps, self.a, self.s, self.kind = timesteps, a, s, kind

    def __len__(self) -> int:
        return len(self.timesteps)

    def model_frame(self, i: int) -> tuple[float, float, float]:
        """Return (c, a_in, s_in): the denoiser input is c * latents = a_in x0 + s_in eps (scale_model_input)."""
        a, s = float(self.a[i]), float(self.s[i])
        c = 1.0 if self.kind == "flow" else (a * a + s * s) ** -0.5  # VP-trained models see unit-variance input
        return c, a * c, s * c


def family(scheduler) -> str:
    """Return the scheduler's family ("vp", "vp_sig", "ve", "flow") or raise naming the supported ones."""
    name = type(scheduler).__name__
    kind = FAMILIES.get(name)
    if kind is None:
        raise UnsupportedSchedulerError(
            f"analytic skipping does not know where {name} keeps its latents; supported schedulers: "
            f"{sorted(FAMILIES)}. Swap the scheduler (e.g. `pipe.scheduler = DDIMScheduler.from_config("
            f"pipe.scheduler.config)`) or add the class to diffskip.sigmas.FAMILIES with its family.")
    if kind == "vp_sig" and getattr(scheduler.config, "use_flow_sigmas", False):
        return "flow"
    return kind


def _fresh(scheduler, num_inference_steps: int, **set_kwargs):
    """Return a copy of the scheduler with `set_timesteps(num_inference_steps)` applied; the original is untouched."""
    sched = copy.deepcopy(scheduler)
    sched.set_timesteps(num_inference_steps, device="cpu", **set_kwargs)
    return sched


def frames(scheduler, num_inference_steps: int, **set_kwargs) -> Frames:
    """Return the (a, s) latent frame of every inference step of `scheduler` at `num_inference_steps`."""
    return frames_now(_fresh(scheduler, num_inference_steps, **set_kwargs))


def frames_now(sched) -> Frames:
    """Return the (a, s) latent frame of every step of a scheduler whose `set_timesteps` already ran."""
    kind = family(sched)
    ts = sched.timesteps.to(torch.float64)
    n = len(ts)
    if kind == "vp":
        abar = sched.alphas_cumprod.to(torch.float64)[sched.timesteps.long()]
        a, s = abar.sqrt(), (1 - abar).sqrt()
    else:
        sig = torch.as_tensor(sched.sigmas, dtype=torch.float64)[:n]
        if kind == "vp_sig":
            a = (1 + sig**2).rsqrt()
            s = sig * a
        elif kind == "ve":
            a, s = torch.ones_like(sig), sig
        else:
            a, s = 1 - sig, sig
    return Frames(ts, a, s, kind)


def tail_scheduler(scheduler, start: int) -> None:
    """Drop the first `start` steps from a scheduler whose `set_timesteps` just ran (diffusers img2img style).

    `timesteps` and the per-step `sigmas` are cut together, so step indices, multistep orders and the final
    lower-order steps line up with the full run's tail; multistep history is empty because set_timesteps
    just reset it.
    """
    n = len(scheduler.timesteps)
    if not 0 <= start < n:
        raise ValueError(f"cannot skip {start} of {n} steps: skip between 0 and {n - 1} steps.")
    scheduler.timesteps = scheduler.timesteps[start:]
    sig = getattr(scheduler, "sigmas", None)
    if sig is not None and len(sig) == n + 1:  # per-step sigmas plus the final one
        scheduler.sigmas = sig[start:]


def to_x0(pred: torch.Tensor, x_in: torch.Tensor, a_in: float, s_in: float, prediction_type: str) -> torch.Tensor:
    """Convert a denoiser output to its clean-data (x0) prediction, given the input frame x_in = a x0 + s eps."""
    if prediction_type == "epsilon":
        return (x_in - s_in * pred) / a_in
    if prediction_type == "v_prediction":  # v = a eps - s x0 with a^2 + s^2 = 1
        return a_in * x_in - s_in * pred
    if prediction_type == "flow":  # v = eps - x0, x = (1 - s) x0 + s eps
        return x_in - s_in * pred
    if prediction_type == "sample":
        return pred
    raise ValueError(f"prediction_type {prediction_type!r} unknown; allowed: epsilon, v_prediction, flow, sample.")


def from_x0(x0: torch.Tensor, x_in: torch.Tensor, a_in: float, s_in: float, prediction_type: str) -> torch.Tensor:
    """Express a clean-data prediction in a model's parameterisation (the inverse of `to_x0`)."""
    eps = (x_in - a_in * x0) / s_in
    table = {"epsilon": eps, "v_prediction": a_in * eps - s_in * x0, "flow": eps - x0, "sample": x0}
    if prediction_type not in table:
        raise ValueError(f"prediction_type {prediction_type!r} unknown; allowed: {sorted(table)}.")
    return table[prediction_type]


def prediction_type(scheduler) -> str:
    """Return the scheduler's prediction type ("flow" for flow-matching schedulers)."""
    if family(scheduler) == "flow":
        return "flow"
    return scheduler.config.prediction_type
