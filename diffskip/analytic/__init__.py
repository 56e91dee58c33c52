"""Analytic step skipping: Gaussian statistics, schedule frames, the closed-form jump, calibration, the skip."""
from __future__ import annotations

from .gaussian import GaussianSkip, GaussianStats, StatsShapeError, conditional_mean, gaussian_jump, gaussian_x0

__all__ = ["GaussianSkip", "GaussianStats", "StatsShapeError", "conditional_mean", "gaussian_jump", "gaussian_x0"]
