"""Budget benchmark with every tuner axis (issue #21): steps x policy x scheduler x jump (both forms) x CFG x tokens.

Per model and full step count: the tuner picks a plan on calibration prompts / seeds (validated on held-out
ones), then the pick and the best fewer-steps candidate at no more FLOPs (the pipeline's scheduler and
DPM-Solver++; DDIM and DPM-Solver++ for the pixel model) are scored on the evaluation set, which the tuner
never sees: PSNR to the full-step run, FLOPs relative to it. Targets (issue #21): +2 dB at 0.35 of 20 steps
(embedded models), +3 dB at 0.35 of 50 steps (all three), moonshot +3 dB at 0.25 of 50 steps.
Run: `python -m benchmarks.budget_axes fashion-sd --full 20 --budgets 0.35`; `--report` writes the markdown.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import diffskip
from diffskip.metrics.fidelity import mean_psnr
from zoo.data import eval_prompts, load_split, to_float, to_uint8

from .budget import CALIBRATION, HELDOUT, cached, render

OUT = Path("docs/budget_axes.json")
TARGETS = {(20, 0.35): 2.0, (50, 0.35): 3.0, (50, 0.25): 3.0}  # margin over fewer steps, dB
PIXEL_SEEDS, PIXEL_CAL, PIXEL_VAL = 128, 10_000, 20_000


def _pixel_loop(unet, scheduler, seed: int, batch: int):
    """The held-out model's own loop (issue #21's signature): run(num_steps, skip=None) -> images in [-1, 1]."""
    def run(num_steps: int, skip=None) -> torch.Tensor:
        scheduler.set_timesteps(num_steps)
        x = torch.randn(batch, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
        timesteps = scheduler.timesteps
        if skip is not None:
            x, timesteps = skip.start(x, scheduler)
        with torch.no_grad():
            for t in timesteps:
                x = scheduler.step(unet(x, t).sample, t, x).prev_sample
        return x.clamp(-1, 1)
    return run


def pixel_stats(rank: int = 128) -> diffskip.GaussianStats:
    """Gaussian statistics of the pixel model's training images (what a user of an unconditional model has)."""
    images = to_float(load_split("train")[0][:, :1])
    return diffskip.GaussianStats.from_latents(images, rank, {"source": "Fashion-MNIST train", "rank": rank})


def _pixel(full: int, budgets: list[float], n: int) -> dict:
    from diffusers import DPMSolverMultistepScheduler
    from zoo.pixel import load_pixel

    unet, ddim = load_pixel()
    dpm = DPMSolverMultistepScheduler.from_config(ddim.config, algorithm_type="dpmsolver++", solver_order=2)
    unet, stats = diffskip.attach(unet), pixel_stats()

    def images(res_or_trial, sched) -> tuple[torch.Tensor, float]:
        t = res_or_trial
        skip = diffskip.GaussianSkip(stats, t.skip, t.conditional) if t.skip else None
        with diffskip.session(unet, t.policy, num_steps=t.num_steps - (skip.saved_calls if skip else 0)) as s:
            x = _pixel_loop(unet, sched, 0, n)(t.num_steps, skip)
        return to_uint8(x.repeat(1, 3, 1, 1)), s.stats.relative_to(full)

    base = cached(f"axes-pixel-{n}-{full}", lambda: images(diffskip.tuning.Trial("never", full), ddim)[0])
    out = {}
    for b in budgets:
        res = diffskip.tune(unet, _pixel_loop(unet, ddim, PIXEL_CAL, 16), b, full, stats=stats,
                            validate=_pixel_loop(unet, ddim, PIXEL_VAL, 16))
        rows = {"pick": images(res, ddim)}
        k = int(b * full + 1e-9)
        for name, sched in (("ddim", ddim), ("dpm++", dpm)):
            rows[f"fewer {k} [{name}]"] = images(diffskip.tuning.Trial("never", k), sched)
        out[str(b)] = _score(res, rows, base)
    return out


def _pipeline(name: str, full: int, budgets: list[float], n: int) -> dict:
    fast = diffskip.DiffSkipPipeline.from_pretrained(name)
    fast.set_progress_bar_config(disable=True)
    prompts = eval_prompts(max(1, n // 10))[0]
    base = cached(f"axes-{name}-{len(prompts)}-{full}", lambda: render(fast, full, prompts, 0, "never", full)[0])
    out = {}
    for b in budgets:
        res = fast.tune(CALIBRATION, budget=b, num_inference_steps=full, heldout=HELDOUT)
        fast.skip = None
        rows = {"pick": _render_pick(fast, full, prompts, res)}
        k = int(b * full + 1e-9)
        for sched in ("own", "dpm++"):
            rows[f"fewer {k} [{sched}]"] = render(fast, full, prompts, 0, "never", k, sched)
        out[str(b)] = _score(res, rows, base)
    return out


def _render_pick(fast, full: int, prompts: list[str], res) -> tuple[torch.Tensor, float]:
    """Render the pick on the evaluation prompts with every part of it (jump form included)."""
    return render(fast, full, prompts, 0, res.policy, res.num_steps, res.scheduler, res.skip,
                  conditional=res.conditional)


def _score(res, rows: dict, base: torch.Tensor) -> dict:
    """PSNR to the full run and FLOPs per row; the margin of the pick over the best fewer-steps row."""
    scored = {k: {"flops": round(f, 4), "psnr": round(mean_psnr(img, base), 3)} for k, (img, f) in rows.items()}
    fewer = max((v["psnr"], k) for k, v in scored.items() if k != "pick" and v["flops"] <= res.budget + 1e-9)
    cal = {"best_jump": _best(res, lambda t: t.skip and t.policy == "never"),
           "best_jump_cache": _best(res, lambda t: t.skip and t.policy != "never"),
           "best_cache": _best(res, lambda t: not t.skip and t.policy != "never"),
           "best_fewer": _best(res, lambda t: t.fewer_steps)}
    return {"pick": res.trial().label(), "rows": scored,
            "best_fewer": fewer[1], "margin_db": round(scored["pick"]["psnr"] - fewer[0], 3),
            "heldout": res.heldout, "calibration": cal, "candidates": len(res.table)}


def _best(res, keep) -> dict | None:
    ok = [t for t in res.table if keep(t) and t.psnr is not None and t.flops <= res.budget + 1e-9]
    t = max(ok, key=lambda t: t.psnr, default=None)
    return None if t is None else {"trial": t.label(), "flops": round(t.flops, 4), "psnr": round(t.psnr, 3)}


def report(data: dict, path: Path) -> None:
    lines = ["# Budget benchmark with every axis (issue #21)", "",
             "Generated by `python -m benchmarks.budget_axes --report` from `docs/budget_axes.json`. Plans tuned on "
             "calibration prompts / seeds, scored on the evaluation set (100 prompts, 1 seed each; 128 seeds for the "
             "pixel model). PSNR to the full-step run in dB; FLOPs relative to it. Margin: the pick over the best "
             "fewer-steps row at no more FLOPs (the pipeline's own scheduler or DPM-Solver++). The last column is the "
             "tuner's own validation (4 held-out prompts, 16 seeds for the pixel model), before the evaluation set.",
             "",
             "| model | full steps | budget | pick | FLOPs | PSNR | best fewer steps | PSNR | margin dB | target "
             "| met | tuner's held-out margin |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, per_budget in sorted(data.items()):
        model, full = key.rsplit("@", 1)
        for b, r in sorted(per_budget.items(), reverse=True):
            target = TARGETS.get((int(full), float(b)))
            pick, fewer = r["rows"]["pick"], r["rows"][r["best_fewer"]]
            met = "" if target is None else ("yes" if r["margin_db"] >= target else "no")
            lines.append(f"| {model} | {full} | {b} | {r['pick']} | {pick['flops']:.3f} | {pick['psnr']:.2f} | "
                         f"{r['best_fewer']} | {fewer['psnr']:.2f} | {r['margin_db']:+.2f} | "
                         f"{'' if target is None else f'+{target:.0f}'} | {met} | {r['heldout']['margin_db']:+.2f} |")
    lines += ["", "Best calibration candidate of each kind within the budget (PSNR to full, calibration set):", ""]
    for key, per_budget in sorted(data.items()):
        for b, r in sorted(per_budget.items(), reverse=True):
            parts = [f"{k.replace('best_', '')}: {v['trial']} {v['psnr']:.2f} dB @ {v['flops']:.3f}"
                     for k, v in r["calibration"].items() if v]
            lines.append(f"- {key} budget {b} ({r['candidates']} candidates): " + "; ".join(parts))
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", choices=["fashion-sd", "fashion-pixart", "fashion-pixel"])
    p.add_argument("--full", type=int, default=50)
    p.add_argument("--budgets", type=float, nargs="+", default=[0.35])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--report", action="store_true", help="write docs/bench_budget_axes.md from the JSON")
    a = p.parse_args(argv)
    out = Path(a.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    if a.model:
        torch.set_num_threads(1)
        t0 = time.time()
        fn = _pixel if a.model == "fashion-pixel" else lambda *x: _pipeline(a.model, *x)
        got = fn(a.full, a.budgets, PIXEL_SEEDS if a.model == "fashion-pixel" else a.n)
        data = json.loads(out.read_text()) if out.exists() else {}  # another model's run may have written meanwhile
        data.setdefault(f"{a.model}@{a.full}", {}).update(got)
        out.write_text(json.dumps(data, indent=2))
        print(json.dumps(got, indent=1), f"\nwall {time.time() - t0:.0f}s", flush=True)
    if a.report:
        report(data, Path("docs/bench_budget_axes.md"))


if __name__ == "__main__":
    main()
