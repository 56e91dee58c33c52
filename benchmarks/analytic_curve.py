"""Measure analytic step skipping on the embedded Fashion-MNIST pipelines: Frechet distance, CLIP score, PSNR."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from diffskip.analytic import GaussianSkip, GaussianStats
from diffskip.analytic.fit import BRANCHES, calibrate
from diffskip.metrics.classifier import ClassifierFeatures
from .fashion import clip_score, load_pipeline, pipeline_kwargs, real_reference
from diffskip.metrics.fid import make_fid
from diffskip.metrics.fidelity import psnr
from diffskip.pipeline import DiffSkipPipeline
from zoo.data import eval_prompts, to_uint8

__all__ = ["CurveConfig", "SCHEDULERS", "generate_skipped", "inception_fid", "prompt_accuracy", "run_calibration",
           "run_curve"]
log = logging.getLogger(__name__)
SCHEDULERS = {"ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler", "euler": "EulerDiscreteScheduler",
              "unipc": "UniPCMultistepScheduler"}


@dataclass
class CurveConfig:
    """One measured curve: a pipeline folder, a scheduler, a step count and the jump points (steps skipped)."""

    pipeline: str
    scheduler: str
    steps: int
    skips: tuple[int, ...]
    n_images: int = 200
    guidance: float = 4.0
    spread_seeds: tuple[int, ...] = (1,)  # extra seed sets of the full run: the metric's run-to-run spread

    @property
    def key(self) -> str:
        return f"{Path(self.pipeline).name}/{self.scheduler}-{self.steps}"


def _with_scheduler(pipe: Any, name: str) -> Any:
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler {name!r} unknown; allowed: {sorted(SCHEDULERS)}.")
    # DDIM's defaults clip x0 to [-1, 1] (pixel-space); latents are not bounded, so clipping stays off as in SD
    extra = {"clip_sample": False, "set_alpha_to_one": False} if name == "ddim" else {}
    pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(pipe.scheduler.config, **extra)
    return pipe


@torch.no_grad()
def generate_skipped(pipe: Any, stats: GaussianStats, prompts: list[str], steps: int, skip: int,
                     guidance: float, seed: int, batch_size: int = 100) -> torch.Tensor:
    """Generate uint8 images (N, 3, H, W) with `skip` leading steps jumped; one seeded generator per batch."""
    fast = DiffSkipPipeline(pipe, skip=GaussianSkip(stats, skip), count_flops=False)
    out = []
    try:
        for i in range(0, len(prompts), batch_size):
            gen = torch.Generator().manual_seed(seed * 100_000 + i)
            res = fast(prompts[i:i + batch_size], num_inference_steps=steps, guidance_scale=guidance,
                       generator=gen, output_type="pt", **pipeline_kwargs(pipe))
            out.append(to_uint8(res.images * 2 - 1))
    finally:
        fast.detach()
    return torch.cat(out)


def _points(cfg: CurveConfig) -> Iterator[tuple[str, int, int]]:
    """Yield (name, skip, seed): the full run first (the PSNR reference), then jumps, then spread seeds."""
    yield "full", 0, 0
    for k in cfg.skips:
        if k:
            yield f"skip{k}", k, 0
    for s in cfg.spread_seeds:
        yield f"full_seed{s}", 0, s


def run_curve(cfg: CurveConfig, root: Path, out_json: Path, image_dir: Path = Path("out/analytic_images")) -> dict:
    """Measure every point of a curve, appending each finished point to `out_json` (resumable).

    Each point's uint8 images are kept in `image_dir` (the full run's are the PSNR reference on resume).
    """
    image_dir.mkdir(parents=True, exist_ok=True)
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    done = results.setdefault(cfg.key, {})
    pipe = _with_scheduler(load_pipeline(root / Path(cfg.pipeline).name), cfg.scheduler)
    stats = GaussianStats.load(root / Path(cfg.pipeline).name)
    fd = make_fid(ClassifierFeatures(root / "fashion-classifier"))
    fd.reset_real_features = False
    real, _, _ = real_reference(cfg.n_images)
    fd.update(real, real=True)
    prompts, _ = eval_prompts(cfg.n_images // 10, seed=0)
    cache = image_dir / f"{cfg.key.replace('/', '_')}_full.pt"  # PSNR reference across resumes
    reference = torch.load(cache) if cache.exists() else None
    for name, k, seed in _points(cfg):
        if name in done and (name != "full" or reference is not None):
            continue
        images = generate_skipped(pipe, stats, prompts, cfg.steps, k, cfg.guidance, seed)
        torch.save(images, image_dir / f"{cfg.key.replace('/', '_')}_{name}.pt")  # for other metrics later
        if name == "full":
            reference = images
        fd.reset()
        fd.update(images, real=False)
        done[name] = {"skip": k, "seed": seed, "steps": cfg.steps, "model_evals": cfg.steps - k,
                      "saved_fraction": k / cfg.steps, "fd_classifier": fd.compute().item(),
                      "clip_score": clip_score(images, prompts, root / "fashion-clip"),
                      "psnr_vs_full": float(np.mean([psnr(a.numpy(), b.numpy()) for a, b in zip(images, reference)]))
                      if seed == 0 and k else None, "n_images": len(images)}
        log.info("%s %s: %s", cfg.key, name, done[name])
        out_json.write_text(json.dumps(results, indent=1))
    return done


def run_calibration(cfg: CurveConfig, root: Path, out_json: Path, per_class: int = 2) -> dict:
    """Record the explained variance per step (guided, uncond, cond branches) and the trajectory diagnostic."""
    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    pipe = _with_scheduler(load_pipeline(root / Path(cfg.pipeline).name), cfg.scheduler)
    stats = GaussianStats.load(root / Path(cfg.pipeline).name)
    prompts, _ = eval_prompts(per_class, seed=1)  # other prompts than the curve's
    entry = {"n_prompts": len(prompts), "guidance": cfg.guidance}
    for branch in BRANCHES:
        cal = calibrate(pipe, stats, prompts, cfg.steps, cfg.guidance, branch=branch, **pipeline_kwargs(pipe))
        entry["timesteps"], entry["trajectory_ev"] = cal.timesteps, cal.trajectory_ev
        entry[f"ev_{branch}"] = cal.explained_variance
    results[cfg.key] = entry
    out_json.write_text(json.dumps(results, indent=1))
    return entry


def inception_fid(image_files: list[Path], n_real: int, out_json: Path) -> dict:
    """Inception FID of saved image sets (uint8 .pt from run_curve) against n_real Fashion-MNIST test images."""
    from diffskip.metrics.fid import InceptionFeatures

    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    fid = make_fid(InceptionFeatures())
    fid.reset_real_features = False
    real, _, _ = real_reference(n_real)
    for chunk in real.split(50):
        fid.update(chunk, real=True)
    for f in image_files:
        if f.stem in results:
            continue
        fid.reset()
        images = torch.load(f)
        for chunk in images.split(50):
            fid.update(chunk, real=False)
        results[f.stem] = {"fid_inception": fid.compute().item(), "n_images": len(images), "n_real": n_real}
        log.info("%s: %s", f.stem, results[f.stem])
        out_json.write_text(json.dumps(results, indent=1))
    return results


def prompt_accuracy(image_files: list[Path], root: Path, out_json: Path) -> dict:
    """Classifier prompt-following accuracy of saved image sets (class-major `eval_prompts` order)."""
    from diffskip.metrics.classifier import FashionClassifier
    from .fashion import class_accuracy

    results = json.loads(out_json.read_text()) if out_json.exists() else {}
    classifier = FashionClassifier.from_pretrained(root / "fashion-classifier")
    for f in image_files:
        images = torch.load(f)
        _, labels = eval_prompts(len(images) // 10, seed=0)
        results[f.stem] = {"prompt_accuracy": class_accuracy(classifier, images, labels)["accuracy"],
                           "n_images": len(images)}
    out_json.write_text(json.dumps(results, indent=1))
    return results
