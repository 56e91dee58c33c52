"""How many final steps to compute (the `final=` default): interval:every=3 with final 0..3 on the embedded
models, PSNR of 16 calibration images to the 50-step run. Run: `python -m benchmarks.final_sweep`."""
from __future__ import annotations

import json

import torch

import diffskip
from diffskip.metrics.fidelity import mean_psnr

from .budget import CALIBRATION, render


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for name in ("fashion-sd", "fashion-pixart"):
        fast = diffskip.DiffSkipPipeline.from_pretrained(name)
        fast.set_progress_bar_config(disable=True)
        prompts = CALIBRATION * 2
        conv, _ = render(fast, 20, prompts, 0, "never", 50)
        for spec in ("interval:every=3,final=0", "interval:every=3,final=1", "interval:every=3,final=2",
                     "interval:every=3,final=3", "interval:every=3,forecast=1,final=0",
                     "interval:every=3,forecast=1,final=1", "interval:every=3,forecast=1,final=2"):
            imgs, flops = render(fast, 20, prompts, 0, spec, 20)
            out[f"{name} {spec}"] = {"flops": round(flops, 4), "psnr_50": round(mean_psnr(imgs, conv), 2)}
            print(name, spec, out[f"{name} {spec}"], flush=True)
    with open("docs/final_sweep.json", "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
