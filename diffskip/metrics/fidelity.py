"""Fidelity of accelerated outputs to the exact (unaccelerated) ones: PSNR, SSIM, mean absolute latent difference.

`psnr_samples` is diffskip's one PSNR formula; the tuner, the CLI, `diffskip eval` and the benchmarks all use it.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = ["MAX_DB", "psnr_samples", "psnr", "mean_psnr", "ssim", "latent_mad"]
MAX_DB = 100.0  # the PSNR reported for identical samples (and the cap of every sample)


def _float64(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def psnr_samples(a: Any, b: Any, peak: float = 255.0, cap: float | None = MAX_DB) -> list[float]:
    """Return the PSNR in dB of each sample along dim 0 of `a` against `b` (tensors, arrays or image lists).

    `peak` is the value range (255 for uint8/PIL, 1 for [0, 1] floats); identical samples give `cap` (None: inf).
    """
    x, ref = _float64(a), _float64(b)
    _check_pair(x, ref)
    mse = ((x - ref) ** 2).reshape(len(x), -1).mean(1).tolist()
    top = math.inf if cap is None else cap
    return [top if m == 0 else min(top, 10 * math.log10(peak * peak / m)) for m in mse]


def psnr(a: Any, b: Any, peak: float = 255.0) -> float:
    """Return the PSNR in dB between two images or arrays of one shape (inf when they are identical)."""
    return psnr_samples(_float64(a)[None], _float64(b)[None], peak, cap=None)[0]


def mean_psnr(a: Any, b: Any, peak: float = 255.0) -> float:
    """Return the mean over images (dim 0) of the per-image PSNR in dB (identical pairs count as 100 dB)."""
    db = psnr_samples(a, b, peak)
    return float(np.mean(db))


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
