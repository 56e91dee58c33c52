"""Fashion-MNIST model zoo: data, tokenizers, configs, training and export of the embedded pipelines."""
from __future__ import annotations

from .train import MODELS, train_all, train_one

__all__ = ["MODELS", "train_all", "train_one"]
