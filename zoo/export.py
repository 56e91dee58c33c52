"""Save the zoo's models as complete diffusers/transformers folders in fp16 safetensors."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import torch
from diffusers import (DDIMScheduler, DPMSolverMultistepScheduler, PixArtAlphaPipeline,
                       StableDiffusionPipeline)
from transformers import CLIPModel, CLIPProcessor, CLIPTokenizer

try:  # transformers >= 5.20 splits the PIL processor out; older 5.x only has one class
    from transformers import CLIPImageProcessorPil as CLIPImageProcessorPil
except ImportError:  # pragma: no cover - depends on the installed transformers
    from transformers import CLIPImageProcessor as CLIPImageProcessorPil

from .models import BETAS

log = logging.getLogger(__name__)


def half(model: torch.nn.Module) -> torch.nn.Module:
    """Return an fp16 copy of a model (weights are stored in fp16)."""
    return copy.deepcopy(model).to(torch.float16)


def mark_float32(path: Path) -> None:
    """Rewrite transformers configs to dtype float32 so default loading upcasts fp16 weights."""
    for config in path.rglob("config.json"):
        data = json.loads(config.read_text())
        if data.get("dtype") == "float16":
            data["dtype"] = "float32"
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def image_processor() -> CLIPImageProcessorPil:
    """Return the CLIP image processor for 32x32 images normalised to [-1, 1]."""
    return CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                 image_mean=[0.5] * 3, image_std=[0.5] * 3, do_convert_rgb=True)


def save_clip(clip: CLIPModel, tok: CLIPTokenizer, path: Path) -> None:
    """Save CLIPModel, tokenizer and processor into one folder."""
    path.mkdir(parents=True, exist_ok=True)
    half(clip).save_pretrained(path)
    CLIPProcessor(image_processor=image_processor(), tokenizer=tok).save_pretrained(path)
    mark_float32(path)
    log.info("saved CLIP to %s", path)


def load_clip_tokenizer(path: Path) -> CLIPTokenizer:
    """Load the CLIP tokenizer saved next to the model."""
    return CLIPTokenizer.from_pretrained(path)


def sd_scheduler() -> DDIMScheduler:
    """Return SD's DDIM sampler on the training betas."""
    return DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                         prediction_type="epsilon")


def pixart_scheduler() -> DPMSolverMultistepScheduler:
    """Return PixArt's DPM-Solver++ sampler on the training betas."""
    return DPMSolverMultistepScheduler(**BETAS, steps_offset=1, prediction_type="epsilon",
                                       algorithm_type="dpmsolver++", solver_order=2)


def save_sd(path: Path, vae, text_encoder, tok, unet) -> None:
    """Save a complete StableDiffusionPipeline folder (no safety checker)."""
    pipe = StableDiffusionPipeline(vae=half(vae), text_encoder=half(text_encoder), tokenizer=tok,
                                   unet=half(unet), scheduler=sd_scheduler(), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    mark_float32(path)
    log.info("saved StableDiffusionPipeline to %s", path)


def save_pixart(path: Path, vae, t5, tok, transformer) -> None:
    """Save a complete PixArtAlphaPipeline folder."""
    pipe = PixArtAlphaPipeline(tokenizer=tok, text_encoder=half(t5), vae=half(vae),
                               transformer=half(transformer), scheduler=pixart_scheduler())
    pipe.save_pretrained(path, safe_serialization=True)
    mark_float32(path)
    log.info("saved PixArtAlphaPipeline to %s", path)
