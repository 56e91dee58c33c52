"""Turn analytic-skipping measurements (curve and calibration JSON) into markdown tables and plots."""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["accepted_skip", "calibration_plot", "curve_plot", "curve_table", "image_grid", "load_curves"]


def load_curves(paths: list[Path]) -> dict:
    """Merge curve JSON files (config key -> point name -> metrics)."""
    out: dict = {}
    for p in paths:
        if p.exists():
            out.update(json.loads(p.read_text()))
    return out


def _spread(points: dict) -> tuple[float, float]:
    """Return (mean, max - min) of the full run's Frechet distance over its seed sets."""
    fds = [v["fd_classifier"] for k, v in points.items() if k.startswith("full")]
    return sum(fds) / len(fds), max(fds) - min(fds)


def accepted_skip(points: dict) -> dict:
    """Deepest jump whose FD and every shallower jump's FD stay <= full (seed 0) + the seed-to-seed spread."""
    full, (_, spread) = points["full"]["fd_classifier"], _spread(points)
    best = points["full"]
    for v in sorted((v for k, v in points.items() if k.startswith("skip")), key=lambda v: v["skip"]):
        if v["fd_classifier"] > full + spread:
            break
        best = v
    return {"skip": best["skip"], "saved_fraction": best["saved_fraction"], "fd_limit": full + spread,
            "spread": spread}


def curve_table(curves: dict) -> str:
    """Return one markdown table row per point, grouped by configuration."""
    rows = ["| pipeline / scheduler | steps skipped | model evaluations saved | FD (classifier features) | "
            "CLIP score | PSNR to unskipped (dB) | images |", "|---|---|---|---|---|---|---|"]
    for key, points in curves.items():
        for name, v in sorted(points.items(), key=lambda kv: (kv[1]["seed"], kv[1]["skip"])):
            label = f"{v['skip']}" if v["seed"] == 0 else f"0 (seed set {v['seed']})"
            psnr = "-" if v["psnr_vs_full"] is None else f"{v['psnr_vs_full']:.2f}"
            rows.append(f"| {key} | {label} | {v['saved_fraction']:.0%} | {v['fd_classifier']:.3f} | "
                        f"{v['clip_score']:.2f} | {psnr} | {v['n_images']} |")
    return "\n".join(rows)


def curve_plot(curves: dict, path: Path) -> None:
    """Plot FD and PSNR against the fraction of model evaluations saved, one line per configuration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, points in curves.items():
        pts = sorted((v for k, v in points.items() if v["seed"] == 0), key=lambda v: v["skip"])
        x = [v["saved_fraction"] for v in pts]
        line, = ax1.plot(x, [v["fd_classifier"] for v in pts], "o-", label=key)
        full, spread = points["full"]["fd_classifier"], _spread(points)[1]
        ax1.axhspan(full, full + spread, color=line.get_color(), alpha=0.12)
        ax2.plot(x[1:], [v["psnr_vs_full"] for v in pts[1:]], "o-", color=line.get_color(), label=key)
    ax1.set(xlabel="model evaluations saved", ylabel="Frechet distance (classifier features)",
            title="FD vs steps skipped (band: full run + seed spread)")
    ax2.set(xlabel="model evaluations saved", ylabel="PSNR to the unskipped output (dB)", title="fidelity")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def calibration_plot(calib: dict, path: Path) -> None:
    """Plot explained variance per step (guided and unconditional) and the trajectory diagnostic."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(calib), figsize=(4 * len(calib), 3.6), squeeze=False)
    for ax, (key, c) in zip(axes[0], calib.items()):
        n = len(c["ev_guided"])
        x = [i / n for i in range(n)]
        for name in ("ev_guided", "ev_uncond", "trajectory_ev"):
            ax.plot(x, c[name], label=name.replace("ev_", "prediction EV, "))
        ax.set(title=key, xlabel="step / steps", ylim=(0.8, 1.001))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("explained variance")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def image_grid(image_files: list[Path], path: Path, per_row: int = 10, cell: int = 64) -> None:
    """Save one row per image set (uint8 .pt from run_curve): one image per class, nearest-neighbour upscaled."""
    import torch
    from PIL import Image

    rows = []
    for f in image_files:
        images = torch.load(f)
        step = len(images) // per_row
        rows.append(images[::step][:per_row])
    out = Image.new("RGB", (per_row * cell, len(rows) * cell))
    for r, imgs in enumerate(rows):
        for c, im in enumerate(imgs):
            tile = Image.fromarray(im.permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            out.paste(tile, (c * cell, r * cell))
    out.save(path)
