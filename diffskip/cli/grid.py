"""`diffskip generate` grid mode: render a prompt grid with a policy (and the exact baseline) into a folder.

Every option is checked before the folder is touched; the folder is locked; an identical rerun of a finished
grid is a no-op; images are rendered in memory and published (temporary files renamed into place) only when the
whole run succeeded, so a failing run never deletes a finished one. Wall-clock times are taken after a warm-up
call, baseline and accelerated runs interleaved (`--repeats`), medians reported.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import time
from pathlib import Path
from statistics import fmean, median
from typing import Any

from ..fileio import open_image
from .checks import check_loaded, identity, precheck
from .common import DEFAULT_PROMPTS, device, load

STATS = "stats.json"


def grid(images: list, cols: int) -> Any:
    """Tile equally sized images into a grid with `cols` columns."""
    from PIL import Image

    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    out = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _grid_png(images: list, cols: int, cell: int) -> bytes:
    from PIL import Image

    rows = math.ceil(len(images) / cols)
    return _png(grid(images, cols).resize((cols * cell, rows * cell), Image.NEAREST))


def expected_files(args: argparse.Namespace) -> list[str]:
    """Return the names a finished grid of these options holds."""
    n = len(args.prompt or DEFAULT_PROMPTS) * args.per_prompt
    return [f"{i:03d}.png" for i in range(n)] + ["grid.png", STATS] + (["grid_baseline.png"] if args.baseline else [])


def generate(args: argparse.Namespace) -> dict:
    """Render the grid (unless this same grid is already finished there) and return its report.

    The report has `"unchanged": True` when the folder already held this finished grid (nothing rendered).
    """
    from ..runfolder import RunFolder

    precheck(args)
    with RunFolder(args.out, "grid") as folder:
        if not args.overwrite:
            first = identity(args)
            folder.check(first, keys=sorted(first))
        pipe = load(args.model, args.policy, None, args.control)
        own = pipe.pipe.scheduler  # the full run a plan was tuned against uses the model's own scheduler
        if args.plan is not None:
            pipe.apply_plan(args.plan, force=getattr(args, "force", False))
        check_loaded(pipe, args)
        full = identity(args, pipe)
        if not args.overwrite:
            folder.check(full)
            if all((folder.out / n).is_file() for n in expected_files(args)):
                report = json.loads((folder.out / STATS).read_text(encoding="utf-8"))
                return {**report, "unchanged": True}
        report, files = render(pipe, args, own)
        folder.publish(files, full)
        return report


@contextlib.contextmanager
def _scheduler(pipe: Any, scheduler: Any):
    saved, pipe.scheduler = pipe.scheduler, scheduler
    try:
        yield
    finally:
        pipe.scheduler = saved


def _call(pipe, prompts: list[str], args, steps: int, images: list | None) -> tuple[list, float]:
    import torch

    g = torch.Generator().manual_seed(args.seed)
    extra = {"height": args.size, "width": args.size} if args.size else {}
    if images:
        extra.update(control_image=images if len(images) > 1 else images[0], control_scale=args.control_scale)
    t0 = time.perf_counter()
    out = pipe(prompts, num_inference_steps=steps, guidance_scale=args.guidance, generator=g,
               num_images_per_prompt=args.per_prompt, **extra)
    return out.images, time.perf_counter() - t0


def render(pipe, args: argparse.Namespace, own_scheduler) -> tuple[dict, dict[str, bytes]]:
    """Render the accelerated grid (and the baseline, interleaved) in memory; return (report, files)."""
    from ..pipeline import DiffSkipPipeline

    pipe.to(device(args.device))
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or DEFAULT_PROMPTS
    cols = args.cols or min(len(prompts) * args.per_prompt, 10)
    cond = [open_image(p, "--control-image") for p in args.control_image or []]
    full = getattr(args, "full_steps", None) or args.steps  # a plan: the full run it was tuned against
    plain = DiffSkipPipeline(pipe.pipe, "never", call_defaults=pipe.call_defaults, control=pipe.control)
    with _scheduler(pipe.pipe, own_scheduler):
        _call(plain, prompts[:1], args, min(2, full), cond[:1])  # warm-up: lazy init and allocation, not timed
    times: dict[str, list[float]] = {"accelerated": [], "baseline": []}
    for _ in range(args.repeats):
        if args.baseline:
            with _scheduler(pipe.pipe, own_scheduler):
                base, secs = _call(plain, prompts, args, full, cond)
            times["baseline"].append(secs)
        images, secs = _call(pipe, prompts, args, args.steps, cond)
        times["accelerated"].append(secs)
    stats = pipe.last_stats
    flops = stats.relative_to(full) if full != args.steps else stats.flops_fraction
    report = {"model": args.model, "policy": str(pipe.policy), "prompts": prompts, "steps": args.steps,
              "full_steps": full, "guidance": args.guidance, "size": args.size, "seed": args.seed,
              "repeats": args.repeats, "seconds": round(median(times["accelerated"]), 3),
              "stats": {k: v for k, v in stats.to_dict().items() if k != "calls"}, "flops_vs_full": flops}
    files = {f"{i:03d}.png": _png(im) for i, im in enumerate(images)}
    files["grid.png"] = _grid_png(images, cols, args.cell)
    if args.baseline:
        from ..metrics.fidelity import psnr

        files["grid_baseline.png"] = _grid_png(base, cols, args.cell)
        value = fmean(psnr(a, b) for a, b in zip(images, base))
        report.update(baseline_seconds=round(median(times["baseline"]), 3),
                      psnr_vs_baseline=round(value, 2) if math.isfinite(value) else None)  # None: identical
        report["speedup_wall"] = round(report["baseline_seconds"] / max(report["seconds"], 1e-9), 2)
    files[STATS] = json.dumps(report, indent=2, allow_nan=False).encode()
    return report, files


def summary(report: dict, out: str) -> list[str]:
    """Return the lines `diffskip generate` prints for a grid report."""
    st, psnr, f = report["stats"], report.get("psnr_vs_baseline"), report.get("flops_vs_full")
    f = st["flops_fraction"] if f is None else f
    against = f" ({report['full_steps']} steps)" if report.get("full_steps", report["steps"]) != report["steps"] else ""
    flops = f"{f:.3f} of full{against} ({1 / f:.2f}x fewer)" if f else "not counted"
    line = (f"policy {report['policy']}: {st['computed']} unit evaluations computed, {st['reused']} reused, "
            f"denoiser FLOPs {flops}, {report['seconds']}s")
    if "baseline_seconds" in report:
        line += (f" (baseline {report['baseline_seconds']}s: {report['speedup_wall']:.2f}x wall-clock, median of "
                 f"{report.get('repeats', 1)} after a warm-up; PSNR vs baseline "
                 f"{'inf (identical)' if psnr is None else psnr} dB)")
    if report.get("unchanged"):
        return [line, f"nothing to do: {out}/ already holds this finished grid (same model, weights and options); "
                      f"nothing was rendered. Add --overwrite to render it again, or use another --out."]
    return [line, f"wrote {Path(out) / 'grid.png'}, the images and {STATS} in {out}/"]
