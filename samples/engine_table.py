"""Print and save a table of policies: executed denoiser FLOPs, reuse counts and PSNR against `never`.

Pipelines are tiny offline ones (`tiny:sd`, `tiny:pixart`, ... random weights) or diffusers folders
(e.g. `diffskip/assets/fashion-sd`). Example: python samples/engine_table.py --pipelines tiny:sd tiny:pixart
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import diffskip
from diffskip.metrics.fidelity import psnr
from diffskip.testing import tiny_pipeline

PROMPTS = ["a photo of a t-shirt", "a photo of a sneaker", "a dress, studio photo", "an ankle boot, product shot"]


def _load(name: str):
    if name.startswith("tiny:"):
        return tiny_pipeline(name[5:]), {"height": 16, "width": 16}
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    return pipe, {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pipelines", nargs="+", default=["tiny:sd", "tiny:pixart"])
    p.add_argument("--policies", nargs="+", default=["never", "interval:every=3", "uniform:speedup=2"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default="docs/engine_tiny.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = ["| pipeline | policy | steps | computed | reused | denoiser FLOPs executed | PSNR vs never (dB) |",
            "|---|---|---|---|---|---|---|"]
    for name in args.pipelines:
        pipe, size = _load(name)
        extra = {"use_resolution_binning": False, "clean_caption": False} if "PixArt" in type(pipe).__name__ else {}
        ref = None
        for spec in args.policies:
            fast = diffskip.DiffSkipPipeline.from_pipe(pipe, spec)
            img = fast(PROMPTS, num_inference_steps=args.steps, output_type="np",
                       generator=torch.Generator().manual_seed(0), **size, **extra).images
            ref = img if ref is None else ref
            st = fast.last_stats
            rows.append(f"| {name} | `{spec}` | {st.steps} | {st.computed} | {st.reused} | "
                        f"{st.flops_fraction:.3f} | {psnr(img, ref, peak=1.0):.2f} |")
            print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
