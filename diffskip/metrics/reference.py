"""Reference statistics of a real image set in a feature space, computed once and cached on disk by content hash."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from .fid import make_fid

log = logging.getLogger(__name__)
KID_KEEP = 2000  # real features kept for KID (its subsets need raw features, not moments)


def content_hash(*parts: torch.Tensor | nn.Module | str) -> str:
    """Return a short sha256 over tensors (bytes), modules (state_dict tensors) and strings."""
    h = hashlib.sha256()
    for part in parts:
        tensors = ([part] if isinstance(part, torch.Tensor) else
                   [v for _, v in sorted(part.state_dict().items())] if isinstance(part, nn.Module) else None)
        if tensors is None:
            h.update(str(part).encode())
            continue
        for t in tensors:
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def features_of(features: nn.Module, images: torch.Tensor, batch: int = 100) -> torch.Tensor:
    """Return (N, D) float64 features of uint8 images (N, C, H, W)."""
    with torch.no_grad():
        return torch.cat([features(chunk).double() for chunk in images.split(batch)])


def reference_stats(features: nn.Module, images: torch.Tensor, cache_dir: str | Path, name: str) -> dict:
    """Return {"mu", "sigma", "n", "kid_features", "key"} of real `images`, from the cache when the hash matches.

    The key hashes the images and the feature network's weights, so changing either recomputes.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"reference images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
    key = content_hash(images, features, type(features).__name__)
    path = Path(cache_dir) / f"ref-{name}-{key}.safetensors"
    if path.exists():
        t = load_file(str(path))
        return {"mu": t["mu"], "sigma": t["sigma"], "n": int(t["n"]), "kid_features": t["kid_features"], "key": key}
    feats = features_of(features, images)
    mu = feats.mean(0)
    sigma = torch.cov(feats.T)
    path.parent.mkdir(parents=True, exist_ok=True)
    keep = feats[torch.randperm(len(feats), generator=torch.Generator().manual_seed(0))[:KID_KEEP]].float()
    save_file({"mu": mu, "sigma": sigma, "n": torch.tensor(len(feats)), "kid_features": keep}, str(path))
    (path.with_suffix(".json")).write_text(json.dumps({"name": name, "n": len(feats), "key": key,
                                                       "features": type(features).__name__}))
    log.info("cached reference statistics %s (%d images)", path, len(feats))
    return {"mu": mu, "sigma": sigma, "n": len(feats), "kid_features": keep, "key": key}


def fid_against(features: nn.Module, ref: dict) -> FrechetInceptionDistance:
    """Return a torchmetrics FID metric whose real side is preloaded from cached reference statistics."""
    metric = make_fid(features)
    metric.reset_real_features = False
    n = ref["n"]
    metric.real_features_sum = (ref["mu"] * n).to(metric.real_features_sum.dtype)
    # torchmetrics keeps sum(x x^T); rebuild it from the unbiased covariance and the mean
    outer = ref["sigma"] * (n - 1) + n * torch.outer(ref["mu"], ref["mu"])
    metric.real_features_cov_sum = outer.to(metric.real_features_cov_sum.dtype)
    metric.real_features_num_samples = torch.tensor(n, dtype=metric.real_features_num_samples.dtype)
    return metric
