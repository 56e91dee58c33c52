"""Evaluate the embedded Fashion-MNIST pipelines: prompt following, FID and CLIP score."""
from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import torch

from zoo.data import CLASS_NAMES, captions_for, eval_prompts, load_split, to_uint8
from diffskip.metrics.classifier import FashionClassifier, predict
from diffskip.metrics.clipscore import make_clip_score
from diffskip.metrics.fid import make_fid

log = logging.getLogger(__name__)
SETTINGS = {"fashion-sd": {"num_inference_steps": 25, "guidance_scale": 4.0},
            "fashion-pixart": {"num_inference_steps": 20, "guidance_scale": 4.0}}


def load_pipeline(path: Path | str):
    """Load an embedded pipeline (by name) or a pipeline folder with its stock diffusers class."""
    from diffusers import DiffusionPipeline

    from diffskip.loading import resolve_model
    pipe = DiffusionPipeline.from_pretrained(resolve_model(str(path)))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_kwargs(pipe) -> dict:
    """Return the call options the pipeline's folder asks for (its diffskip_call.json; PixArt at 32x32)."""
    from diffskip.loading import read_call_defaults

    return read_call_defaults(pipe.name_or_path)


@torch.no_grad()
def generate(pipe, prompts: list[str], steps: int, guidance: float, seed: int = 0,
             batch_size: int = 100) -> torch.Tensor:
    """Generate uint8 images (N, 3, 32, 32), one seeded generator per batch."""
    out = []
    for i in range(0, len(prompts), batch_size):
        gen = torch.Generator().manual_seed(seed + i)
        res = pipe(prompts[i:i + batch_size], num_inference_steps=steps, guidance_scale=guidance,
                   generator=gen, output_type="pt", **pipeline_kwargs(pipe))
        out.append(to_uint8(res.images * 2 - 1))
    return torch.cat(out)


def class_accuracy(classifier, images: torch.Tensor, labels: list[int]) -> dict:
    """Return overall and per-class prompt-following accuracy."""
    pred = predict(classifier, images)
    y = torch.tensor(labels)
    per = {CLASS_NAMES[c]: (pred[y == c] == c).float().mean().item() for c in range(10)}
    return {"accuracy": (pred == y).float().mean().item(), "per_class": per}


def clip_score(images: torch.Tensor, texts: list[str], clip_dir: Path) -> float:
    """Return the torchmetrics CLIP score of images against texts."""
    metric = make_clip_score(clip_dir)
    for i in range(0, len(texts), 250):
        metric.update(list(images[i:i + 250]), texts[i:i + 250])
    return metric.compute().item()


def real_reference(n: int, seed: int = 0) -> tuple[torch.Tensor, list[int], list[str]]:
    """Return n test images (n/10 per class), their labels and true held-out captions."""
    images, labels = load_split("test")
    rng = random.Random(seed)
    idx = [i for c in range(10) for i in (labels == c).nonzero().flatten()[: n // 10].tolist()]
    caps = [rng.choice(captions_for(int(labels[i]), held_out=True)) for i in idx]
    return images[idx], labels[idx].tolist(), caps


def evaluate(root: Path, names: list[str], n_fid: int = 2000, n_acc: int = 1000,
             seed: int = 0) -> dict:
    """Evaluate each pipeline folder under root and the real-data references."""
    classifier = FashionClassifier.from_pretrained(root / "fashion-classifier")
    clip_dir = root / "fashion-clip"
    real, real_y, real_caps = real_reference(n_fid, seed)
    shuffled = real_caps[:]
    random.Random(seed + 1).shuffle(shuffled)
    fid = make_fid()
    fid.reset_real_features = False
    for chunk in real.split(100):
        fid.update(chunk, real=True)
    test_x, test_y = load_split("test")
    results = {"real": {"classifier_test_accuracy": (predict(classifier, test_x) == test_y)
                        .float().mean().item(),
                        "clip_true": clip_score(real, real_caps, clip_dir),
                        "clip_shuffled": clip_score(real, shuffled, clip_dir)}}
    log.info("real: %s", results["real"])
    for name in names:
        results[name] = evaluate_one(root / name, classifier, fid, clip_dir, n_fid, n_acc, seed)
        log.info("%s: %s", name, {k: v for k, v in results[name].items()
                                  if k not in ("per_class", "images")})
    return results


def evaluate_one(path: Path, classifier, fid, clip_dir: Path, n_fid: int, n_acc: int,
                 seed: int) -> dict:
    """Generate n_fid images from held-out prompts and measure them."""
    pipe = load_pipeline(path)
    cfg = SETTINGS.get(path.name, {"num_inference_steps": 20, "guidance_scale": 4.0})
    prompts, labels = eval_prompts(n_fid // 10, seed)
    start = time.time()
    images = generate(pipe, prompts, cfg["num_inference_steps"], cfg["guidance_scale"], seed)
    gen_s = time.time() - start
    # prompt following on the first n_acc/10 generations of each class
    keep = [i for c in range(10) for i in range(c * n_fid // 10, c * n_fid // 10 + n_acc // 10)]
    acc = class_accuracy(classifier, images[keep], [labels[i] for i in keep])
    fid.reset()
    for chunk in images.split(100):
        fid.update(chunk, real=False)
    return {**cfg, "n_generated": len(images), "generation_s": round(gen_s, 1),
            "prompt_accuracy": acc["accuracy"], "per_class": acc["per_class"],
            "prompt_accuracy_all": class_accuracy(classifier, images, labels)["accuracy"],
            "fid": fid.compute().item(), "clip_generated": clip_score(images, prompts, clip_dir),
            "images": images}
