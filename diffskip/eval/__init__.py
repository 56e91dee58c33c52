"""Evaluation: FID Inception features, CLIP score with the project CLIP, Fashion-MNIST classifier."""
from __future__ import annotations

from .classifier import ClassifierFeatures, FashionClassifier, accuracy, predict
from .clipscore import PooledCLIPModel, clip_loader, make_clip_score
from .fid import InceptionFeatures, inception_path, make_fid

__all__ = ["ClassifierFeatures", "FashionClassifier", "InceptionFeatures", "PooledCLIPModel", "accuracy", "clip_loader",
           "inception_path", "make_clip_score", "make_fid", "predict"]
