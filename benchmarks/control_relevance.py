"""Control relevance per position (RelaCtrl): switch each branch of the 12-position TDSM model off, measure.

Writes docs/control_relevance.json (metrics, scores, the keep-top-k sweep, the placement plan for the light
and the uniform model) and docs/control_relevance.png. Run: python -m benchmarks.control_relevance
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from benchmarks.control_eval import STEPS, Judge, generate_with
from diffskip.control.inject import load_control
from diffskip.control.models import FullControlNetModel, RelaCtrlModel
from diffskip.control.relevance import groups_for, relevance_scores, top_positions
from zoo.control import load_base

log = logging.getLogger(__name__)
N, SEED, KEEP = 40, 0, (2, 3, 4)
BUDGET = 0.20  # RelaCtrl's added parameters at most this share of the full ControlNet's
TIERS = (1, 2, 4)  # channel groups, widest first, by relevance tier
UNIFORM_GROUPS = 2


def params_of(positions: list[int], groups: list[int]) -> int:
    return sum(p.numel() for p in RelaCtrlModel(positions=positions, groups=groups).parameters())


def uniform_positions(k: int, layers: int = 12) -> list[int]:
    """Return k evenly spaced block indices (window centres)."""
    return [round((i + 0.5) * layers / k - 0.5) for i in range(k)]


def measure(pipe, model, judge, tokens, off=()) -> dict:
    images, secs = generate_with(pipe, model, tokens, judge.prompts, SEED, off=off)
    return {**judge.score(images, clip=False), "seconds": round(secs, 1)}


def choose(scores: dict, keep: dict, full: dict, cn_params: int) -> tuple[int, str]:
    """Smallest k within the budget whose edge F1 reaches 95% of the best measured; else the largest in budget."""
    fits = [k for k in KEEP if params_of(top_positions(scores, k), groups_for(scores, top_positions(scores, k), TIERS))
            <= BUDGET * cn_params]
    best = max([full["edge_f1"]] + [keep[k]["edge_f1"] for k in KEEP])
    good = [k for k in fits if keep[k]["edge_f1"] >= 0.95 * best]
    if good:
        return min(good), f"smallest k within {BUDGET:.0%} of the ControlNet's parameters reaching 95% of the best F1"
    return max(fits), f"no k in budget reached 95% of the best F1; the largest k within {BUDGET:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=N, help="held-out conditions (n/10 per class)")
    parser.add_argument("--model", default="controlnets/fashion-pixart-relevance12-edges")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pipe = load_base()
    model = load_control(args.model)
    judge = Judge(args.n)
    tokens = judge.tokens(pipe)
    layers = model.positions
    full = measure(pipe, model, judge, tokens)
    log.info("all on: %s", full)
    off = {}
    for p in layers:
        off[p] = measure(pipe, model, judge, tokens, off=(p,))
        log.info("off %d: %s", p, off[p])
    scores = relevance_scores({p: m["fd"] for p, m in off.items()}, {p: m["edge_f1"] for p, m in off.items()},
                              {p: m["hausdorff"] for p, m in off.items()})
    keep = {}
    for k in KEEP:
        kept = top_positions(scores, k)
        keep[k] = {**measure(pipe, model, judge, tokens, off=tuple(p for p in layers if p not in kept)),
                   "positions": kept}
        log.info("keep %d %s: %s", k, kept, keep[k])
    cn_params = sum(p.numel() for p in FullControlNetModel.from_transformer(pipe.transformer).parameters())
    k, why = choose(scores, keep, full, cn_params)
    pos = top_positions(scores, k)
    plan = {"relactrl": {"positions": pos, "groups": groups_for(scores, pos, TIERS)},
            "uniform": {"positions": uniform_positions(k), "groups": [UNIFORM_GROUPS] * k}, "k": k, "why": why,
            "controlnet_params": cn_params, "tiers": list(TIERS)}
    for name in ("relactrl", "uniform"):
        plan[name]["params"] = params_of(plan[name]["positions"], plan[name]["groups"])
    result = {"n_images": args.n, "seed": SEED, "steps": STEPS, "all_on": full, "off": off, "scores": scores,
              "keep": keep, "plan": plan}
    (args.out / "control_relevance.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "control_relevance.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pos = sorted(int(p) for p in result["scores"])
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
    ax[0].bar(pos, [result["scores"][p] for p in pos], color="tab:blue")
    ax[0].set(xlabel="base block (depth)", ylabel="control relevance", title="relevance vs depth")
    ax[1].plot(pos, [result["off"][p]["edge_f1"] for p in pos], "o-", label="edge F1, branch off")
    ax[1].axhline(result["all_on"]["edge_f1"], color="k", ls="--", label="all on")
    ax[1].set(xlabel="base block switched off", ylabel="edge F1")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
