"""Benchmark report: derived ratios, the markdown table, the dominance check and Pareto plots."""
from __future__ import annotations

from pathlib import Path

REFUSED = "refused"


def derive(points: dict) -> dict[str, dict]:
    """Add FLOPs fraction, speed-ups and the hook-overhead ratio (denoiser speed-up x FLOPs fraction) per method."""
    base = points["none"]
    rows = {}
    for method, p in points.items():
        if "error" in p:
            rows[method] = {"error": p["error"]}
            continue
        frac = p["flops_first_batch"] / base["flops_first_batch"]
        den = base["denoiser_seconds"] / p["denoiser_seconds"]
        rows[method] = {**p, "flops_fraction": frac, "speedup": base["seconds"] / p["seconds"],
                        "denoiser_speedup": den, "overhead_ratio": den * frac}
    return rows


def dominance(rows: dict[str, dict], spread: float) -> dict[str, str]:
    """For each peer point, name a diffskip point with <= FLOPs, FD <= peer FD + spread and PSNR >= peer PSNR."""
    ours = {m: r for m, r in rows.items() if m.startswith("diffskip/") and "error" not in r}
    verdict = {}
    for m, r in rows.items():
        if m.startswith(("diffskip/", "none")) or "error" in r:
            continue
        if r["flops_fraction"] > 0.999:  # skipped nothing: the baseline itself matches it
            verdict[m] = "skips nothing (= baseline)"
            continue
        wins = [o for o, q in ours.items() if q["flops_fraction"] <= r["flops_fraction"] + 1e-9
                and q["fd"] <= r["fd"] + spread and q["psnr"] >= r["psnr"]]
        best = min(wins, key=lambda o: ours[o]["flops_fraction"]) if wins else None
        verdict[m] = best.removeprefix("diffskip/") if best else "**not matched**"
    return verdict


def table(title: str, rows: dict[str, dict], verdict: dict[str, str], spread: float) -> str:
    """Return one markdown table: method, setting, FLOPs, speed-ups, PSNR/SSIM, FD, CLIP, and the check."""
    n_base = sum(1 for m, r in rows.items() if m.startswith("none") and "error" not in r)
    out = [f"### {title}", "",
           f"FD run-to-run spread (max - min over the baseline on {n_base} seed sets): {spread:.3f}", "",
           "| method | setting | FLOPs frac | speed-up | denoiser speed-up | overhead ratio | PSNR dB | SSIM | "
           "latent MAD | FD | CLIP | diffskip point with <= FLOPs, FD, >= PSNR |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        family, _, setting = m.partition("/")
        if "error" in r:
            out.append(f"| {family} | {setting} | {REFUSED}: {r['error'].replace('|', '/')} | | | | | | | | | |")
            continue
        psnr = "exact" if r["psnr"] >= 100 else f"{r['psnr']:.2f}"
        mad = f"{r['latent_mad']:.4f}" if "latent_mad" in r else "-"
        out.append(f"| {family} | {setting or '-'} | {r['flops_fraction']:.3f} | {r['speedup']:.2f}x | "
                   f"{r['denoiser_speedup']:.2f}x | {r['overhead_ratio']:.2f} | {psnr} | {r['ssim']:.3f} | "
                   f"{mad} | {r['fd']:.3f} | {r['clip']:.2f} | {verdict.get(m, '')} |")
    return "\n".join(out)


def pareto_plot(rows: dict[str, dict], title: str, path: str | Path) -> None:
    """Plot FD and PSNR against the executed-FLOPs fraction, one colour per method family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    families = sorted({m.partition("/")[0] for m, r in rows.items() if "error" not in r})
    for fam in families:
        pts = sorted((r["flops_fraction"], r["fd"], min(r["psnr"], 60)) for m, r in rows.items()
                     if "error" not in r and m.partition("/")[0] == fam and not m.startswith("none/"))
        style = dict(marker="o" if fam == "diffskip" else "s", lw=2 if fam == "diffskip" else 1, label=fam)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], **style)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], **style)
    axes[0].set(xlabel="executed denoiser FLOPs (fraction of full)", ylabel="FD to real images (lower is better)")
    axes[1].set(xlabel="executed denoiser FLOPs (fraction of full)", ylabel="PSNR to baseline, dB (capped at 60)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
