"""Print and save (docs/engine_tiny.md) executed-FLOP fractions of policies on the tiny offline pipelines."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import diffskip
from diffskip.testing import tiny_pipeline


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pipelines", nargs="+", default=["sd", "pixart"])
    p.add_argument("--policies", nargs="+", default=["never", "interval:every=3", "uniform:speedup=2"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default="docs/engine_tiny.md")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = ["| pipeline | policy | steps | computed | reused | denoiser FLOPs executed |", "|---|---|---|---|---|---|"]
    for kind in args.pipelines:
        pipe = tiny_pipeline(kind)
        extra = {"use_resolution_binning": False, "clean_caption": False} if kind == "pixart" else {}
        for spec in args.policies:
            fast = diffskip.DiffSkipPipeline.from_pipe(pipe, spec)
            fast("a red shoe", num_inference_steps=args.steps, height=16, width=16, output_type="np",
                 generator=torch.Generator().manual_seed(0), **extra)
            st = fast.last_stats
            rows.append(f"| tiny {kind} | `{spec}` | {st.steps} | {st.computed} | {st.reused} | "
                        f"{st.flops_fraction:.3f} |")
            print(rows[-1], flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
