"""Print the markdown of the control study (training, relevance, table) from its JSON results.

Run: python -m benchmarks.control_report > docs/control_results.md (pasted into docs/control.md).
"""
from __future__ import annotations

import json
from pathlib import Path

NAMES = ("fashion-pixart-relevance12-edges", "fashion-pixart-controlnet-edges", "fashion-pixart-relactrl-edges",
         "fashion-pixart-tdsm-uniform-edges")


def training_md(root: Path = Path("controlnets")) -> str:
    lines = ["| model | parameters | steps x batch | wall time (s) | final loss | checkpoint size |",
             "|---|---|---|---|---|---|"]
    for name in NAMES:
        path = root / name / "training.json"
        if not path.exists():
            lines.append(f"| {name} | not trained | | | | |")
            continue
        t = json.loads(path.read_text())
        size = (root / name / "diffusion_pytorch_model.safetensors").stat().st_size / 2**20
        lines.append(f"| {name} | {t['params']:,} | {t['steps']} x {t['batch_size']} | {t['wall_s']:.0f} | "
                     f"{t['final_loss']:.4f} | {size:.1f} MiB |")
    return "\n".join(lines)


def relevance_md(path: Path = Path("docs/control_relevance.json")) -> str:
    r = json.loads(path.read_text())
    on = r["all_on"]
    lines = [f"{r['n_images']} held-out conditions, seed {r['seed']}, {r['steps']} steps; all 12 branches on: "
             f"FD {on['fd']:.2f}, edge F1 {on['edge_f1']:.3f}, Hausdorff {on['hausdorff']:.2f}.", "",
             "| block switched off | FD | edge F1 | Hausdorff | relevance |", "|---|---|---|---|---|"]
    for p in sorted(r["off"], key=int):
        m = r["off"][p]
        lines.append(f"| {p} | {m['fd']:.2f} | {m['edge_f1']:.3f} | {m['hausdorff']:.2f} | {r['scores'][p]:.3f} |")
    lines += ["", "Keeping only the k most relevant branches of the same model (the others switched off):", "",
              "| k | positions | FD | edge F1 | Hausdorff |", "|---|---|---|---|---|"]
    for k, m in r["keep"].items():
        lines.append(f"| {k} | {m['positions']} | {m['fd']:.2f} | {m['edge_f1']:.3f} | {m['hausdorff']:.2f} |")
    plan = r["plan"]
    lines += ["", f"Chosen: k = {plan['k']} ({plan['why']}). RelaCtrl: positions {plan['relactrl']['positions']}, "
              f"groups {plan['relactrl']['groups']} ({plan['relactrl']['params']:,} parameters); ablation: positions "
              f"{plan['uniform']['positions']}, groups {plan['uniform']['groups']} ({plan['uniform']['params']:,}); "
              f"full ControlNet {plan['controlnet_params']:,}."]
    return "\n".join(lines)


def targets_md(path: Path = Path("docs/control_table.json")) -> str:
    """Return the issue's targets, each with the measured values and met / not met."""
    rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
    cn, rc = rows["full ControlNet"], rows["RelaCtrl"]
    p, f = rc["params"] / cn["params"], rc["flops_added"] / cn["flops_added"]
    f1_ok, hd_ok = rc["edge_f1"] >= cn["edge_f1"], rc["hausdorff"] <= cn["hausdorff"]
    spread = max(cn["fd_std"], rc["fd_std"])
    fd_ok = rc["fd"] <= cn["fd"] + spread
    yes = lambda ok: "met" if ok else "**not met**"  # noqa: E731
    return "\n".join([
        "| target | measured | |", "|---|---|---|",
        f"| added parameters <= 20% of the ControlNet's | {rc['params']:,} / {cn['params']:,} = {p:.1%} "
        f"| {yes(p <= 0.2)} |",
        f"| added FLOPs <= 20% of the ControlNet's | {rc['flops_added'] / 1e6:.1f} / {cn['flops_added'] / 1e6:.1f} "
        f"MFLOPs = {f:.1%} | {yes(f <= 0.2)} |",
        f"| edge F1 >= the ControlNet's | {rc['edge_f1']:.3f} vs {cn['edge_f1']:.3f} | {yes(f1_ok)} |",
        f"| Hausdorff <= the ControlNet's | {rc['hausdorff']:.2f} vs {cn['hausdorff']:.2f} px | {yes(hd_ok)} |",
        f"| FD within the seed spread of the ControlNet's | {rc['fd']:.2f} vs {cn['fd']:.2f} "
        f"(std up to {spread:.2f}) | {yes(fd_ok)} |"])


if __name__ == "__main__":
    print("## Training\n\n" + training_md() + "\n\n## Relevance\n\n" + relevance_md())
    table = Path("docs/control_table.md")
    print("\n## Table\n\n" + (table.read_text() if table.exists() else "(not measured yet)"))
    print("\n## Targets\n\n" + targets_md())
