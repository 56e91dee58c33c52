"""Benchmark runner: each method on the same pipeline, prompts and seeds; resumable, one JSON of raw numbers."""
from __future__ import annotations

import json
import logging
import re
import statistics
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from diffskip.metrics.clipscore import make_clip_score
from diffskip.metrics.compute import DenoiserMeter, time_calls
from diffskip.metrics.fidelity import latent_mad, mean_psnr, ssim
from .converged import add_converged, reference_images
from .peers import apply_method, denoiser, parse_method
from diffskip.metrics.reference import fid_against

log = logging.getLogger(__name__)
SPREAD_SEED = 10_000  # "none/seeds=k" draws from seed + k * SPREAD_SEED: the FD run-to-run spread


@dataclass
class BenchConfig:
    """One benchmark grid cell: a pipeline at a step count, every method on the same prompts and seeds."""

    pipeline: str
    steps: int
    methods: list[str]
    n: int = 200
    batch: int = 50
    guidance: float = 4.0
    seed: int = 0
    timing_batch: int = 8
    repeats: int = 5
    call_kwargs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for m in self.methods:
            parse_method(m)  # raises on unknown families/keys before hours of work start
        if self.methods[:1] != ["none"]:
            raise ValueError(f"methods must start with 'none' (the baseline every ratio refers to), got {self.methods}")
        if self.n < self.timing_batch or self.batch < 1 or self.repeats < 1:
            raise ValueError(f"need n >= timing_batch, batch >= 1, repeats >= 1; got n={self.n}, "
                             f"timing_batch={self.timing_batch}, batch={self.batch}, repeats={self.repeats}")


def slug(text: str) -> str:
    """Return a file-name-safe version of a method spec."""
    return re.sub(r"[^A-Za-z0-9=.,_-]+", "_", text)


def decode(pipe: Any, latents: torch.Tensor) -> torch.Tensor:
    """Decode final latents the way SD/PixArt pipelines do; return uint8 images (N, 3, H, W)."""
    vae = pipe.vae
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    with torch.no_grad():
        x = vae.decode(latents / vae.config.scaling_factor + shift, return_dict=False)[0]
    images = pipe.image_processor.postprocess(x, output_type="pt")
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def _generate(run: Callable, pipe: Any, prompts: list[str], cfg: BenchConfig, seed: int,
              meter: DenoiserMeter | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, latents = [], []
    for i in range(0, len(prompts), cfg.batch):
        if meter is not None:
            meter.count_flops = i == 0  # FLOPs on the first batch only: the counter roughly doubles the run time
        gen = torch.Generator().manual_seed(seed + i)
        res = run(prompts[i:i + cfg.batch], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                  generator=gen, output_type="latent", **cfg.call_kwargs)
        latents.append(res.images.float())
        images.append(decode(pipe, res.images))
    return torch.cat(images), torch.cat(latents)


def _timing_call(run: Callable, prompts: list[str], cfg: BenchConfig, g: torch.Generator) -> Callable[[], Any]:
    """Return the batch call every timing measures: the first `timing_batch` prompts, seeded by `g`."""
    return partial(run, prompts[:cfg.timing_batch], num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                   generator=g, output_type="pt", **cfg.call_kwargs)


def _timed(run: Callable, meter: DenoiserMeter, prompts: list[str], cfg: BenchConfig) -> dict:
    return time_calls(_timing_call(run, prompts, cfg, torch.Generator().manual_seed(cfg.seed)), meter, cfg.repeats)


def measure_method(load: Callable[[], Any], method: str, prompts: list[str], cfg: BenchConfig) -> dict:
    """Generate `prompts` with `method` on a fresh pipeline: images, latents, executed FLOPs, timed median calls."""
    pipe = load()
    run = apply_method(pipe, method, cfg.steps)
    meter = DenoiserMeter(denoiser(pipe), count_flops=True)
    family, settings = parse_method(method)
    seed = cfg.seed + SPREAD_SEED * int(settings.get("seeds", 0)) if family == "none" else cfg.seed
    t0 = time.perf_counter()
    images, latents = _generate(run, pipe, prompts, cfg, seed, meter)
    out = {"images": images, "latents": latents, "generation_s": round(time.perf_counter() - t0, 2),
           "flops_first_batch": meter.flops, "denoiser_calls": meter.calls, **_timed(run, meter, prompts, cfg)}
    meter.close()
    return out


def score(images: torch.Tensor, base: torch.Tensor, prompts: list[str], features: nn.Module, ref: dict,
          clip: Any) -> dict:
    """Return FD to the reference, CLIP score, and PSNR/SSIM to the baseline images."""
    fid = fid_against(features, ref)
    for chunk in images.split(100):
        fid.update(chunk, real=False)
    clip.reset()
    for i in range(0, len(prompts), 100):
        clip.update(list(images[i:i + 100]), prompts[i:i + 100])
    return {"fd": fid.compute().item(), "clip": clip.compute().item(),
            "psnr": mean_psnr(images, base), "ssim": ssim(images, base)}


def run_bench(cfg: BenchConfig, load: Callable[[], Any], prompts: list[str], features: nn.Module, ref: dict,
              out_dir: str | Path, clip_path: str | Path | None = None, force: bool = False,
              retime: bool = False) -> dict:
    """Run every method of `cfg`, resuming from `out_dir/results.json`; return the results dict.

    Each finished method is written at once (images under out_dir/images/), so a killed run loses at most the
    method in progress. A method that fails (a peer refusing the model) is recorded with its error. Then every
    method is scored against the converged run (`converged.reference_steps`), generated once per cell.
    """
    if len(prompts) < cfg.n:
        raise ValueError(f"{len(prompts)} prompts for n={cfg.n} images; give at least n prompts")
    prompts = prompts[:cfg.n]
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.exists() and not force else {}
    same = {"methods": [], "repeats": 0}  # methods may be added and timing re-measured (--retime) later
    if results.get("config", asdict(cfg)) | same != asdict(cfg) | same:
        raise ValueError(f"{path} was made with a different configuration {results['config']}; "
                         "use another output folder or force=True (--force) to start over")
    results["config"] = asdict(cfg)
    points = results.setdefault("points", {})
    clip = make_clip_score(clip_path) if clip_path else make_clip_score()
    base = base_latents = None
    for method in cfg.methods:
        img_file = out / "images" / f"{slug(method)}.pt"
        if method in points and (img_file.exists() or "error" in points[method]):
            if method == "none":
                saved = torch.load(img_file)
                base, base_latents = saved["images"], saved.get("latents")
            continue
        log.info("%s %d steps: %s", cfg.pipeline, cfg.steps, method)
        try:
            m = measure_method(load, method, prompts, cfg)
        except Exception as exc:  # a peer refusing a model is a result, recorded with its message
            points[method] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
            log.warning("%s failed: %s", method, points[method]["error"])
            path.write_text(json.dumps(results, indent=1))
            continue
        images, latents = m.pop("images"), m.pop("latents")
        torch.save({"images": images, "latents": latents}, img_file)
        if method == "none":
            base, base_latents = images, latents
        points[method] = {**m, **score(images, base, prompts, features, ref, clip)}
        if base_latents is not None:
            points[method]["latent_mad"] = latent_mad(latents, base_latents)
        path.write_text(json.dumps(results, indent=1))
    ref = reference_images(load, prompts, cfg, out, _generate)
    if add_converged(points, out / "images", ref, features, slug):
        path.write_text(json.dumps(results, indent=1))
    if retime:
        done = [m for m in cfg.methods if m in points and "error" not in points[m]]
        for m, timing in time_interleaved(load, done, prompts, cfg).items():
            points[m].update(timing)
        path.write_text(json.dumps(results, indent=1))
    return results


def time_interleaved(load: Callable[[], Any], methods: list[str], prompts: list[str], cfg: BenchConfig) -> dict:
    """Time every method's batch call round-robin (a warm-up, then `cfg.repeats` rounds); return the medians.

    Interleaving makes slow drifts of a shared machine's load hit every method alike.
    """
    runs = {}
    for m in methods:
        pipe = load()
        g = torch.Generator()
        call = _timing_call(apply_method(pipe, m, cfg.steps), prompts, cfg, g)
        runs[m] = (call, g, DenoiserMeter(denoiser(pipe)), [], [])
        call()
    for _ in range(cfg.repeats):
        for call, g, meter, total, den in runs.values():
            g.manual_seed(cfg.seed)
            meter.reset()
            t0 = time.perf_counter()
            call()
            total.append(time.perf_counter() - t0)
            den.append(meter.seconds)
    return {m: {"seconds": statistics.median(t), "denoiser_seconds": statistics.median(d), "repeats": cfg.repeats,
                "threads": torch.get_num_threads(), "timing": "interleaved"} for m, (_, _, _, t, d) in runs.items()}
