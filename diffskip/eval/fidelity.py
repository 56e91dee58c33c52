"""Fidelity of accelerated outputs to the exact (unaccelerated) ones."""
from __future__ import annotations

import math

import numpy as np


def psnr(a, b, peak: float = 255.0) -> float:
    """Return the PSNR in dB between two images or arrays (`peak` = 255 for uint8/PIL, 1 for [0, 1] floats)."""
    mse = float(((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(peak**2 / mse)
