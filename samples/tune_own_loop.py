"""Tune steps x caching x analytic jump on your own sampling loop (docs/tuning.md), in seconds on a CPU.

A tiny UNet2DModel with random weights and a Gaussian fit of toy "training images" stand in for your model and
data; with the held-out pixel model of the benchmarks, pass `--pixel` (needs Fashion-MNIST, docs/models.md).
Run: `python samples/tune_own_loop.py [--budget 0.35] [--steps 20] [--pixel]`.
"""
from __future__ import annotations

import argparse

import torch
from diffusers import DDIMScheduler, UNet2DModel

import diffskip


def tiny_model() -> tuple[UNet2DModel, torch.Tensor]:
    """A random 1x16x16 UNet and 200 toy images (smooth blobs) to fit the Gaussian statistics on."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=1, out_channels=1, layers_per_block=1,
                       block_out_channels=(8, 16), norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    grid = torch.linspace(-1, 1, 16)
    centre = torch.rand(200, 2, 1, 1) * 1.2 - 0.6
    images = torch.exp(-((grid[None, :, None] - centre[:, :1]) ** 2 + (grid[None, None] - centre[:, 1:]) ** 2) * 8)
    return unet.eval(), images * 2 - 1  # (200, 1, 16, 16) in [-1, 1]


def main(argv: list[str] | None = None) -> diffskip.tuning.TuneResult:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=0.35)
    p.add_argument("--steps", type=int, default=20, help="the full-step run the plan is measured against")
    p.add_argument("--pixel", action="store_true", help="the held-out pixel model and Fashion-MNIST statistics")
    a = p.parse_args(argv)
    if a.pixel:
        from benchmarks.budget_axes import pixel_stats
        from zoo.pixel import load_pixel

        unet, scheduler = load_pixel()
        stats, shape = pixel_stats(), (16, 1, 32, 32)
    else:
        unet, images = tiny_model()
        scheduler = DDIMScheduler(clip_sample=False)
        stats, shape = diffskip.GaussianStats.from_latents(images, rank=32), (8, 1, 16, 16)
    unet = diffskip.attach(unet)

    def loop(seed: int):
        def run(num_steps: int, skip=None) -> torch.Tensor:   # your loop, changed by one line
            scheduler.set_timesteps(num_steps)
            x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
            timesteps = scheduler.timesteps
            if skip is not None:
                x, timesteps = skip.start(x, scheduler)
            with torch.no_grad():
                for t in timesteps:
                    x = scheduler.step(unet(x, t).sample, t, x).prev_sample
            return x
        return run

    res = diffskip.tune(unet, loop(0), budget=a.budget, full_steps=a.steps, stats=stats, validate=loop(1))
    print(res)
    images = res.apply(loop(0))  # the pick, run with your loop
    print(f"pick: {res.num_steps} steps, policy {res.policy}, jump {res.skip} "
          f"({'prompt-aware' if res.conditional else 'fitted mean'}); {len(res.table)} candidates measured; "
          f"output {tuple(images.shape)}")
    return res


if __name__ == "__main__":
    main()
