"""Measure control branches on held-out conditions: Frechet distance, CLIP score, edge F1, Hausdorff, accuracy.

Conditions come from the Fashion-MNIST test split (n/10 images per class, their edge maps), prompts are the
held-out caption templates of each image's true class, so condition and prompt agree.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.fashion import clip_score, real_reference
from diffskip import assets
from diffskip.control.conditions import condition, edge_f1, edge_map, hausdorff
from diffskip.control.inject import ControlRun, condition_tokens, controlling
from diffskip.metrics import feature_network
from diffskip.metrics.classifier import FashionClassifier, predict
from diffskip.metrics.reference import fid_against, reference_stats
from zoo.data import load_split, to_uint8

STEPS, GUIDANCE = 10, 4.0
CACHE = Path("runs/control")


class Judge:
    """Holds the held-out conditions, prompts and the metric networks for one evaluation size."""

    def __init__(self, n: int, cond_name: str = "edges"):
        self.images, self.labels, self.prompts = real_reference(n)
        self.cond_images = condition(cond_name, self.images)  # (n, 3, 32, 32) in {-1, 1}
        self.cond_edges = edge_map(self.images)
        self.features = feature_network("classifier")
        self.ref = reference_stats(self.features, load_split("test")[0], CACHE, "fashion-test")
        self.classifier = FashionClassifier.from_pretrained(assets.path("fashion-classifier"))

    def tokens(self, pipe) -> torch.Tensor:
        return condition_tokens(pipe.vae, pipe.transformer, self.cond_images)

    def score(self, images: torch.Tensor, clip: bool = True) -> dict:
        """Return the metrics of generated uint8 images (n, 3, 32, 32) against the conditions and prompts."""
        fid = fid_against(self.features, self.ref)
        fid.update(images, real=False)
        gen = edge_map(images)
        out = {"fd": fid.compute().item(), "edge_f1": edge_f1(gen, self.cond_edges).mean().item(),
               "hausdorff": hausdorff(gen, self.cond_edges).mean().item(),
               "accuracy": (predict(self.classifier, images) == torch.tensor(self.labels)).float().mean().item()}
        if clip:
            out["clip"] = clip_score(images, self.prompts, assets.path("fashion-clip"))
        return out


@torch.no_grad()
def generate(call, prompts: list[str], seed: int, batch: int = 100, **kwargs) -> tuple[torch.Tensor, float]:
    """Generate uint8 images with `call(prompts, ...)`; return them and the wall seconds (seeded per batch)."""
    out, start = [], time.perf_counter()
    for i in range(0, len(prompts), batch):
        extra = {k: v[i:i + batch] if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
        res = call(prompts[i:i + batch], num_inference_steps=STEPS, guidance_scale=GUIDANCE, output_type="pt",
                   generator=torch.Generator().manual_seed(seed * 100003 + i), use_resolution_binning=False,
                   clean_caption=False, **extra)
        out.append(to_uint8(res.images * 2 - 1))
    return torch.cat(out), time.perf_counter() - start


@torch.no_grad()
def generate_with(pipe, model, tokens: torch.Tensor | None, prompts: list[str], seed: int,
                  off: tuple[int, ...] = (), batch: int = 100) -> tuple[torch.Tensor, float]:
    """Generate through the plain pipeline with a control model (None: no control) on its attached denoiser."""
    out, secs = [], 0.0
    for i in range(0, len(prompts), batch):
        ctx = (controlling(pipe.transformer, ControlRun(model, tokens[i:i + batch], 1.0, off)) if model is not None
               else contextlib.nullcontext())
        with ctx:
            imgs, s = generate(pipe, prompts[i:i + batch], seed * 7 + i, batch)
        out.append(imgs)
        secs += s
    return torch.cat(out), secs


@torch.no_grad()
def flops_per_call(pipe, model, tokens: torch.Tensor | None) -> int:
    """Return FLOPs of one denoiser call on one image (no guidance batch), with the control model if given."""
    tr = pipe.transformer
    x = torch.randn(1, 4, tr.config.sample_size, tr.config.sample_size)
    text = torch.randn(1, 16, tr.config.caption_channels)
    kw = dict(encoder_hidden_states=text, timestep=torch.tensor([500]),
              added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    ctx = controlling(tr, ControlRun(model, tokens[:1])) if model is not None else contextlib.nullcontext()
    with ctx, FlopCounterMode(display=False) as counter:
        tr(x, **kw)
    return counter.get_total_flops()
