"""`diffskip fit-gaussian`: fit the Gaussian latent statistics analytic step skipping jumps with."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analytic_fit import fit_from_images, fit_from_samples, load_image_folder

EMBEDDED = Path(__file__).resolve().parents[2] / "pipelines"


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `fit-gaussian` options."""
    g.add_argument("--model", default="fashion-sd", help="embedded pipeline name or a diffusers pipeline folder")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of images, encoded through the pipeline's VAE")
    src.add_argument("--fashion-mnist", type=int, metavar="N", help="the first N Fashion-MNIST train images")
    src.add_argument("--samples", type=int, metavar="N", help="final latents of N full-step pipeline samples")
    g.add_argument("--size", type=int, default=None, help="image size for --images (default: the model's)")
    g.add_argument("--steps", type=int, default=25, help="sampling steps for --samples")
    g.add_argument("--guidance", type=float, default=4.0, help="guidance scale for --samples")
    g.add_argument("--rank", type=int, default=64, help="eigenpairs kept; the rest becomes one residual variance")
    g.add_argument("--out", default=None, help="output path without suffix (default: <model>/diffskip_gaussian)")


def _pipeline(model: str):
    from diffusers import DiffusionPipeline

    path = EMBEDDED / model if (EMBEDDED / model / "model_index.json").exists() else Path(model)
    pipe = DiffusionPipeline.from_pretrained(str(path))
    pipe.set_progress_bar_config(disable=True)
    return pipe, path


def run(args: argparse.Namespace) -> None:
    """Fit, save `<out>.safetensors` + `<out>.json`, and print a summary."""
    pipe, path = _pipeline(args.model)
    meta = {"pipeline": path.name}
    if args.samples:
        from ..eval.fashion import pipeline_kwargs
        from ..zoo.data import eval_prompts

        prompts, _ = eval_prompts(-(-args.samples // 10))
        stats = fit_from_samples(pipe, prompts[: args.samples], args.rank, args.steps, meta=meta,
                                 guidance_scale=args.guidance, **pipeline_kwargs(pipe))
    else:
        if args.images:
            size = args.size or pipe.vae_scale_factor * _denoiser(pipe).config.sample_size
            images = load_image_folder(args.images, size)
            meta["dataset"] = str(args.images)
        else:
            from ..zoo.data import load_split

            images = load_split("train")[0][: args.fashion_mnist]
            meta["dataset"] = f"fashion-mnist train[:{args.fashion_mnist}]"
        stats = fit_from_images(pipe, images, args.rank, meta)
    out = Path(args.out) if args.out else path / "diffskip_gaussian"
    stats.save(out)
    explained = float(stats.eigvals.sum() / (stats.eigvals.sum() + stats.residual * (stats.mean.numel() - stats.rank)))
    print(f"fitted {stats.meta['n_samples']} latents {stats.shape} rank {stats.rank} (top eigenvalues "
          f"{[round(v, 3) for v in stats.eigvals[:3].tolist()]}, residual {stats.residual:.2e}, "
          f"{explained:.3f} of the variance in the kept directions) -> {out}.safetensors/.json")


def _denoiser(pipe):
    return getattr(pipe, "transformer", None) or pipe.unet
