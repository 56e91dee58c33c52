"""Benchmark report: derived ratios, the markdown table, the dominance check and Pareto plots."""
from __future__ import annotations

from pathlib import Path

from diffskip.tuning import paired_margin

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


OURS = ("diffskip/", "plan/")  # policies and tuned plans


def dominance(rows: dict[str, dict], spread: float) -> dict[str, str]:
    """For each peer point and fewer-steps row, the diffskip point (policy or tuned plan) that beats it: no more
    FLOPs, a PSNR to the converged run higher by more than twice the paired standard error, FD to real images
    within the seed spread and FD to the converged run within the row's bootstrap spread."""
    ours = {m: r for m, r in rows.items() if m.startswith(OURS) and "psnr_conv" in r}
    verdict = {}
    for m, r in rows.items():
        if m.startswith(OURS + ("none",)) or "error" in r:
            continue
        if r["flops_fraction"] > 0.999:  # skipped nothing: the baseline itself matches it
            verdict[m] = "skips nothing (= baseline)"
            continue
        wins = {}
        for o, q in ours.items():
            if (q["flops_fraction"] <= r["flops_fraction"] + 1e-9 and q["fd"] <= r["fd"] + spread
                    and q["fd_conv"] <= r["fd_conv"] + r["fd_conv_spread"]):
                mean, two_se = paired_margin(q["psnr_conv_images"], r["psnr_conv_images"])
                if mean > two_se:
                    wins[o] = (mean, two_se)
        best = max(wins, key=lambda o: wins[o][0], default=None)
        verdict[m] = (f"{best.removeprefix('diffskip/')} ({wins[best][0]:+.2f} ± {wins[best][1]:.2f} dB)" if best
                      else "**not beaten**")
    return verdict


def table(title: str, rows: dict[str, dict], verdict: dict[str, str], spread: float) -> str:
    """Return one markdown table: method, setting, FLOPs, speed-ups, fidelity to the converged and the full run,
    FD to real images and to the converged run, CLIP, and the diffskip point that beats the row."""
    n_base = sum(1 for m, r in rows.items() if m.startswith("none") and "error" not in r)
    out = [f"### {title}", "",
           f"FD run-to-run spread (max - min over the baseline on {n_base} seed sets): {spread:.3f}. PSNR conv: "
           "mean per-image PSNR to the converged run ± 2 standard errors over images; FD conv: FD to the "
           "converged run's images (same prompts and seeds) ± 2 bootstrap std. Beaten by: margin ± 2 paired "
           "standard errors.", "",
           "| method | setting | FLOPs frac | speed-up | denoiser speed-up | PSNR conv dB | PSNR full dB | SSIM | "
           "FD real | FD conv | CLIP | beaten by (<= FLOPs, > PSNR conv, FD within spreads) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, r in rows.items():
        family, _, setting = m.partition("/")
        if "error" in r:
            out.append(f"| {family} | {setting} | {REFUSED}: {r['error'].replace('|', '/')} | | | | | | | | | |")
            continue
        full = "exact" if r["psnr"] >= 100 else f"{r['psnr']:.2f}"
        if "psnr_conv" in r:
            margin = paired_margin(r["psnr_conv_images"], [0.0] * len(r["psnr_conv_images"]))[1]
            conv = f"{r['psnr_conv']:.2f} ± {margin:.2f}"
        else:
            conv = "-"
        fd_conv = f"{r['fd_conv']:.3f} ± {r['fd_conv_spread']:.3f}" if "fd_conv" in r else "-"
        out.append(f"| {family} | {setting or '-'} | {r['flops_fraction']:.3f} | {r['speedup']:.2f}x | "
                   f"{r['denoiser_speedup']:.2f}x | {conv} | {full} | {r['ssim']:.3f} | {r['fd']:.3f} | "
                   f"{fd_conv} | {r['clip']:.2f} | {verdict.get(m, '')} |")
    return "\n".join(out)


def pareto_plot(rows: dict[str, dict], title: str, path: str | Path) -> None:
    """Plot FD and PSNR against the executed-FLOPs fraction, one colour per method family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    families = sorted({m.partition("/")[0] for m, r in rows.items() if "error" not in r})
    for fam in families:
        pts = sorted((r["flops_fraction"], r["fd"], min(r.get("psnr_conv", float("nan")), 60))
                     for m, r in rows.items()
                     if "error" not in r and m.partition("/")[0] == fam and not m.startswith("none/"))
        ours = fam in ("diffskip", "plan")
        style = dict(marker="o" if ours else "s", lw=2 if ours else 1, label=fam)
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], **style)
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], **style)
    axes[0].set(xlabel="executed denoiser FLOPs (fraction of full)", ylabel="FD to real images (lower is better)")
    axes[1].set(xlabel="executed denoiser FLOPs (fraction of full)", ylabel="PSNR to the converged run, dB")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _family(method: str) -> str:
    family, _, setting = method.partition("/")
    if family == "steps":
        return "fewer steps, DPM-Solver++" if "scheduler=dpm++" in setting else "fewer steps, own scheduler"
    return family


def summary(raw: dict[str, dict]) -> str:
    """Markdown: per cell, how many peer points and fewer-steps rows a diffskip point beats (the rule of
    `dominance`), and every tuned plan beside the best fewer-steps row within the plan's budget."""
    from diffskip.plan_files import load_plan

    cells = sorted(raw)
    counts: dict[str, dict[str, str]] = {}
    plans = ["| cell | plan | FLOPs | PSNR conv dB | PSNR full dB | best fewer-steps row within the budget | FLOPs | "
             "PSNR conv dB | paired margin dB |", "|---|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        rows, spread = raw[cell]["rows"], raw[cell]["fd_spread"]
        verdict = dominance(rows, spread)
        for fam in dict.fromkeys(_family(m) for m in rows if not m.startswith(OURS + ("none",))):
            won = [v for k, v in verdict.items() if _family(k) == fam and not v.startswith("skips")]
            refused = all("error" in q for k, q in rows.items() if _family(k) == fam)
            beaten = sum(not v.startswith("**") for v in won)
            counts.setdefault(fam, {})[cell] = "refused" if refused else f"{beaten}/{len(won)}"
        for m, r in rows.items():
            if not m.startswith("plan/") or "psnr_conv" not in r:
                continue
            p = load_plan(m.partition("=")[2])
            label = f"@{p['budget']}: {p['num_steps']} steps `{p['policy']}` [{p['scheduler'] or 'own'}]"
            steps = [(k, q) for k, q in rows.items() if k.startswith("steps/") and "psnr_conv" in q]
            fewer = [(k, q) for k, q in steps if q["flops_fraction"] <= p["budget"] + 1e-9]
            above = "" if fewer else " (none within; the cheapest)"
            fewer = fewer or [min(steps, key=lambda kq: kq[1]["flops_fraction"])]
            k, q = max(fewer, key=lambda kq: kq[1]["psnr_conv"])
            mean, two_se = paired_margin(r["psnr_conv_images"], q["psnr_conv_images"])
            plans.append(f"| {cell} | {label} | {r['flops_fraction']:.3f} | {r['psnr_conv']:.2f} | {r['psnr']:.2f} | "
                         f"{k.removeprefix('steps/')}{above} | {q['flops_fraction']:.3f} | {q['psnr_conv']:.2f} | "
                         f"{mean:+.2f} ± {two_se:.2f} |")
    head = ["| rows beaten / rows that skip something | " + " | ".join(cells) + " |",
            "|---|" + "---|" * len(cells)]
    body = [f"| {fam} | " + " | ".join(c.get(cell, "-") for cell in cells) + " |" for fam, c in counts.items()]
    return "\n".join(head + body + ["", "Tuned plans (`benchmarks/plans/`, tuned on calibration prompts the grid "
                                        "never evaluates):", ""] + plans)
