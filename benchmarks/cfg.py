"""CFG-aware caching (issue 21 item 2): `cfg=1,2,3` on interval and threshold policies against larger intervals
and fewer steps, on both embedded models at 20 and 50 steps.

PSNR (uint8 images) to the full-step run from the same seeds, FLOPs relative to it. "curve" interpolates PSNR at
a row's FLOPs on the same policy family with cfg=1 (interval every=2..6; threshold target 0.5..0.2), "fewer"
on plain fewer steps (2..N). Run: `python -m benchmarks.cfg` (writes docs/bench_cfg.md and .json).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

import diffskip
from diffskip.engine import cfgdiff
from diffskip.metrics.fidelity import mean_psnr
from zoo.data import eval_prompts

from .budget import render

MODELS = ("fashion-sd", "fashion-pixart")
STEPS = (20, 50)
POLICIES = ("interval:every=2", "interval:every=3", "threshold")
CURVES = {"interval": [f"interval:every={k}" for k in range(2, 7)],
          "threshold": [f"threshold:target={t}" for t in (0.5, 0.4, 0.33, 0.25, 0.2)]}


def interp(points: list[tuple[float, float]], x: float) -> float | None:
    """PSNR at FLOPs `x`, linear between the measured (flops, psnr) points; None outside them."""
    pts = sorted(points)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def measure(name: str, prompts: list[str]) -> list[dict]:
    """Every row of one model: policy x cfg, the cfg=1 curves and fewer steps, at each full step count."""
    fast = diffskip.DiffSkipPipeline.from_pretrained(name)
    fast.set_progress_bar_config(disable=True)
    rows = []
    for n in STEPS:
        ref, _ = render(fast, n, prompts, 0, "never", n)
        def row(spec: str, steps: int, kind: str, form: str = "diff") -> dict:
            cfgdiff.FORM = form
            try:
                imgs, flops = render(fast, n, prompts, 0, spec, steps)
            finally:
                cfgdiff.FORM = "diff"
            r = {"model": name, "full": n, "kind": kind, "policy": spec, "steps": steps, "form": form,
                 "flops": round(flops, 4), "psnr": round(mean_psnr(imgs, ref), 2)}
            print(r, flush=True)
            return r
        fewer = [row("never", k, "fewer") for k in range(2, n)]
        curve = {fam: [row(s, n, "curve") for s in specs] for fam, specs in CURVES.items()}
        for spec in POLICIES:
            fam = spec.split(":")[0]
            for cfg, form in ((1, "diff"), (2, "diff"), (3, "diff"), (2, "own"), (3, "own")):
                r = row(spec if cfg == 1 else f"{spec}{',' if ':' in spec else ':'}cfg={cfg}", n, "cfg", form)
                at = interp([(c["flops"], c["psnr"]) for c in curve[fam]], r["flops"])
                few = interp([(c["flops"], c["psnr"]) for c in fewer], r["flops"])
                r.update(vs_curve=None if at is None else round(r["psnr"] - at, 2),
                         vs_fewer=None if few is None else round(r["psnr"] - few, 2))
                rows.append(r)
        rows += fewer + [c for cs in curve.values() for c in cs]
    return rows


def table(rows: list[dict]) -> str:
    """The markdown table of the policy x cfg rows."""
    head = ("| model | steps | policy | uncond form | FLOPs | PSNR dB | vs same family, cfg=1, at equal FLOPs | "
            "vs fewer steps at equal FLOPs |\n|---|---|---|---|---|---|---|---|\n")
    fmt = lambda v: "n/a" if v is None else f"{v:+.2f}"  # noqa: E731
    form = lambda r: "-" if "cfg=" not in r["policy"] else r["form"]  # noqa: E731
    return head + "".join(f"| {r['model']} | {r['full']} | `{r['policy']}` | {form(r)} | {r['flops']:.3f} | "
                          f"{r['psnr']:.2f} | "
                          f"{fmt(r['vs_curve'])} | {fmt(r['vs_fewer'])} |\n" for r in rows if r["kind"] == "cfg")


def main() -> None:
    torch.set_num_threads(1)
    prompts = eval_prompts(2)[0][:16]
    rows = [r for m in MODELS for r in measure(m, prompts)]
    Path("docs/bench_cfg.json").write_text(json.dumps({"prompts": prompts, "rows": rows}, indent=1) + "\n")
    Path("docs/bench_cfg.md").write_text(
        "# CFG-aware caching (`cfg=`), measured\n\n"
        "16 held-out prompts (zoo.data.eval_prompts), one seed each, guidance as the model folder sets it; PSNR of "
        "the uint8 images to the full-step run (same seeds); FLOPs: executed denoiser FLOPs relative to it. "
        "`vs same family`: PSNR minus the cfg=1 curve of the same policy (interval every=2..6, threshold "
        "target=0.5..0.2) interpolated at this row's FLOPs; `vs fewer steps`: minus plain fewer steps (2..N-1) "
        "interpolated the same way. Uncond form: `diff` = the skipped unconditional rows replay the conditional "
        "rows' value minus the cached cond - uncond difference (FasterCache's CFG cache, Lv et al. 2024; the "
        "default), `own` = they replay their own cache. Made by `python -m benchmarks.cfg`; all rows in "
        "bench_cfg.json.\n\n"
        + table(rows))


if __name__ == "__main__":
    main()
