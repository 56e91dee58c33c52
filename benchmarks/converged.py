"""Fidelity to a converged reference (issue #12): the baseline at 50-100 steps, same prompts and seeds.

Per method: mean per-image PSNR to the converged images (with the per-image values, so two methods can be
compared pairwise with a standard error) and the Frechet distance to the converged images in the classifier's
features. The latter pairs each image with its converged twin (same prompt and seed), so the seed noise that
hides differences in FD to real images cancels; its spread is a bootstrap over images.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from diffskip.metrics.reference import features_of
from diffskip.metrics.fidelity import psnr_samples

BOOTSTRAP = 50  # resamples for the FD-to-converged spread


def reference_steps(steps: int) -> int:
    """The converged run for a cell: 2.5x the steps, between 50 and 100 (20 -> 50, 50 -> 100)."""
    return min(100, max(50, round(2.5 * steps)))


def reference_images(load: Callable[[], Any], prompts: list[str], cfg: Any, out_dir: Path, generate) -> torch.Tensor:
    """The baseline at `reference_steps(cfg.steps)` steps on the cell's prompts and seeds (cached in out_dir)."""
    from .peers import apply_method

    steps = reference_steps(cfg.steps)
    path = Path(out_dir) / f"reference-{steps}.pt"
    if path.exists():
        return torch.load(path)
    pipe = load()
    ref_cfg = dataclasses.replace(cfg, steps=steps)
    images, _ = generate(apply_method(pipe, "none", steps), pipe, prompts, ref_cfg, cfg.seed, None)
    torch.save(images, path)
    return images


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets (N, D)."""
    mu = a.mean(0) - b.mean(0)
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    # tr sqrt(sa sb) from the eigenvalues of sqrt(sa) sb sqrt(sa) (symmetric, PSD up to rounding)
    w, v = torch.linalg.eigh(sa)
    root = (v * w.clamp(min=0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root @ sb @ root).clamp(min=0).sqrt().sum()
    return float(mu @ mu + sa.trace() + sb.trace() - 2 * cross)


def fidelity(images: torch.Tensor, ref: torch.Tensor, ref_feats: torch.Tensor, features: nn.Module) -> dict:
    """PSNR to the converged images (mean and per image) and FD to them with a bootstrap spread (2 std)."""
    per_image = psnr_samples(images.double(), ref.double(), peak=255.0)
    feats = features_of(features, images)
    g = torch.Generator().manual_seed(0)
    boot = []
    for _ in range(BOOTSTRAP):
        idx = torch.randint(len(feats), (len(feats),), generator=g)
        boot.append(frechet(feats[idx], ref_feats[idx]))
    mean = sum(boot) / len(boot)
    std = math.sqrt(sum((x - mean) ** 2 for x in boot) / (len(boot) - 1))
    return {"psnr_conv": sum(per_image) / len(per_image), "psnr_conv_images": [round(x, 3) for x in per_image],
            "fd_conv": frechet(feats, ref_feats), "fd_conv_spread": 2 * std}


def add_converged(points: dict, image_dir: Path, ref: torch.Tensor, features: nn.Module, slug) -> bool:
    """Score every finished method on the cell's seeds against the converged images; True if any was added."""
    ref_feats = features_of(features, ref)
    added = False
    for method, p in points.items():
        if "error" in p or "psnr_conv" in p or method.startswith("none/"):  # none/seeds=k: other seeds
            continue
        p.update(fidelity(torch.load(image_dir / f"{slug(method)}.pt")["images"], ref, ref_feats, features))
        added = True
    return added

