"""Measure hook overhead: denoiser speed-up x executed-FLOPs fraction, timed round-robin (1.0 = time tracks FLOPs).

    python -m benchmarks.overhead --pipeline fashion-pixart --steps 20 --batch 8 --repeats 7 \
        --methods diffskip/interval:every=3 diffskip/interval:every=3,forecast=1 --out docs/overhead.md

Run it on a quiet machine: the bench's own timing pass shares the cores with whatever else runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.bench import BenchConfig, time_interleaved
from benchmarks.bench_report import derive
from diffskip.metrics.compute import DenoiserMeter
from benchmarks.fashion import load_pipeline, pipeline_kwargs
from benchmarks.peers import apply_method, denoiser
from benchmarks.suite import prompts_for
from diffskip.assets import path as asset_path


def executed_flops(path: Path, method: str, cfg: BenchConfig, prompts: list[str]) -> float:
    """Return the executed denoiser FLOPs of one timing-batch call with `method`."""
    pipe = load_pipeline(path)
    meter = DenoiserMeter(denoiser(pipe), count_flops=True)
    apply_method(pipe, method, cfg.steps)(prompts[:cfg.timing_batch], num_inference_steps=cfg.steps,
                                          guidance_scale=cfg.guidance, generator=torch.Generator().manual_seed(0),
                                          output_type="latent", **cfg.call_kwargs)
    meter.close()
    return meter.flops


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default="fashion-pixart", choices=["fashion-pixart", "fashion-sd"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--methods", nargs="+", required=True, help="method specs as in `python -m benchmarks --methods`")
    p.add_argument("--out", default=None, help="also write the markdown table here")
    args = p.parse_args()
    torch.set_num_threads(1)
    path = asset_path(args.pipeline)
    methods = ["none", *args.methods]
    cfg = BenchConfig(pipeline=args.pipeline, steps=args.steps, methods=methods, n=args.batch,
                      timing_batch=args.batch, repeats=args.repeats, call_kwargs=pipeline_kwargs(load_pipeline(path)))
    prompts = prompts_for(args.batch)
    flops = {m: executed_flops(path, m, cfg, prompts) for m in methods}
    times = time_interleaved(lambda: load_pipeline(path), methods, prompts, cfg)
    rows = derive({m: {"flops_first_batch": flops[m], **times[m]} for m in methods})
    lines = [f"{args.pipeline}, {args.steps} steps, batch {args.batch}, {args.repeats} round-robin repeats, "
             "1 thread", "",
             "| method | FLOPs frac | denoiser s | denoiser speed-up | overhead ratio |", "|---|---|---|---|---|"]
    lines += [f"| {m} | {r['flops_fraction']:.3f} | {r['denoiser_seconds']:.3f} | {r['denoiser_speedup']:.2f}x | "
              f"{r['overhead_ratio']:.2f} |" for m, r in rows.items()]
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
