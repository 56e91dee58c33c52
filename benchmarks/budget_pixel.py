"""The budget benchmark on the held-out pixel model (zoo/pixel.py), through the model-level API.

The model was never used to choose a default: final=1 and threshold:target=0.5 were frozen (commit 2a14370)
before its first evaluation. It samples with a user's own DDIM loop (50 steps, the full run) against a
200-step DDIM reference, like the hidden model of issue #12; `diffskip.tune(model, run, budget, 50)` picks
the plans on calibration seeds and validates on other seeds; rows are scored on 256 evaluation seeds.
Run: `python -m benchmarks.budget_pixel [--n 256]`.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler

import diffskip
from diffskip.metrics import feature_network
from diffskip.metrics.fidelity import mean_psnr
from zoo.data import to_uint8
from zoo.pixel import load_pixel

from .budget import DEFAULTS, cached, fd, real_features, resume

FULL, REFERENCE = 50, 200


def sampler(unet, scheduler, seed: int, batch: int):
    """A user's own loop: `run(num_steps)` -> images in [-1, 1] from seeded noise."""
    def run(num_steps: int) -> torch.Tensor:
        scheduler.set_timesteps(num_steps)
        x = torch.randn(batch, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for t in scheduler.timesteps:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample
        return x.clamp(-1, 1)
    return run


def render(unet, scheduler, policy: str, steps: int, seeds: range, batch: int = 128) -> tuple[torch.Tensor, float]:
    """uint8 (N, 3, 32, 32) images of `seeds` (one batch per `batch` seeds) and FLOPs relative to FULL steps."""
    out, flops = [], []
    for i in range(seeds.start, seeds.stop, batch):
        with diffskip.session(unet, policy, num_steps=steps) as s:
            x = sampler(unet, scheduler, i, min(batch, seeds.stop - i))(steps)
        out.append(to_uint8(x.repeat(1, 3, 1, 1)))
        flops.append(s.stats.relative_to(FULL))
    return torch.cat(out), sum(flops) / len(flops)


def run(n: int, out: Path, retune: bool = False) -> dict:
    torch.manual_seed(0)
    unet, ddim = load_pixel()
    dpm = DPMSolverMultistepScheduler.from_config(ddim.config, algorithm_type="dpmsolver++", solver_order=2)
    unet = diffskip.attach(unet)
    features = feature_network("classifier")
    ref_stats = real_features(features)
    t0 = time.time()
    seeds = range(0, n)
    res: dict = {"model": "fashion-pixel (held out)", "n": n, "full_steps": FULL, "reference_steps": REFERENCE,
                 "rows": {}, "tuned": {}}
    resume(res, out, retune)
    conv = cached(f"pixel-{n}-conv", lambda: render(unet, ddim, "never", REFERENCE, seeds)[0])
    base = cached(f"pixel-{n}-full", lambda: render(unet, ddim, "never", FULL, seeds)[0])
    other = cached(f"pixel-{n}-other", lambda: render(unet, ddim, "never", FULL, range(100_000, 100_000 + n))[0])
    res["fd_seed_spread"] = abs(fd(base, features, ref_stats) - fd(other, features, ref_stats))

    def score(label, images, flops):
        if label in res["rows"]:
            return
        res["rows"][label] = {"flops": round(flops, 4), "psnr_converged": mean_psnr(images, conv),
                              "psnr_full": mean_psnr(images, base), "fd": fd(images, features, ref_stats)}
        print(f"{label:58s} {json.dumps(res['rows'][label])}", flush=True)
        out.write_text(json.dumps(res, indent=2))

    score(f"reference {REFERENCE} DDIM steps", conv, REFERENCE / FULL)
    score(f"full {FULL} DDIM steps", base, 1.0)
    levels = {0.5, 0.35}
    for spec in DEFAULTS:
        if f"default {spec}" not in res["rows"]:
            imgs, flops = render(unet, ddim, spec, FULL, seeds)
            score(f"default {spec}", imgs, flops)
        levels.add(round(res["rows"][f"default {spec}"]["flops"], 3))
    for budget in (0.5, 0.35):
        if str(budget) in res["tuned"]:
            continue
        t = diffskip.tune(unet, sampler(unet, ddim, 10_000, 16), budget, FULL,
                          validate=sampler(unet, ddim, 20_000, 16))
        res["tuned"][str(budget)] = t.to_dict()
        print(f"tuned {budget}: {t}", flush=True)
        imgs, flops = render(unet, ddim, t.policy, t.num_steps, seeds)
        score(f"tuned plan @{budget}: {t.num_steps} steps {t.policy}", imgs, flops)
    # at or under, at or over
    for level, steps in sorted({(lv, s) for lv in levels for s in
                                 (max(1, int(lv * FULL + 1e-9)), math.ceil(lv * FULL - 1e-9))}):
        for name, sched in (("ddim", ddim), ("dpm++", dpm)):
            label = f"fewer steps: {steps} [{name}]"
            if label not in res["rows"]:
                imgs, flops = render(unet, sched, "never", steps, seeds)
                score(label, imgs, flops)
    res["wall_s"] = round(time.time() - t0, 1)
    out.write_text(json.dumps(res, indent=2))
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--out", default="docs/budget_fashion-pixel.json")
    p.add_argument("--retune", action="store_true", help="tune the plans again, keeping the other rows")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    run(a.n, Path(a.out), a.retune)


if __name__ == "__main__":
    main()
