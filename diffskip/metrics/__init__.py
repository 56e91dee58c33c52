"""Evaluation metrics (the [eval] extra): FID/KID features, CLIP score, PSNR/SSIM, FLOP meter."""
from __future__ import annotations

from .classifier import ClassifierFeatures, FashionClassifier, accuracy, predict
from .clipscore import PooledCLIPModel, clip_loader, make_clip_score
from .fid import InceptionFeatures, inception_path, make_fid

__all__ = ["ClassifierFeatures", "FashionClassifier", "InceptionFeatures", "PooledCLIPModel", "accuracy", "clip_loader",
           "inception_path", "make_clip_score", "make_fid", "predict", "feature_network"]


def feature_network(name: str):
    """Return the Frechet feature space: "classifier" (fast, 128-d) or "inception" (FID's network, 2048-d)."""
    if name == "classifier":
        from ..assets import path

        return ClassifierFeatures(path("fashion-classifier"))
    if name == "inception":
        return InceptionFeatures()
    raise ValueError(f"features={name!r}: allowed 'classifier' or 'inception'")
