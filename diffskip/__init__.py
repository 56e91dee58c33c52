"""diffskip: make Hugging Face Diffusers pipelines cheaper (feature-inheritance caching and more)."""
from __future__ import annotations

from .adapters import Adapter, UnsupportedModelError, register
from .analytic import GaussianSkip, GaussianStats
from .hooks import attach, detach
from .pipeline import DiffSkipPipeline
from .policy import Interval, Mask, Never, Policy, Threshold, Uniform, parse
from .session import session

__version__ = "0.1.0"
__all__ = ["DiffSkipPipeline", "attach", "detach", "session", "register", "Adapter", "parse", "Policy", "Never",
           "Interval", "Uniform", "Threshold", "Mask", "UnsupportedModelError", "GaussianSkip", "GaussianStats"]
