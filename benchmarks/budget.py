"""Compute-budget benchmark (issue #12): defaults, fewer steps and tuned plans at budgets 0.5 and 0.35.

Per model: PSNR to a converged reference (50 steps for the embedded pipelines, 200 DDIM steps for the held-out
pixel model) and to the full-step run, executed denoiser FLOPs relative to the full-step run, and the
Frechet distance in the fashion classifier's features to 1000 real test images with its seed spread (|FD| of
the full-step run under two seed sets). Plans are tuned on calibration prompts/seeds and scored here on the
evaluation set, which the tuner never sees. Run: `python -m benchmarks.budget fashion-sd [--n 100]`.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

import diffskip
from diffskip.metrics import feature_network
from diffskip.metrics.fidelity import mean_psnr
from diffskip.metrics.reference import fid_against, reference_stats
from diffskip.plan_files import use_scheduler
from zoo.data import eval_prompts, load_split, to_uint8

FULL = {"fashion-sd": 20, "fashion-pixart": 20}
CONVERGED = 50
CALIBRATION = ["a photo of a t-shirt", "a pair of trousers, product shot", "a pullover on white", "a dress",
               "a photo of a coat", "a sandal for sale", "a sneaker", "a bag, catalog photo"]
HELDOUT = ["a studio photo of a shirt", "an ankle boot, centered", "a black and white image of a coat",
           "a clothing photo of a dress"]
DEFAULTS = ["interval", "uniform", "threshold", "interval:every=3,forecast=0"]
FINAL_SWEEP = ["interval:every=3,forecast=0,final=0", "interval:every=3,forecast=0,final=2",
               "interval:every=3,forecast=0,final=3"]


def plan_label(res) -> str:
    """'12 steps interval:every=2,forecast=1 +jump 2 [dpm++]'."""
    sched = f" [{res.scheduler}]" if res.scheduler else ""
    jump = f" +jump {res.skip}" if res.skip else ""
    return f"{res.num_steps} steps {res.policy}{jump}{sched}"


def cached(key: str, make) -> torch.Tensor:
    """Images kept under runs/bench/ between runs of the benchmark (the references cost the most)."""
    path = Path("runs/bench") / f"{key}.pt"
    if path.exists():
        return torch.load(path)
    images = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(images, path)
    return images


def resume(results: dict, out: Path, retune: bool) -> None:
    """Keep the measured rows and plans of an earlier run in `out`; with `retune`, drop the tuned plans and
    their rows so the tuner runs again (the other rows are kept)."""
    if not out.exists():
        return
    old = json.loads(out.read_text())
    results["rows"], results["tuned"] = old["rows"], old.get("tuned", {})
    if retune:
        results["tuned"] = {}
        results["rows"] = {k: v for k, v in results["rows"].items() if not k.startswith("tuned plan @")}


def real_features(features, n: int = 1000) -> dict:
    """Reference statistics of n real Fashion-MNIST test images (n/10 per class)."""
    images, labels = load_split("test")
    idx = torch.cat([(labels == c).nonzero().flatten()[: n // 10] for c in range(10)])
    return reference_stats(features, images[idx], Path.home() / ".cache" / "diffskip", f"fashion-test-{n}")


def fd(images: torch.Tensor, features, ref: dict) -> float:
    """Frechet distance of uint8 images (N, 3, 32, 32) to the reference statistics."""
    metric = fid_against(features, ref)
    for chunk in images.split(100):
        metric.update(chunk, real=False)
    return float(metric.compute())


def render(fast, full: int, prompts: list[str], seed: int, policy: str, steps: int, scheduler: str | None = None,
           skip: int = 0, batch: int = 25, conditional: bool = False) -> tuple[torch.Tensor, float]:
    """uint8 images of `prompts` (per-prompt seeds) under one plan, and its FLOPs relative to the full run."""
    base = fast.pipe.scheduler
    use_scheduler(fast.pipe, scheduler)
    fast.policy = policy
    fast.skip = diffskip.GaussianSkip(fast.gaussian_stats(), skip, conditional) if skip else None
    out, flops, calls = [], 0.0, 0
    try:
        for i in range(0, len(prompts), batch):
            gens = [torch.Generator().manual_seed(seed + i + j) for j in range(len(prompts[i:i + batch]))]
            res = fast(prompts[i:i + batch], num_inference_steps=steps, generator=gens, output_type="pt")
            out.append(to_uint8(res.images * 2 - 1))
            flops += fast.last_stats.relative_to(full) * len(gens)
            calls += len(gens)
    finally:
        fast.pipe.scheduler, fast.policy, fast.skip = base, "never", None
    return torch.cat(out), flops / calls


def run(name: str, n: int, out: Path, retune: bool = False) -> dict:
    torch.manual_seed(0)
    fast = diffskip.DiffSkipPipeline.from_pretrained(name)
    fast.set_progress_bar_config(disable=True)
    full = FULL[name]
    prompts = eval_prompts(max(1, n // 10))[0]
    features = feature_network("classifier")
    ref_stats = real_features(features)
    t0 = time.time()
    results: dict = {"model": name, "n": len(prompts), "full_steps": full, "rows": {}, "tuned": {}}
    resume(results, out, retune)
    conv = cached(f"{name}-{len(prompts)}-conv", lambda: render(fast, full, prompts, 0, "never", CONVERGED)[0])
    base = cached(f"{name}-{len(prompts)}-full", lambda: render(fast, full, prompts, 0, "never", full)[0])
    other = cached(f"{name}-{len(prompts)}-other", lambda: render(fast, full, prompts, 50_000, "never", full)[0])
    spread = abs(fd(base, features, ref_stats) - fd(other, features, ref_stats))
    results["fd_seed_spread"] = spread

    def score(label, images, flops, **extra):
        if label in results["rows"]:
            return
        results["rows"][label] = {"flops": round(flops, 4), "psnr_converged": mean_psnr(images, conv),
                                  "psnr_full": mean_psnr(images, base), "fd": fd(images, features, ref_stats),
                                  **extra}
        print(f"{label:58s} {json.dumps(results['rows'][label])}", flush=True)
        out.write_text(json.dumps(results, indent=2))

    score(f"converged {CONVERGED} steps", conv, CONVERGED / full)
    score(f"full {full} steps", base, 1.0)
    for budget in (0.5, 0.35):
        if str(budget) in results["tuned"]:
            continue
        res = fast.tune(CALIBRATION, budget=budget, num_inference_steps=full, heldout=HELDOUT)
        results["tuned"][str(budget)] = res.to_dict()
        print(f"tuned {budget}: {res}", flush=True)
        imgs, flops = render(fast, full, prompts, 0, res.policy, res.num_steps, res.scheduler, res.skip)
        score(f"tuned plan @{budget}: {plan_label(res)}", imgs, flops)
    levels = {0.5, 0.35}
    for spec in DEFAULTS + FINAL_SWEEP:
        if f"default {spec}" not in results["rows"]:
            imgs, flops = render(fast, full, prompts, 0, spec, full)
            score(f"default {spec}", imgs, flops)
        flops = results["rows"][f"default {spec}"]["flops"]
        if spec in DEFAULTS:
            levels.add(round(flops, 3))
    # at or under, at or over
    for level, steps in sorted({(lv, s) for lv in levels for s in
                                 (max(1, int(lv * full + 1e-9)), math.ceil(lv * full - 1e-9))}):
        for sched in ("own", "dpm++"):
            label = f"fewer steps: {steps} [{sched}]"
            if label not in results["rows"]:
                imgs, flops = render(fast, full, prompts, 0, "never", steps, sched)
                score(label, imgs, flops)
    results["wall_s"] = round(time.time() - t0, 1)
    out.write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(FULL))
    p.add_argument("--n", type=int, default=100, help="evaluation images (prompts x 1 seed each)")
    p.add_argument("--out", default=None)
    p.add_argument("--retune", action="store_true", help="tune the plans again, keeping the other rows")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    run(a.model, a.n, Path(a.out or f"docs/budget_{a.model}.json"), a.retune)


if __name__ == "__main__":
    main()
