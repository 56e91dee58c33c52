"""Evaluate a folder of generated images: FID/KID to a reference, CLIP score to prompts, PSNR/SSIM to a baseline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from .clipscore import DEFAULT_CLIP, make_clip_score
from .fid import make_kid
from .fidelity import mean_psnr, ssim
from .reference import fid_against, reference_stats


def load_images(folder: str | Path) -> tuple[torch.Tensor, list[str]]:
    """Return uint8 RGB images (N, 3, H, W) of the folder's PNGs in name order, and their file names."""
    files = sorted(Path(folder).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no .png images in {folder}; point at a folder of generated PNGs "
                                "(e.g. the output folder of `diffskip generate`)")
    arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    odd = [f.name for f, a in zip(files, arrays) if a.shape != arrays[0].shape]
    if odd:
        raise ValueError(f"images in {folder} differ in size: {files[0].name} is {arrays[0].shape[:2]} but "
                         f"{odd[:3]} are not; keep one image size per folder (move grids elsewhere)")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous(), [f.name for f in files]


def load_prompts(path: str | Path, n: int) -> list[str]:
    """Read n prompts: a .jsonl with a "prompt" field per row (a batch manifest), or one prompt per line."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
    prompts = [json.loads(ln)["prompt"] for ln in lines] if str(path).endswith(".jsonl") else lines
    if len(prompts) != n:
        raise ValueError(f"{path} has {len(prompts)} prompts for {n} images; give one prompt per image, "
                         "in image name order")
    return prompts


def evaluate_folder(images: torch.Tensor, features: nn.Module, real: torch.Tensor | None = None,
                    cache_dir: str | Path = "out/cache", baseline: torch.Tensor | None = None,
                    prompts: list[str] | None = None, clip: str | Path = DEFAULT_CLIP, kid: bool = False,
                    fid_key: str = "fid") -> dict:
    """Return the metrics that the given inputs allow (FID/KID need `real`, PSNR/SSIM `baseline`, CLIP `prompts`).

    `fid_key` names the Frechet distance ("fid" in Inception features, "fd" in any other feature space).
    """
    out: dict = {"n": len(images)}
    if real is not None:
        ref = reference_stats(features, real, cache_dir, "reference")
        fid = fid_against(features, ref)
        for chunk in images.split(100):
            fid.update(chunk, real=False)
        out[fid_key] = fid.compute().item()
        if kid:
            size = min(100, len(images), len(ref["kid_features"]))
            k = make_kid(features, subset_size=size)
            k.real_features = [ref["kid_features"].double()]
            for chunk in images.split(100):
                k.update(chunk, real=False)
            mean, std = k.compute()
            out.update(kid=mean.item(), kid_std=std.item())
    if baseline is not None:
        out.update(psnr=mean_psnr(images, baseline), ssim=ssim(images, baseline))
    if prompts is not None:
        metric = make_clip_score(clip)
        for i in range(0, len(prompts), 100):
            metric.update(list(images[i:i + 100]), prompts[i:i + 100])
        out["clip"] = metric.compute().item()
    return out
