"""The control table: no control, full ControlNet, RelaCtrl, uniform TDSM (ablation), RelaCtrl + caching.

Every row runs through DiffSkipPipeline (control=, control_image=, policy=) on the same held-out edge
conditions and prompts, for several noise seeds. Writes docs/control_table.{json,md}, docs/control_grid.png
and the model cards. Run: python -m benchmarks.control_table
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from benchmarks.control_cards import write_cards
from benchmarks.control_eval import STEPS, Judge, flops_per_call, generate
from diffskip import DiffSkipPipeline
from diffskip.control.inject import ControlRun, controlling, load_control
from zoo.control import load_base

log = logging.getLogger(__name__)
ROWS = (("no control", None, "never"), ("full ControlNet", "fashion-pixart-controlnet-edges", "never"),
        ("RelaCtrl", "fashion-pixart-relactrl-edges", "never"),
        ("TDSM uniform, no sizing (ablation)", "fashion-pixart-tdsm-uniform-edges", "never"),
        ("RelaCtrl + interval:every=2", "fashion-pixart-relactrl-edges", "interval:every=2"))


@torch.no_grad()
def call_seconds(pipe, model, tokens, repeats: int = 5, batch: int = 50) -> float:
    """Return the fastest of `repeats` denoiser calls on a guidance batch (2 x batch), with control if given."""
    tr = pipe.transformer
    x = torch.randn(2 * batch, 4, tr.config.sample_size, tr.config.sample_size)
    kw = dict(encoder_hidden_states=torch.randn(2 * batch, 16, tr.config.caption_channels),
              timestep=torch.full((2 * batch,), 500), added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    best = float("inf")
    for _ in range(repeats):
        run = ControlRun(model, tokens[:batch]) if model is not None else None
        start = time.perf_counter()
        if run is None:
            tr(x, **kw)
        else:
            with controlling(tr, run):
                tr(x, **kw)
        best = min(best, time.perf_counter() - start)
    return best


def evaluate_row(pipe, judge, tokens, name, folder, policy, seeds, root: Path) -> dict:
    model = load_control(root / folder) if folder else None
    fast = DiffSkipPipeline(pipe, policy, control=model)
    extra = {} if model is None else {"control_image": (judge.cond_images + 1) / 2}
    runs, images0, flops_fraction = [], None, None
    for seed in seeds:
        images, secs = generate(fast, judge.prompts, seed, **extra)
        runs.append({**judge.score(images), "seconds": secs})
        images0 = images if images0 is None else images0
        flops_fraction = fast.last_stats.flops_fraction
        log.info("%s seed %d: %s", name, seed, runs[-1])
    fast.detach()
    fds = [r["fd"] for r in runs]
    row = {"name": name, "model": folder, "policy": policy, "runs": runs,
           "fd": statistics.fmean(fds), "fd_std": statistics.stdev(fds) if len(fds) > 1 else 0.0,
           **{k: statistics.fmean(r[k] for r in runs) for k in ("edge_f1", "hausdorff", "clip", "accuracy", "seconds")},
           "params": 0 if model is None else sum(p.numel() for p in model.parameters()),
           "flops_added": (0 if model is None
                           else flops_per_call(pipe, model, tokens) - flops_per_call(pipe, None, None)),
           "call_seconds": call_seconds(pipe, model, tokens), "base_flops_fraction": flops_fraction}
    return row, images0


def markdown(rows: list[dict], n: int, seeds) -> str:
    base = rows[0]
    head = ("| model | added params | added MFLOPs / step / image | denoiser-call overhead | generation time | "
            f"FD (mean ± std, {len(seeds)} seeds) | CLIP score | edge F1 | Hausdorff (px) | prompt following |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        flops = f"{r['flops_added'] / 1e6:.1f}" + (f" (base blocks at {r['base_flops_fraction']:.2f})"
                                                    if r["policy"] != "never" else "")
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.3f}M | {flops} | "
                     f"{100 * (r['call_seconds'] / base['call_seconds'] - 1):+.0f}% | "
                     f"{r['seconds'] / base['seconds']:.2f}x | {r['fd']:.2f} ± {r['fd_std']:.2f} | {r['clip']:.2f} | "
                     f"{r['edge_f1']:.3f} | {r['hausdorff']:.2f} | {100 * r['accuracy']:.1f}% |")
    return head + "\n".join(lines) + f"\n\n{n} held-out test conditions (edges) x {len(seeds)} seeds, {STEPS} steps.\n"


def grid(rows_images: dict, judge, path: Path) -> None:
    """Save condition | full ControlNet | RelaCtrl | no control, one row per class (first image of each)."""
    from PIL import Image

    cols = [((judge.cond_images + 1) * 127.5).round().to(torch.uint8), rows_images["full ControlNet"],
            rows_images["RelaCtrl"], rows_images["no control"]]
    per = len(judge.prompts) // 10
    cell = 96
    out = Image.new("RGB", (len(cols) * cell, 10 * cell))
    for r in range(10):
        for c, imgs in enumerate(cols):
            im = Image.fromarray(imgs[r * per].permute(1, 2, 0).numpy()).resize((cell, cell), Image.NEAREST)
            out.paste(im, (c * cell, r * cell))
    out.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--root", type=Path, default=Path("controlnets"))
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pipe = load_base()
    judge = Judge(args.n)
    tokens = judge.tokens(pipe)
    rows, images = [], {}
    for name, folder, policy in ROWS:
        row, imgs = evaluate_row(pipe, judge, tokens, name, folder, policy, args.seeds, args.root)
        rows.append(row)
        images[name] = imgs
    result = {"n_images": args.n, "seeds": args.seeds, "steps": STEPS, "rows": rows}
    (args.out / "control_table.json").write_text(json.dumps(result, indent=1))
    (args.out / "control_table.md").write_text(markdown(rows, args.n, args.seeds))
    grid(images, judge, args.out / "control_grid.png")
    write_cards(args.root, result)


if __name__ == "__main__":
    main()
