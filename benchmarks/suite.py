"""The embedded-model benchmark suite: pipelines x steps x methods on Fashion-MNIST prompts, then the report."""
from __future__ import annotations

import json
import random
from pathlib import Path

from torch import nn

from diffskip.assets import path as asset_path

from .bench import BenchConfig, run_bench
from .converged import reference_steps
from .bench_report import derive, dominance, pareto_plot, summary, table
from diffskip.metrics.classifier import ClassifierFeatures
from .fashion import load_pipeline, pipeline_kwargs
from .grid import default_methods
from diffskip.metrics.reference import reference_stats

KINDS = {"fashion-sd": "unet", "fashion-pixart": "dit"}
PLANS = Path("benchmarks/plans")  # benchmarks/tune_plans.sh: <pipeline>-<steps>-<budget>.json, from the root


def feature_network(name: str) -> nn.Module:
    """Return the Frechet feature space: "classifier" (fast, 128-d) or "inception" (FID's network, 2048-d)."""
    if name == "classifier":
        return ClassifierFeatures(asset_path("fashion-classifier"))
    if name == "inception":
        from diffskip.metrics.fid import InceptionFeatures

        return InceptionFeatures()
    raise ValueError(f"features={name!r}: allowed 'classifier' or 'inception'")


def prompts_for(n: int, seed: int = 0) -> list[str]:
    """Return n held-out prompts balanced over the 10 classes, shuffled so every batch mixes classes."""
    from zoo.data import eval_prompts

    prompts, _ = eval_prompts(-(-n // 10), seed)
    random.Random(seed).shuffle(prompts)
    return prompts[:n]


def run_suite(pipelines: list[str], steps: list[int], n: int, features: str, out: str | Path,
              methods: list[str] | None = None, retime: bool = False, **cfg) -> dict:
    """Run every (pipeline, steps) cell, resumable under `out`; return {cell: results}."""
    from zoo.data import load_split

    net = feature_network(features)
    real, _ = load_split("test")
    ref = reference_stats(net, real, Path(out) / "cache", f"fashion-test-{features}")
    prompts = prompts_for(n)
    results = {}
    for name in pipelines:
        if name not in KINDS:
            raise ValueError(f"pipeline {name!r}: the suite knows {sorted(KINDS)}")
        path = asset_path(name)
        kw = pipeline_kwargs(load_pipeline(path))
        for s in steps:
            plans = [f"plan/path={p.as_posix()}" for p in sorted(PLANS.glob(f"{name}-{s}-*.json"))]
            c = BenchConfig(pipeline=name, steps=s, methods=methods or default_methods(KINDS[name], s) + plans, n=n,
                            call_kwargs=kw, **cfg)
            results[f"{name}-{s}"] = run_bench(c, lambda: load_pipeline(path), prompts, net, ref,
                                               Path(out) / f"{features}-n{n}" / f"{name}-{s}", retime=retime)
    return results


def write_report(results: dict, docs: str | Path, features: str, command: str) -> str:
    """Write docs/bench_<features>.json, a Pareto PNG per cell and return the markdown section.

    Cells already in the JSON from earlier invocations (other pipelines or step counts) are kept, so cells run
    by separate commands accumulate into one report; each cell records the command that produced it.
    """
    docs = Path(docs)
    docs.mkdir(parents=True, exist_ok=True)
    path = docs / f"bench_{features}.json"
    raw = json.loads(path.read_text()) if path.exists() else {}
    for cell, res in results.items():
        rows = derive(res["points"])
        fds = [r["fd"] for m, r in rows.items() if m.startswith("none") and "error" not in r]
        spread = max(fds) - min(fds)  # the baseline on 1-3 seed sets
        cfg = res["config"]
        title = (f"{cell}: {cfg['n']} images, converged reference {reference_steps(cfg['steps'])} steps, FD in "
                 f"{features} features, timing batch {cfg['timing_batch']} x {cfg['repeats']} repeats")
        pareto_plot(rows, title, docs / f"bench_{features}_{cell}.png")
        raw[cell] = {"config": cfg, "fd_spread": spread, "command": command, "title": title, "rows": rows}
    path.write_text(json.dumps(raw, indent=1))
    parts = ["## Summary", "", summary(raw), ""]
    for cell, c in sorted(raw.items()):
        parts += [table(c["title"], c["rows"], dominance(c["rows"], c["fd_spread"]), c["fd_spread"]), "",
                  f"Regenerate: `{c['command']}`", "", f"![{cell}](bench_{features}_{cell}.png)", ""]
    return "\n".join(parts)
