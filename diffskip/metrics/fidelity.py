"""Fidelity of accelerated outputs to the exact (unaccelerated) ones: PSNR, SSIM, mean absolute latent difference."""
from __future__ import annotations

import math

import numpy as np
import torch


def psnr(a, b, peak: float = 255.0) -> float:
    """Return the PSNR in dB between two images or arrays (`peak` = 255 for uint8/PIL, 1 for [0, 1] floats)."""
    mse = float(((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)


def mean_psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """Return the mean over images of the per-image PSNR in dB (identical pairs are capped at 100 dB)."""
    _check_pair(a, b)
    return float(np.mean([min(psnr(x, y, peak), 100.0) for x, y in zip(a, b)]))


def ssim(a: torch.Tensor, b: torch.Tensor, peak: float = 255.0) -> float:
    """Return the mean SSIM (torchmetrics, Gaussian 11x11 window) of image batches (N, C, H, W)."""
    from torchmetrics.functional.image import structural_similarity_index_measure  # the [eval] extra

    _check_pair(a, b)
    return structural_similarity_index_measure(a.double(), b.double(), data_range=peak).item()


def latent_mad(a: torch.Tensor, b: torch.Tensor) -> float:
    """Return the mean absolute difference of two latent batches."""
    _check_pair(a, b)
    return (a.double() - b.double()).abs().mean().item()


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"fidelity needs paired batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}; "
                         "compare images made from the same prompts and seeds")
