"""Token-level partial compute (policy `tokens=`) on the embedded fashion-pixart DiT: PSNR vs FLOPs.

For 20 and 50 steps: PSNR of each plan to the full-step run from the same seeds (uint8 images), FLOPs relative to
the full-step run; `interval:every=N` with tokens in {0, 0.1, 0.25, 0.5}, plain replay at more intervals (its
frontier) and plain fewer steps. Each token-partial row is compared with plain replay and with fewer steps at its
FLOPs (PSNR interpolated linearly in FLOPs along their measured frontiers). Run:
`OMP_NUM_THREADS=1 python -m benchmarks.tokens` (a few CPU minutes); writes docs/bench_tokens.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import diffskip
from diffskip.metrics.fidelity import mean_psnr
from zoo.data import eval_prompts, to_uint8

from .cfg import interp

EVERY = (2, 3, 4)
TOKENS = (0.0, 0.1, 0.25, 0.5)
PLAIN_EVERY = (2, 3, 4, 5, 6, 8)  # plain replay (tokens=0): its PSNR-FLOPs frontier


def render(fast, prompts: list[str], policy: str, steps: int, full: int) -> tuple[torch.Tensor, float]:
    """uint8 images of `prompts` (seed i for prompt i) under one plan, and its FLOPs relative to `full` steps."""
    fast.policy = policy
    gens = [torch.Generator().manual_seed(i) for i in range(len(prompts))]
    res = fast(prompts, num_inference_steps=steps, generator=gens, output_type="pt")
    return to_uint8(res.images * 2 - 1), fast.last_stats.relative_to(full)


def measure(fast, prompts: list[str], steps: int) -> dict:
    """Every row at one step count, with its margins over plain replay and fewer steps at equal FLOPs."""
    ref, _ = render(fast, prompts, "never", steps, steps)
    rows: dict[str, dict] = {}
    specs = [f"interval:every={e}" for e in PLAIN_EVERY]
    specs += [f"interval:every={e},tokens={t}" for e in EVERY for t in TOKENS if t]
    for spec in specs:
        t0 = time.time()
        imgs, flops = render(fast, prompts, spec, steps, steps)
        rows[spec] = {"flops": round(flops, 4), "psnr": round(mean_psnr(imgs, ref), 2), "s": round(time.time() - t0, 1)}
        print(steps, spec, rows[spec], flush=True)
    fewer = {}
    for k in range(2, steps):
        imgs, flops = render(fast, prompts, "never", k, steps)
        fewer[k] = {"flops": round(flops, 4), "psnr": round(mean_psnr(imgs, ref), 2)}
        if flops > 0.8:
            break
    return margins({"rows": rows, "fewer_steps": fewer})


def margins(res: dict) -> dict:
    """Add each row's PSNR margin over fewer steps and (token-partial rows) over plain replay at its FLOPs."""
    rows = res["rows"]
    plain = [(r["flops"], r["psnr"]) for s, r in rows.items() if "tokens" not in s]
    steps_curve = [(r["flops"], r["psnr"]) for r in res["fewer_steps"].values()]
    for spec, r in rows.items():
        for name, curve in (("vs_plain_db", plain), ("vs_fewer_steps_db", steps_curve)):
            at = interp(curve, r["flops"]) if "tokens" in spec or name != "vs_plain_db" else None
            r[name] = None if at is None else round(r["psnr"] - at, 2)
    return res


def table(steps: int, res: dict) -> list[str]:
    """Markdown rows for one step count."""
    out = [f"### {steps} steps", "", "| plan | FLOPs | PSNR dB | vs plain replay at equal FLOPs | vs fewer steps |",
           "|---|---|---|---|---|"]
    fmt = lambda v: "" if v is None else f"{v:+.2f}"  # noqa: E731
    for spec, r in res["rows"].items():
        out.append(f"| `{spec}` | {r['flops']:.3f} | {r['psnr']:.2f} | {fmt(r['vs_plain_db'])} | "
                   f"{fmt(r['vs_fewer_steps_db'])} |")
    out += ["", "| fewer steps | FLOPs | PSNR dB |", "|---|---|---|"]
    out += [f"| {k} | {r['flops']:.3f} | {r['psnr']:.2f} |" for k, r in res["fewer_steps"].items()]
    return out + [""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, nargs="+", default=[20, 50])
    p.add_argument("--out", type=Path, default=Path("docs/bench_tokens"))
    p.add_argument("--report", action="store_true", help="only rewrite the tables from the .json of a run")
    a = p.parse_args(argv)
    if a.report:
        results = json.loads(a.out.with_suffix(".json").read_text())
        results["by_steps"] = {s: margins(r) for s, r in results["by_steps"].items()}
    else:
        results = run(a.steps)
    a.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    write_md(results, a.out.with_suffix(".md"))


def run(steps: list[int]) -> dict:
    """Measure every step count on the embedded fashion-pixart pipeline."""
    torch.set_num_threads(1)
    fast = diffskip.DiffSkipPipeline.from_pretrained("fashion-pixart")
    fast.set_progress_bar_config(disable=True)
    prompts = eval_prompts(1)[0]  # 10 held-out prompts, one per class
    t0 = time.time()
    results = {"model": "fashion-pixart", "prompts": prompts, "seeds": "prompt i: seed i", "psnr": "uint8, to the "
               "full-step run", "by_steps": {str(s): measure(fast, prompts, s) for s in steps}}
    results["wall_s"] = round(time.time() - t0, 1)
    return results


def write_md(results: dict, path: Path) -> None:
    """Write the markdown report."""
    prompts = results["prompts"]
    md = ["# Token-level partial compute on fashion-pixart", "",
          f"`python -m benchmarks.tokens` ({len(prompts)} held-out prompts, seed i for prompt i, CFG 4.5 default, "
          f"CPU float32, {results['wall_s']} s). PSNR of uint8 images to the full-step run from the same seeds; "
          f"FLOPs relative to it (token-partial units count their FLOPs times the token fraction). Margins: PSNR "
          f"minus the PSNR that plain replay (`tokens=0`, every 2-8) or plain fewer steps reach at the same FLOPs, "
          f"interpolated linearly along their measured curves (empty: outside the curve).", ""]
    for s, res in results["by_steps"].items():
        md += table(int(s), res)
    path.write_text("\n".join(md))


if __name__ == "__main__":
    main()
