"""Is the CLI's default policy at N steps never worse than fewer plain steps at the same FLOPs? (issue #23 item 4)

For each embedded model: a converged reference (100 plain steps), plain runs at every step count 1..50, and each
candidate policy at N steps. A candidate's FLOPs fraction f buys floor(f * N) plain steps; "fewer steps" is the
best plain run within that many steps. PSNR (dB, mean over the 10 default prompts, seed 0, guidance 4) to the
reference. Writes docs/defaults.json; prints one line per (model, N, policy).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from statistics import fmean

import torch

from diffskip import DiffSkipPipeline
from diffskip.metrics.fidelity import psnr

PROMPTS = ["a photo of a t-shirt", "a pair of trousers, product shot", "a pullover on white", "a dress, studio photo",
           "a photo of a coat", "a sandal, catalogue image", "a shirt, product shot", "a photo of a sneaker",
           "a bag on white", "an ankle boot, studio photo"]
STEPS = [2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 20, 25, 30, 40, 50]
CANDIDATES = ["interval:every=2", "interval:every=3"]


def render(pipe, steps: int):
    """Return the images and the FLOPs fraction of one run over the prompts."""
    out = pipe(PROMPTS, num_inference_steps=steps, guidance_scale=4.0, generator=torch.Generator().manual_seed(0))
    return out.images, pipe.last_stats.flops_fraction


def score(images, ref) -> float:
    """Return the mean PSNR to the reference (identical pairs capped at 100 dB)."""
    return fmean(min(psnr(a, b), 100.0) for a, b in zip(images, ref))


def measure(model: str, max_plain: int) -> list[dict]:
    """Return one record per (N, policy) on `model`."""
    pipe = DiffSkipPipeline.from_pretrained(model, "never")
    pipe.set_progress_bar_config(disable=True)
    ref, _ = render(pipe, 100)
    plain = {}
    for k in range(1, max_plain + 1):
        try:
            plain[k] = score(render(pipe, k)[0], ref)
        except IndexError:  # PixArt's pipeline fails at some step counts of its scheduler: not a candidate
            plain[k] = -math.inf
    rows = []
    for n in STEPS:
        for spec in CANDIDATES:
            pipe.policy = spec
            try:
                images, f = render(pipe, n)
            except (ValueError, IndexError) as exc:  # a policy that refuses this step count
                rows.append({"model": model, "steps": n, "policy": spec, "error": str(exc)[:120]})
                continue
            budget = math.floor(f * n + 1e-9)
            best = max(range(1, max(budget, 1) + 1), key=lambda k: plain[k])
            rows.append({"model": model, "steps": n, "policy": spec, "flops": round(f, 4),
                         "psnr": round(score(images, ref), 2),
                         "plain_n": round(plain[n], 2), "fewer_steps": best, "fewer_psnr": round(plain[best], 2)})
            print(json.dumps(rows[-1]), flush=True)
        pipe.policy = "never"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="fashion-sd,fashion-pixart")
    parser.add_argument("--out", type=Path, default=Path("docs/defaults.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [r for m in args.models.split(",") for r in measure(m, max(STEPS))]
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
