"""Evaluation metrics: FID/KID features, CLIP score, PSNR/SSIM, FLOP meter.

FID/KID, CLIP score and SSIM need the [eval] extra (torchmetrics); PSNR and the FLOP meter do not. Names are
imported on first use, so `diffskip.metrics.fidelity.psnr` works on a plain install.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {"ClassifierFeatures": "classifier", "FashionClassifier": "classifier", "accuracy": "classifier",
          "predict": "classifier", "PooledCLIPModel": "clipscore", "clip_loader": "clipscore",
          "make_clip_score": "clipscore", "InceptionFeatures": "fid", "inception_path": "fid", "make_fid": "fid"}
__all__ = [*_NAMES, "feature_network"]


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'diffskip.metrics' has no attribute {name!r}")


def feature_network(name: str):
    """Return the Frechet feature space: "classifier" (fast, 128-d) or "inception" (FID's network, 2048-d)."""
    if name == "classifier":
        from ..assets import path
        from .classifier import ClassifierFeatures

        return ClassifierFeatures(path("fashion-classifier"))
    if name == "inception":
        from .fid import InceptionFeatures

        return InceptionFeatures()
    raise ValueError(f"features={name!r}: allowed 'classifier' or 'inception'")
