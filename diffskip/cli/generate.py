"""`diffskip generate`: render a prompt grid with a policy (and the exact baseline), or a prompt file."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import DiffSkipError
from . import UsageError, policy_spec
from . import options as opt
from .checks import check_loaded, identity, precheck

DEFAULT_MODEL = "fashion-sd"
DEFAULT_POLICY = "interval:every=3"
DEFAULT_PROMPTS = ["a photo of a t-shirt", "a pair of trousers, product shot", "a pullover on white",
                   "a dress, studio photo", "a photo of a coat", "a sandal, catalogue image", "a shirt, product shot",
                   "a photo of a sneaker", "a bag on white", "an ankle boot, studio photo"]


def load(model: str, policy: str, plan: str | None = None, control: str | None = None):
    """Load `model` (an embedded name, a diffusers folder, a hub id, or 'tiny-sd') wrapped with `policy`
    (or the tuned `plan` file's policy, scheduler and jump), with an optional control model."""
    from ..pipeline import DiffSkipPipeline, resolve_model

    if model == "tiny-sd":
        from ..testing import tiny_pipeline

        if control:
            raise UsageError("--control needs a PixArt-style model (e.g. --model fashion-pixart); tiny-sd has none.")
        fast = DiffSkipPipeline(tiny_pipeline("sd"), policy)
        if plan is not None:
            fast.apply_plan(plan)
        return fast
    path = Path(resolve_model(model))
    allowed = "allowed: an embedded name (fashion-sd, fashion-pixart), a diffusers pipeline folder, a hub id, or tiny-sd"
    if path.exists() and not (path / "model_index.json").exists():
        raise UsageError(f"--model {model!r}: {path} has no model_index.json; {allowed}.")
    try:
        return DiffSkipPipeline.from_pretrained(str(path) if path.exists() else model, policy, plan=plan,
                                                control=control)
    except DiffSkipError:
        raise
    except Exception as exc:  # noqa: BLE001  (diffusers, hub and safetensors raise many kinds: one line each)
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"--model {model!r}: cannot load it ({type(exc).__name__}: {first}); {allowed}. Fix the "
                         f"name, or re-download a damaged folder.") from None


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
    """Render the prompt grid accelerated (and unaccelerated with --baseline); write PNGs and stats.json.

    The folder must be new, hold this same grid (its files are replaced), or be cleared with --overwrite.
    """
    from ..pipeline import DiffSkipPipeline
    from ..runfolder import RunFolder

    if bool(args.control) != bool(args.control_image):
        raise UsageError("--control (a control model folder, e.g. controlnets/fashion-pixart-relactrl-edges) and "
                         "--control-image (the condition image) go together; pass both or neither.")
    precheck(args)
    with RunFolder(args.out, "grid", args.overwrite) as folder:
        folder.check(identity(args), keys=sorted(identity(args)))
        pipe = load(args.model, args.policy, args.plan, args.control)
        check_loaded(pipe, args)
        full = identity(args, pipe)
        folder.check(full)
        folder.clear()  # the same grid again: its old files go, so nothing stale stays beside the new stats.json
        folder.record(full)
        return _render_grid(pipe, args, Path(args.out), DiffSkipPipeline)


def _render_grid(pipe, args: argparse.Namespace, out: Path, wrapper) -> dict:
    pipe.to(device(args.device))
    pipe.set_progress_bar_config(disable=True)
    prompts = args.prompt or DEFAULT_PROMPTS
    cols = args.cols or min(len(prompts) * args.per_prompt, 10)
    report = {"model": args.model, "policy": str(pipe.policy), "prompts": prompts, "steps": args.steps,
              "guidance": args.guidance, "size": args.size, "seed": args.seed}
    if args.baseline:  # first: it also warms up and measures the full-pass FLOPs once
        plain = wrapper(pipe.pipe, "never", call_defaults=pipe.call_defaults, control=pipe.control)
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

        value = fmean(psnr(a, b) for a, b in zip(images, base))
        report["psnr_vs_baseline"] = round(value, 2) if math.isfinite(value) else None  # None: identical images
    (out / "stats.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    return report


def run_batch(args: argparse.Namespace) -> int:
    """Generate every row of `--prompts` into `--out` (resumable, split across accelerate processes).

    Returns the exit status: 1 when some rows were bad (the good ones are still generated), else 0. The
    end-of-run report prints however the run ends (finished, failed, or interrupted).
    """
    from accelerate import PartialState

    from ..batch import BatchRun, manifest_rows, read_prompts, row_differences
    from ..runfolder import RunFolder, refuse

    if args.prompt or args.per_prompt != 1:
        raise UsageError("--prompts (batch mode) reads its prompts from the file, one image per row; allowed "
                         "with it: no --prompt / --per-prompt. Fix: drop them, or drop --prompts for the grid.")
    rows, bad = read_prompts(args.prompts, base_seed=args.seed, width=args.size, height=args.size)
    precheck(args)
    state = PartialState(cpu=device(args.device) == "cpu")  # gloo on CPU; without cpu=True accelerate stays 1 process
    folder = RunFolder(args.out, "batch", args.overwrite)
    if state.is_main_process:
        for b in bad:
            print(f"error: {b} (row skipped; fix it and run again: finished images are kept)", file=sys.stderr)
        folder.open()
    job = None
    try:
        if state.is_main_process:
            folder.check(identity(args), keys=sorted(identity(args)))
            diffs = row_differences(manifest_rows(Path(args.out)), rows)
            if diffs:
                raise refuse(Path(args.out), diffs, "images of other prompt rows")
        job = False  # checks passed: from here on the end-of-run report prints however the run ends
        pipe = load(args.model, args.policy, args.plan, args.control)
        check_loaded(pipe, args)
        if state.is_main_process:
            folder.record(identity(args, pipe))
        pipe.to(state.device)
        pipe.set_progress_bar_config(disable=True)
        job = BatchRun(pipe, args.out, steps=args.steps, guidance=args.guidance, batch_size=args.batch_size,
                       state=state, model=args.model)
        _run_rows(job, rows, state)
        return 1 if bad else 0
    finally:
        folder.close()
        if job is not None and state.is_main_process:
            _report(args, job or None, state, len(rows) + len(bad), bad)


def _run_rows(job, rows: list, state) -> None:
    from tqdm import tqdm

    mine = job.prepare(rows)
    todo = sum(r.index not in job.done for b in mine for r in b)
    with tqdm(total=todo, unit="img", desc=f"rank {state.process_index}", disable=not state.is_main_process) as bar:
        for _ in job.run(mine):
            bar.update(1)
    job.finish()


def _report(args: argparse.Namespace, job, state, total: int, bad: list) -> None:
    """Print the end-of-run report (also after a failure or Ctrl-C) and the bad rows again."""
    from ..batch import MANIFEST, read_done

    done = len(read_done(Path(args.out)))
    made, there = (job.made, len(getattr(job, "done", ()))) if job else (0, done)
    redone = f"; {len(job.redone)} damaged image(s) made again: {', '.join(job.redone[:3])}" if job and job.redone else ""
    print(f"{done} of {total} rows done in {args.out}/ ({made} made now, {there} were already there{redone}; "
          f"{state.num_processes} process(es)); manifest {Path(args.out) / MANIFEST}")
    for b in bad:
        print(f"error: {b}", file=sys.stderr)


def add_arguments(g: argparse.ArgumentParser) -> None:
    """Add the `generate` options."""
    g.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, diffusers folder, hub id, or tiny-sd")
    g.add_argument("--policy", default=DEFAULT_POLICY, type=policy_spec, help="policy spec string")
    g.add_argument("--prompt", action="append", help="a prompt (repeat for several; default: 10 garments)")
    g.add_argument("--prompts", default=None,
                   help="prompt file (.txt: one a line; .jsonl: {prompt, seed, negative_prompt, width, height, "
                        "control_image}): "
                        "batch mode, resumable, writes {index:06d}.png + manifest.jsonl; --seed is the base seed")
    g.add_argument("--batch-size", type=opt.int_in(1, 256), default=4, help="batch mode: images per pipeline call")
    g.add_argument("--steps", type=opt.steps, default=None,
                   help="denoising steps, 1 to what the scheduler allows (default: the --plan's, else 25)")
    g.add_argument("--plan", default=None, help="a plan file from `diffskip tune` (policy, steps, scheduler, "
                                                 "jump); replaces --policy")
    g.add_argument("--guidance", type=opt.guidance, default=4.0, help="guidance scale in [1, 100] (1: no CFG)")
    g.add_argument("--per-prompt", type=opt.int_in(1, 64), default=1, help="images per prompt")
    g.add_argument("--size", type=opt.size, default=None,
                   help="height = width in pixels, a multiple of 8 up to 2048 (default: the model's)")
    g.add_argument("--seed", type=opt.seed, default=0, help="grid: generator seed; batch: base seed (+ row index)")
    g.add_argument("--cols", type=opt.int_in(1, 100), default=None)
    g.add_argument("--cell", type=opt.int_in(1, 1024), default=96, help="pixels per grid cell (nearest-neighbour upscale)")
    g.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also render the unaccelerated grid and report PSNR against it")
    g.add_argument("--control", default=None, help="control model folder (controlnets/<name>), with --control-image")
    g.add_argument("--control-image", default=None, help="condition image (e.g. an edge map) for --control")
    g.add_argument("--control-scale", type=float, default=1.0, help="multiplies the control residuals")
    g.add_argument("--device", default="auto", help="torch device (auto: cuda when available, else cpu)")
    g.add_argument("--out", default="out/generate",
                   help="output folder; it records the run that made it (run.json) and refuses another run")
    g.add_argument("--overwrite", action="store_true",
                   help="delete the diffskip files of another run in --out first (other files stay)")


def run(args: argparse.Namespace) -> int:
    """Run `diffskip generate` and print its one-line summary (exit status 1 when prompt rows were bad)."""
    if args.plan is not None:  # a bad plan fails before the model loads
        from ..plan_files import load_plan
        from ..policies import parse

        if args.policy != str(parse(DEFAULT_POLICY)):
            raise UsageError(f"--plan {args.plan} and --policy {args.policy} both set the policy; allowed: one of them.")
        data = load_plan(args.plan)
        args.steps, args.policy = args.steps or data["num_steps"], data["policy"]
    args.steps = args.steps or 25
    if args.prompts:
        return run_batch(args)
    report = generate(args)
    st = report["stats"]
    psnr = report.get("psnr_vs_baseline")
    print(f"policy {report['policy']}: {st['computed']} unit evaluations computed, {st['reused']} reused, "
          f"denoiser FLOPs {st['flops_fraction']:.3f} of full, {report['seconds']}s"
          + (f" (baseline {report['baseline_seconds']}s, PSNR vs baseline "
             f"{'inf (identical)' if psnr is None else psnr} dB)" if "baseline_seconds" in report else ""))
    print(f"wrote {Path(args.out) / 'grid.png'}, the images and stats.json in {args.out}/")
    return 0
