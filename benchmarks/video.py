"""Video: caching on a small Wan-style text-to-video pipeline, and the engine's overhead at Wan 2.1 1.3B width.

    OMP_NUM_THREADS=2 python -m benchmarks.video quality      # docs/bench_video.md, quality table
    OMP_NUM_THREADS=2 python -m benchmarks.video overhead     # docs/bench_video.md, overhead row

quality: random weights (no trained video model ships here), 33 frames at 64x64, 20 and 50 flow-matching
Euler steps, PSNR of the decoded frames to the full run from the same noise, on 3 prompts; each policy beside
plain fewer steps at the same executed FLOPs, and a plan tuned (`pipe.tune`) on 2 other prompts.
overhead: the Wan 2.1 1.3B transformer config (dim 1536, 30 blocks, random weights, float32) on a 5-frame
128x128 latent, 9 steps: wall-clock speed-up of `interval:every=3` over plain (A/B interleaved after a warm-up,
medians of 3) divided by its FLOP speed-up.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import diffskip
from diffskip.metrics.fidelity import psnr

POLICIES = ("interval:every=2", "interval:every=3", "uniform:speedup=2", "threshold:target=0.5")
PROMPTS = ["a red car driving on a road", "waves breaking on a beach", "a cat walking in the snow"]
INTRO = ("Quality: a small Wan text-to-video pipeline with random weights (no trained video model ships here, and "
         "random weights lack a trained model's step-to-step redundancy), 33 frames at 64x64, flow-matching Euler; "
         "PSNR of the decoded frames to the full run from the same noise, mean of 3 prompts. Each row is followed by "
         "plain fewer steps at the nearest step count to its executed FLOPs. The tuned plan was tuned with "
         "`pipe.tune` at budget 0.5 on 2 other prompts (the pipeline's own scheduler).")
CALIBRATION = ["a bird flying over a lake", "a city street at night"]


def small_wan():
    """Return a small random Wan T2V pipeline (4 heads x 32, 8 blocks) with tiny text encoder and VAE."""
    import diffusers as d
    from transformers import T5Config, UMT5EncoderModel

    from diffskip.testing import t5_tokenizer

    torch.manual_seed(0)
    tr = d.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=32, in_channels=16,
                                 out_channels=16, text_dim=32, freq_dim=64, ffn_dim=256, num_layers=8,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64).eval()
    te = UMT5EncoderModel(T5Config(vocab_size=200, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)).eval()
    vae = d.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                             temperal_downsample=[False, True, True]).eval()
    return d.WanPipeline(tokenizer=t5_tokenizer(), text_encoder=te, vae=vae, transformer=tr,
                         scheduler=d.FlowMatchEulerDiscreteScheduler(shift=3.0))


def _frames(pipe, prompt: str, steps: int) -> torch.Tensor:
    out = pipe(prompt, num_inference_steps=steps, num_frames=33, height=64, width=64, guidance_scale=1.0,
               output_type="pt", generator=torch.Generator().manual_seed(0))
    return out.frames[0].float()


def _row(name: str, steps: int, flops: float, values: list[float]) -> dict:
    return {"method": name, "steps": steps, "flops": flops, "psnr": statistics.fmean(min(v, 100.0) for v in values)}


def quality(out: Path, step_counts: tuple[int, ...] = (20, 50)) -> list[dict]:
    """Policies, a tuned plan and fewer steps on the small Wan pipeline at 20 and 50 steps."""
    base = small_wan()
    base.set_progress_bar_config(disable=True)
    rows = []
    for n in step_counts:
        full = [_frames(base, p, n) for p in PROMPTS]
        fast = diffskip.DiffSkipPipeline.from_pipe(base, policy="never")
        res = fast.tune(CALIBRATION, budget=0.5, num_inference_steps=n, schedulers=("own",), num_frames=33,
                        height=64, width=64, guidance_scale=1.0)  # tuned on prompts the table never shows
        for name, spec, steps in [(f"`{s}`", s, n) for s in POLICIES] + [
                (f"tuned plan (budget 0.5): `{res.policy}`", res.policy, res.num_steps)]:
            fast.policy = spec
            got = [_frames(fast, p, steps) for p in PROMPTS]
            flops = fast.last_stats.relative_to(n)
            rows.append(_row(name, steps, flops, [psnr(g, f, peak=1.0) for g, f in zip(got, full)]))
            k = max(1, round(flops * n))
            rows.append(_row(f"fewer steps ({k})", k, k / n,
                             [psnr(_frames(base, p, k), f, peak=1.0) for p, f in zip(PROMPTS, full)]))
            print(rows[-2], rows[-1], flush=True)
        fast.detach()
    out.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return rows


def overhead(repeats: int = 3) -> dict:
    """Wall-clock over FLOP speed-up of interval:every=3 at Wan 2.1 1.3B width (CPU, float32)."""
    import diffusers as d

    torch.manual_seed(0)
    tr = d.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128,
                                 in_channels=16, out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960,
                                 num_layers=30, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                 rope_max_seq_len=1024).eval()
    diffskip.attach(tr)
    x, enc, steps = torch.randn(1, 16, 2, 16, 16), torch.randn(1, 16, 4096), 9

    def run(spec: str) -> tuple[float, float]:
        with torch.no_grad(), diffskip.session(tr, spec, num_steps=steps) as s:
            t0, y = time.perf_counter(), x
            for t in torch.linspace(999, 50, steps):
                y = y - 0.1 * tr(y, timestep=t.expand(1), encoder_hidden_states=enc, return_dict=False)[0]
            return time.perf_counter() - t0, s.stats.flops_fraction

    run("never"), run("interval:every=3")  # warm-up (and the FLOP measurement)
    times = {"never": [], "interval:every=3": []}
    for _ in range(repeats):
        for spec in times:
            times[spec].append(run(spec)[0])
    frac = run("interval:every=3")[1]
    wall = statistics.median(times["never"]) / statistics.median(times["interval:every=3"])
    return {"plain_s": statistics.median(times["never"]), "interval_s": statistics.median(times["interval:every=3"]),
            "wall_speedup": wall, "flop_speedup": 1 / frac, "overhead_ratio": wall * frac, "times": times}


def report(out: str) -> str:
    """Write docs/bench_video.md from the quality and overhead JSONs."""
    lines = ["# Video: caching on a Wan-style pipeline", "", "```bash",
             "OMP_NUM_THREADS=1 python -m benchmarks.video quality", "OMP_NUM_THREADS=2 python -m benchmarks.video "
             "overhead", "python -m benchmarks.video report", "```", "", INTRO, "",
             "| steps | method | run steps | FLOPs (of the full run) | PSNR to the full run (dB) |",
             "|---|---|---|---|---|"]
    q = Path(out + "_quality.json")
    for r in json.loads(q.read_text(encoding="utf-8")) if q.is_file() else []:
        full = r["steps"] if not r["method"].startswith("fewer") else round(r["steps"] / r["flops"])
        lines.append(f"| {full} | {r['method']} | {r['steps']} | {r['flops']:.3f} | {r['psnr']:.2f} |")
    o = Path(out + "_overhead.json")
    if o.is_file():
        r = json.loads(o.read_text(encoding="utf-8"))
        lines += ["", "Overhead at Wan 2.1 1.3B width (`interval:every=3`, 9 steps, CPU float32): plain "
                  f"{r['plain_s']:.1f} s, interval {r['interval_s']:.1f} s per run (medians of 3, interleaved); "
                  f"wall-clock speed-up {r['wall_speedup']:.2f}x, FLOP speed-up {r['flop_speedup']:.2f}x, "
                  f"overhead ratio (wall / FLOP) **{r['overhead_ratio']:.2f}** (target >= 0.9)."]
    text = "\n".join(lines) + "\n"
    Path(out + ".md").write_text(text, encoding="utf-8")
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["quality", "overhead", "report"])
    ap.add_argument("--out", default="docs/bench_video")
    ap.add_argument("--steps", nargs="+", type=int, default=[20, 50])
    args = ap.parse_args()
    if args.what == "report":
        print(report(args.out))
    elif args.what == "quality":
        quality(Path(args.out + "_quality.json"), tuple(args.steps))
    else:
        r = overhead()
        Path(args.out + "_overhead.json").write_text(json.dumps(r, indent=1), encoding="utf-8")
        print(json.dumps(r, indent=1))


if __name__ == "__main__":
    main()
