"""`diffskip fit-gaussian`: fit the Gaussian latent statistics analytic step skipping jumps with."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ..fileio import check_input, check_output, open_image, read_bytes, read_text, write_atomic
from . import options as opt
from .common import UsageError


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `fit-gaussian` options."""
    g.add_argument("--model", default="fashion-sd", help="embedded pipeline name or a diffusers pipeline folder")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images, encoded through the pipeline's VAE")
    src.add_argument("--samples", type=opt.int_in(1, 1_000_000), metavar="N",
                     help="final latents of N full-step pipeline samples (prompts from --prompts, cycled)")
    g.add_argument("--prompts", default=None, help="text file, one prompt a line, for --samples")
    g.add_argument("--size", type=opt.size, default=None, help="image size for --images (default: the model's)")
    g.add_argument("--steps", type=opt.steps, default=25, help="sampling steps for --samples")
    g.add_argument("--guidance", type=opt.guidance, default=4.0, help="guidance scale for --samples")
    g.add_argument("--rank", type=opt.int_in(1, 100_000), default=64, help="eigenpairs kept; the rest becomes one "
                                                                           "residual variance")
    g.add_argument("--out", required=True, help="output path without suffix (writes <out>.safetensors and <out>.json)")
    g.add_argument("--overwrite", action="store_true", help="replace existing <out>.safetensors/.json")


def _pipeline(model: str):
    from diffusers import DiffusionPipeline

    from ..pipeline import resolve_model

    try:
        path = Path(resolve_model(model))
        pipe = DiffusionPipeline.from_pretrained(str(path))
    except Exception as exc:  # noqa: BLE001  (diffusers, hub and safetensors raise many kinds: one line each)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"--model {model!r}: cannot load it ({type(exc).__name__}: {first}); allowed: an embedded "
                         f"name, a diffusers pipeline folder or a hub id. Fix the name, or re-download it.") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


def _outputs(args: argparse.Namespace) -> Path:
    """Check both output files before any work; return the path without suffix."""
    if not str(args.out).strip():
        raise UsageError("--out is empty; allowed: a path without suffix, e.g. --out stats/fashion.")
    out = Path(args.out).with_suffix("")
    for p in (out.with_suffix(".safetensors"), out.with_suffix(".json")):
        check_output(p, "--out", args.overwrite)
    return out


def _prompts(args: argparse.Namespace) -> list[str] | None:
    if not args.samples:
        return None
    if not args.prompts:
        raise UsageError("--samples needs --prompts FILE (one prompt a line, cycled to N samples).")
    lines = [ln.strip() for ln in read_text(args.prompts, "--prompts").splitlines() if ln.strip()]
    if not lines:
        raise UsageError(f"--prompts {args.prompts}: no prompts in the file; give one prompt a line.")
    return [lines[i % len(lines)] for i in range(args.samples)]


def run(args: argparse.Namespace) -> None:
    """Fit, save `<out>.safetensors` + `<out>.json` (each written whole, then renamed), and print a summary."""
    out = _outputs(args)
    prompts = _prompts(args)
    if args.images:
        check_input(args.images, "--images", folder=True)
    from ..analytic.fit import fit_from_images, fit_from_samples
    from ..pipeline import read_call_defaults

    pipe, path = _pipeline(args.model)
    meta = {"pipeline": path.name}
    if prompts:
        stats = fit_from_samples(pipe, prompts, args.rank, args.steps, meta=meta, guidance_scale=args.guidance,
                                 **read_call_defaults(str(path)))
    else:
        size = args.size or pipe.vae_scale_factor * _denoiser(pipe).config.sample_size
        images = _image_folder(args.images, size)
        meta["dataset"] = str(args.images)
        stats = fit_from_images(pipe, images, args.rank, meta)
    with tempfile.TemporaryDirectory() as tmp:  # the statistics' own writer, then atomic writes into place
        stats.save(Path(tmp) / "stats")
        for suffix in (".safetensors", ".json"):
            write_atomic(out.with_suffix(suffix), read_bytes(Path(tmp) / f"stats{suffix}", "stats"), "--out")
    explained = float(stats.eigvals.sum() / (stats.eigvals.sum() + stats.residual * (stats.mean.numel() - stats.rank)))
    print(f"fitted {stats.meta['n_samples']} latents {stats.shape} rank {stats.rank} (top eigenvalues "
          f"{[round(v, 3) for v in stats.eigvals[:3].tolist()]}, residual {stats.residual:.2e}, "
          f"{explained:.3f} of the variance in the kept directions) -> {out}.safetensors/.json")


def _image_folder(folder: str, size: int):
    """Load a folder's images (each checked: a readable image, not too large) as uint8 (N, 3, size, size)."""
    import numpy as np
    import torch
    from PIL import Image

    from ..analytic.fit import IMAGE_SUFFIXES

    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise UsageError(f"--images {folder}: no images ({', '.join(IMAGE_SUFFIXES)}) there; allowed: a folder of "
                         "images.")
    arrays = [np.asarray(open_image(p, "--images file").convert("RGB").resize((size, size), Image.BICUBIC))
              for p in paths]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet
