"""`diffskip generate`: render a prompt grid with a policy (and the exact baseline), or a prompt file."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from . import UsageError, policy_spec

DEFAULT_MODEL = "fashion-sd"
DEFAULT_POLICY = "interval:every=3"
DEFAULT_PROMPTS = ["a photo of a t-shirt", "a pair of trousers, product shot", "a pullover on white",
                   "a dress, studio photo", "a photo of a coat", "a sandal, catalogue image", "a shirt, product shot",
                   "a photo of a sneaker", "a bag on white", "an ankle boot, studio photo"]


def load(model: str, policy: str, control: str | None = None):
    """Load `model` (an embedded name, a diffusers folder, a hub id, or 'tiny-sd') wrapped with `policy`."""
    from ..pipeline import DiffSkipPipeline, resolve_model

    if model == "tiny-sd":
        from ..testing import tiny_pipeline

        if control:
            raise UsageError("--control needs a PixArt-style model (e.g. --model fashion-pixart); tiny-sd has none.")
        return DiffSkipPipeline(tiny_pipeline("sd"), policy)
    path = Path(resolve_model(model))
    if path.exists() and not (path / "model_index.json").exists():
        raise UsageError(f"--model {model!r}: {path} has no model_index.json; allowed: an embedded name "
                         f"(fashion-sd, fashion-pixart), a diffusers pipeline folder, a hub id, or tiny-sd.")
    return DiffSkipPipeline.from_pretrained(str(path) if path.exists() else model, policy, control=control)


def device(name: str) -> str:
    """Return the torch device for --device ('auto': CUDA when available)."""
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def grid(images: list, cols: int) -> Any:
    """Tile equally sized images into a grid with `cols` columns."""
    from PIL import Image

    w, h = images[0].size
    rows = math.ceil(len(images) / cols)
    out = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out


def _save_grid(images: list, cols: int, cell: int, path: Path) -> None:
    from PIL import Image

    rows = math.ceil(len(images) / cols)
    grid(images, cols).resize((cols * cell, rows * cell), Image.NEAREST).save(path)


def _render(pipe, prompts: list[str], args) -> tuple[list, float]:
    import torch

    g = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    extra = {"height": args.size, "width": args.size} if args.size else {}
    if getattr(args, "control_image", None):
        extra.update(control_image=args.control_image, control_scale=args.control_scale)
    out = pipe(prompts, num_inference_steps=args.steps, guidance_scale=args.guidance, generator=g,
               num_images_per_prompt=args.per_prompt, **extra)
    return out.images, time.perf_counter() - t0


def generate(args: argparse.Namespace) -> dict:
    """Render the prompt grid accelerated (and unaccelerated with --baseline); write PNGs and stats.json."""
    from ..pipeline import DiffSkipPipeline

    if bool(args.control) != bool(args.control_image):
        raise UsageError("--control (a control model folder, e.g. controlnets/fashion-pixart-relactrl-edges) and "
                         "--control-image (the condition image) go together; pass both or neither.")
    pipe = load(args.model, args.policy, args.control)
    pipe.to(device(args.device))
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or DEFAULT_PROMPTS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cols = args.cols or min(len(prompts) * args.per_prompt, 10)
    report = {"model": args.model, "policy": str(pipe.policy), "prompts": prompts, "steps": args.steps}
    if args.baseline:  # first: it also warms up and measures the full-pass FLOPs once
        plain = DiffSkipPipeline(pipe.pipe, "never", call_defaults=pipe.call_defaults, control=pipe.control)
        base, bsecs = _render(plain, prompts, args)
        _save_grid(base, cols, args.cell, out / "grid_baseline.png")
        report["baseline_seconds"] = round(bsecs, 3)
    images, secs = _render(pipe, prompts, args)
    for i, im in enumerate(images):
        im.save(out / f"{i:03d}.png")
    _save_grid(images, cols, args.cell, out / "grid.png")
    report.update(seconds=round(secs, 3),
                  stats={k: v for k, v in pipe.last_stats.to_dict().items() if k != "calls"})
    if args.baseline:
        from statistics import fmean

        from ..metrics.fidelity import psnr

        report["psnr_vs_baseline"] = round(fmean(psnr(a, b) for a, b in zip(images, base)), 2)
    (out / "stats.json").write_text(json.dumps(report, indent=2))
    return report


def run_batch(args: argparse.Namespace) -> int:
    """Generate every row of `--prompts` into `--out` (resumable, split across accelerate processes).

    Returns the exit status: 1 when some rows were bad (the good ones are still generated), else 0.
    """
    from accelerate import PartialState
    from tqdm import tqdm

    from ..batch import MANIFEST, BatchRun, read_prompts

    if args.prompt or args.per_prompt != 1:
        raise UsageError("--prompts (batch mode) reads its prompts from the file, one image per row; allowed "
                         "with it: no --prompt / --per-prompt. Fix: drop them, or drop --prompts for the grid.")
    state = PartialState(cpu=device(args.device) == "cpu")  # gloo on CPU; without cpu=True accelerate stays 1 process
    rows, bad = read_prompts(args.prompts, base_seed=args.seed, width=args.size, height=args.size)
    if state.is_main_process:
        for b in bad:
            print(f"error: {b} (row skipped; fix it and run again: finished images are kept)", file=sys.stderr)
    pipe = load(args.model, args.policy, args.control)
    pipe.to(state.device)
    pipe.set_progress_bar_config(disable=True)
    job = BatchRun(pipe, args.out, steps=args.steps, guidance=args.guidance, batch_size=args.batch_size, state=state)
    mine = job.prepare(rows)
    todo = sum(r.index not in job.done for b in mine for r in b)
    with tqdm(total=todo, unit="img", desc=f"rank {state.process_index}", disable=not state.is_main_process) as bar:
        for _ in job.run(mine):
            bar.update(1)
    manifest = job.finish()
    if state.is_main_process:
        print(f"{len(manifest)} of {len(rows) + len(bad)} rows done in {args.out}/ ({len(job.done)} were already "
              f"there; {state.num_processes} process(es)); manifest {Path(args.out) / MANIFEST}")
        for b in bad:
            print(f"error: {b}", file=sys.stderr)
    return 1 if bad else 0


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `generate` options."""
    g.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, diffusers folder, hub id, or tiny-sd")
    g.add_argument("--policy", default=DEFAULT_POLICY, type=policy_spec, help="policy spec string")
    g.add_argument("--prompt", action="append", help="a prompt (repeat for several; default: 10 garments)")
    g.add_argument("--prompts", default=None,
                   help="prompt file (.txt: one a line; .jsonl: {prompt, seed, negative_prompt, width, height, "
                        "control_image}): "
                        "batch mode, resumable, writes {index:06d}.png + manifest.jsonl; --seed is the base seed")
    g.add_argument("--batch-size", type=int, default=4, help="batch mode: images per pipeline call")
    g.add_argument("--steps", type=int, default=25)
    g.add_argument("--guidance", type=float, default=4.0)
    g.add_argument("--per-prompt", type=int, default=1, help="images per prompt")
    g.add_argument("--size", type=int, default=None, help="height = width in pixels (default: the model's)")
    g.add_argument("--seed", type=int, default=0, help="grid: generator seed; batch: base seed (+ row index)")
    g.add_argument("--cols", type=int, default=None)
    g.add_argument("--cell", type=int, default=96, help="pixels per grid cell (nearest-neighbour upscale)")
    g.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also render the unaccelerated grid and report PSNR against it")
    g.add_argument("--control", default=None, help="control model folder (controlnets/<name>), with --control-image")
    g.add_argument("--control-image", default=None, help="condition image (e.g. an edge map) for --control")
    g.add_argument("--control-scale", type=float, default=1.0, help="multiplies the control residuals")
    g.add_argument("--device", default="auto", help="torch device (auto: cuda when available, else cpu)")
    g.add_argument("--out", default="out/generate")


def run(args: argparse.Namespace) -> int:
    """Run `diffskip generate` and print its one-line summary (exit status 1 when prompt rows were bad)."""
    if args.prompts:
        return run_batch(args)
    report = generate(args)
    st = report["stats"]
    print(f"policy {report['policy']}: {st['computed']} unit evaluations computed, {st['reused']} reused, "
          f"denoiser FLOPs {st['flops_fraction']:.3f} of full, {report['seconds']}s"
          + (f" (baseline {report['baseline_seconds']}s, PSNR vs baseline {report['psnr_vs_baseline']} dB)"
             if "baseline_seconds" in report else ""))
    print(f"wrote {Path(args.out) / 'grid.png'}, the images and stats.json in {args.out}/")
    return 0
