"""CLIP score (torchmetrics CLIPScore) with the project's own committed CLIP."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torchmetrics.multimodal.clip_score import CLIPScore
from transformers import CLIPModel, CLIPProcessor

from ..assets import path as asset_path

DEFAULT_CLIP = "fashion-clip"  # the embedded CLIP (diffskip/assets); any CLIP folder or hub id works


class PooledCLIPModel(CLIPModel):
    """CLIPModel whose get_*_features return pooled tensors (torchmetrics issue #3407)."""

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs) -> torch.Tensor:
        """Return projected image embeddings (B, D)."""
        out = super().get_image_features(pixel_values=pixel_values, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **kwargs) -> torch.Tensor:
        """Return projected text embeddings (B, D)."""
        out = super().get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return out if isinstance(out, torch.Tensor) else out.pooler_output


def _resolve(path: str | Path) -> str | Path:
    """Return the folder of the embedded CLIP for its name, else `path`."""
    return asset_path(path) if path == DEFAULT_CLIP else path


def _check(path: str | Path) -> None:
    """Raise a clear error for a missing local CLIP folder (hub ids such as "openai/clip-vit-base-patch32" pass)."""
    text = str(path)
    looks_local = isinstance(path, Path) or text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_local and not (Path(text).expanduser() / "config.json").exists():
        raise FileNotFoundError(f"no CLIP model at {text} (config.json missing); pass a folder saved with "
                                f"CLIPModel.save_pretrained (the default is {DEFAULT_CLIP}) or a hub id such as "
                                "'openai/clip-vit-base-patch32' where the hub is reachable")


def clip_loader(path: str | Path = DEFAULT_CLIP) -> Callable[[], tuple[PooledCLIPModel, CLIPProcessor]]:
    """Return the callable CLIPScore expects (a local folder or a hub id), with the #3407 pooled-output fix."""
    path = _resolve(path)
    _check(path)

    def load() -> tuple[PooledCLIPModel, CLIPProcessor]:
        model = PooledCLIPModel.from_pretrained(path, dtype=torch.float32).eval()
        return model, CLIPProcessor.from_pretrained(path)
    return load


def make_clip_score(path: str | Path = DEFAULT_CLIP) -> CLIPScore:
    """Return a torchmetrics CLIPScore backed by a CLIP folder or hub id (default: the committed Fashion CLIP)."""
    return CLIPScore(model_name_or_path=clip_loader(path))
