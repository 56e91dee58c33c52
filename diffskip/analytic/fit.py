"""Fit Gaussian latent statistics (VAE-encoded images or the pipeline's own samples) and calibrate the jump."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .gaussian import GaussianSkip, GaussianStats, gaussian_jump, gaussian_x0
from .frames import frames, from_x0, prediction_type

__all__ = ["Calibration", "calibrate", "encode_images", "fit_from_images", "fit_from_samples", "guided_trajectory",
           "load_image_folder"]
log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
# explained variance the Gaussian must keep; measured on the embedded models (docs/analytic.md)
DEFAULT_THRESHOLDS = {"trajectory": 0.93, "prediction": 0.99}


def load_image_folder(folder: str | Path, size: int) -> torch.Tensor:
    """Load every image in a folder as uint8 RGB (N, 3, size, size), bicubic-resized."""
    import numpy as np
    from PIL import Image

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}.")
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BICUBIC)) for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def encode_images(vae: Any, images: torch.Tensor, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    """Encode uint8 images to the latents the scheduler sees: posterior samples * scaling (- shift)."""
    gen = torch.Generator().manual_seed(seed)
    scale = vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    out = []
    for chunk in images.split(batch_size):
        x = chunk.to(vae.device, vae.dtype) / 127.5 - 1.0
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(post.mean)  # training draws
        out.append(((z - shift) * scale).float().cpu())
    return torch.cat(out)


def fit_from_images(pipe: Any, images: torch.Tensor, rank: int, meta: dict | None = None) -> GaussianStats:
    """Fit statistics from uint8 images (N, 3, H, W) encoded with the pipeline's VAE."""
    z = encode_images(pipe.vae, images)
    return GaussianStats.from_latents(z, rank, {"source": "images", **(meta or {}), **_vae_meta(pipe.vae)})


@torch.no_grad()
def fit_from_samples(pipe: Any, prompts: list[str], rank: int, steps: int, seed: int = 0, batch_size: int = 100,
                     meta: dict | None = None, **call_kwargs) -> GaussianStats:
    """Fit statistics from the final latents of the pipeline's own full-step samples (output_type="latent")."""
    out = []
    for i in range(0, len(prompts), batch_size):
        gen = torch.Generator().manual_seed(seed + i)
        res = pipe(prompts[i:i + batch_size], num_inference_steps=steps, generator=gen, output_type="latent",
                   **call_kwargs)
        out.append(res.images.float().cpu())
    info = {"source": "samples", "steps": steps, **(meta or {}), **_vae_meta(pipe.vae)}
    return GaussianStats.from_latents(torch.cat(out), rank, info)


def _vae_meta(vae: Any) -> dict:
    return {"scaling_factor": vae.config.scaling_factor, "shift_factor": getattr(vae.config, "shift_factor", None)}


@dataclass
class Calibration:
    """Agreement of the Gaussian with the model at each step of a schedule, and the jump point it implies.

    `explained_variance[i]`: how much of the model's (guided) prediction at step i the exact Gaussian prediction
    explains, in the model's own parameterisation. `trajectory_ev[k]`: how much of the latents the model's own
    run reaches at step k the Gaussian jump from step 0 explains (same noise). `criterion` picks which one sets
    the jump point; `threshold` is the knob (None: the measured default for that criterion).
    """

    timesteps: list[float]
    explained_variance: list[float]
    threshold: float | None = None
    trajectory_ev: list[float] | None = None
    criterion: str = "trajectory"

    def __post_init__(self) -> None:
        if self.criterion not in DEFAULT_THRESHOLDS:
            raise ValueError(f"criterion {self.criterion!r} unknown; allowed: {sorted(DEFAULT_THRESHOLDS)}.")
        if self.criterion == "trajectory" and self.trajectory_ev is None:
            raise ValueError("criterion 'trajectory' needs trajectory_ev; pass it or use criterion='prediction'.")
        if self.threshold is None:
            self.threshold = DEFAULT_THRESHOLDS[self.criterion]

    @property
    def steps(self) -> int:
        """The jump point: the deepest step up to which agreement stays >= threshold (at least one step is left)."""
        n = len(self.explained_variance)
        if self.criterion == "prediction":  # steps 0..k-1 replaced: each of their predictions must agree
            k = 0
            while k < n - 1 and self.explained_variance[k] >= self.threshold:
                k += 1
            return k
        k = 0  # land on step k: the jump to every step up to k must agree
        while k + 1 < n and self.trajectory_ev[k + 1] >= self.threshold:
            k += 1
        return k

    def skip(self, stats: GaussianStats) -> GaussianSkip:
        """Return the GaussianSkip for this calibration's jump point."""
        return GaussianSkip(stats, self.steps)


def _capture(denoiser: torch.nn.Module, records: list) -> Any:
    """Record (sample input, output) of every denoiser call with a removable forward hook."""

    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        y = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
        records.append((x.detach().to(torch.float64).cpu(), y.detach().to(torch.float64).cpu()))

    return denoiser.register_forward_hook(hook, with_kwargs=True)


BRANCHES = ("guided", "uncond", "cond")


def _branch(x: torch.Tensor, y: torch.Tensor, guidance_scale: float, branch: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the batch's latents and one prediction (diffusers' [uncond, cond] CFG batch convention)."""
    y = y[:, : x.shape[1]]  # learned-sigma models (PixArt) append variance channels
    if guidance_scale <= 1:  # no classifier-free guidance: one conditional pass
        return x, y
    (xu, _), (u, cond) = x.chunk(2), y.chunk(2)
    return xu, {"guided": u + guidance_scale * (cond - u), "uncond": u, "cond": cond}[branch]


@torch.no_grad()
def guided_trajectory(pipe: Any, prompts: list[str], num_inference_steps: int, guidance_scale: float, seed: int = 0,
                      denoiser: str | None = None, branch: str = "guided",
                      **call_kwargs) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Run the pipeline once and return, per step, the denoiser input latents and the `branch` prediction."""
    if branch not in BRANCHES:
        raise ValueError(f"branch {branch!r} unknown; allowed: {BRANCHES}.")
    model = getattr(pipe, denoiser) if denoiser else getattr(pipe, "transformer", None) or pipe.unet
    records: list = []
    handle = _capture(model, records)
    try:
        pipe(prompts, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
             generator=torch.Generator().manual_seed(seed), output_type="latent", **call_kwargs)
    finally:
        handle.remove()
    if len(records) != num_inference_steps:
        raise ValueError(f"calibration saw {len(records)} denoiser calls for {num_inference_steps} steps; it needs "
                         f"one (batched) call per step, as StableDiffusion / PixArt / SD3 pipelines make.")
    return [_branch(x, y, guidance_scale, branch) for x, y in records]


def explained_variance(target: torch.Tensor, estimate: torch.Tensor) -> float:
    """Return 1 - sum |target - estimate|^2 / sum |target - mean_batch(target)|^2 over a batch (B, ...)."""
    t, e = target.flatten(1), estimate.flatten(1)
    return float(1 - (t - e).pow(2).sum() / (t - t.mean(0)).pow(2).sum())


def calibrate(pipe: Any, stats: GaussianStats, prompts: list[str], num_inference_steps: int,
              guidance_scale: float, threshold: float | None = None, seed: int = 0, branch: str = "guided",
              criterion: str = "trajectory", **call_kwargs) -> Calibration:
    """Compare the model's guided prediction with the exact Gaussian one, in the model's parameterisation.

    Explained variance per step, on the trajectory the pipeline itself takes (Wang & Vastola's measure of how much
    of the learned score the Gaussian accounts for). The Gaussian is the unconditional (marginal) fit, and it is
    compared with the *guided* prediction the sampler actually uses, so a high value means guidance changes
    nothing the Gaussian does not already predict there. `branch="uncond"` compares the unconditional pass instead.
    """
    steps = guided_trajectory(pipe, prompts, num_inference_steps, guidance_scale, seed, branch=branch, **call_kwargs)
    fr = frames(pipe.scheduler, num_inference_steps)
    ptype, ev, traj = prediction_type(pipe.scheduler), [], []
    x_start, frame0 = steps[0][0], fr.model_frame(0)[1:]
    for i, (x, pred) in enumerate(steps):
        frame = fr.model_frame(i)[1:]
        ev.append(explained_variance(pred, from_x0(gaussian_x0(stats, x, frame), x.double(), *frame, ptype)))
        traj.append(explained_variance(x, gaussian_jump(stats, x_start, frame0, frame)))
    log.info("calibration explained variance per step: %s", [round(v, 4) for v in ev])
    return Calibration([float(t) for t in fr.timesteps], ev, threshold, traj, criterion)
