"""The held-out model: a pixel-space UNet2DModel (unconditional, epsilon, 1x32x32) on Fashion-MNIST.

It is never used to choose a default or a tuner setting (docs/benchmarks.md, "A model nobody tuned on"):
the defaults were frozen before its first evaluation. Train: `python -m zoo.pixel MINUTES [RUNS_DIR] [OUT]`.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel

from .data import load_split, to_float
from .loop import EMA, Run, train_loop

OUT = Path("benchmarks/models/fashion-pixel")
BETAS = dict(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02, beta_schedule="linear")


def build_pixel_unet() -> UNet2DModel:
    """Build the 0.69M-parameter pixel UNet (16/32/64 channels, attention at 8x8) on 1x32x32."""
    return UNet2DModel(
        sample_size=32, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(16, 32, 64), norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    )


def train_pixel(run: Run) -> dict:
    """Train with the epsilon objective on the linear DDPM schedule; export unet + DDIM scheduler."""
    torch.manual_seed(run.seed)
    images = to_float(load_split("train")[0][:, :1]).to(run.device)  # (N, 1, 32, 32) in [-1, 1]
    alphas = DDPMScheduler(**BETAS).alphas_cumprod.to(run.device)
    unet = build_pixel_unet().to(run.device)

    def step(_: int) -> torch.Tensor:
        x = images[torch.randint(0, len(images), (run.batch_size,), device=run.device)]
        t = torch.randint(0, len(alphas), (run.batch_size,), device=run.device)
        noise = torch.randn_like(x)
        a = alphas[t].view(-1, 1, 1, 1)
        return F.mse_loss(unet(a.sqrt() * x + (1 - a).sqrt() * noise, t).sample, noise)

    info = train_loop(run, unet, step, EMA(unet, 0.999))
    export(unet.cpu(), run.out_dir, info)
    return info


def export(unet: UNet2DModel, out: Path, info: dict) -> None:
    """Save the unet (fp16 weights) and its DDIM scheduler as a diffusers folder with a model card."""
    unet.to(torch.float16).save_pretrained(out / "unet")
    DDIMScheduler(**BETAS, clip_sample=True).save_pretrained(out / "scheduler")
    card = {k: v for k, v in info.items() if k != "loss_curve"}
    (out / "training.json").write_text(json.dumps(info, indent=2))
    (out / "README.md").write_text(
        "# fashion-pixel: the held-out model\n\nUnconditional pixel-space `UNet2DModel` (epsilon, linear betas "
        "1e-4..0.02, 1000 steps) on Fashion-MNIST train images (1x32x32, zero-padded). Trained by "
        "`python -m zoo.pixel`; never used to tune diffskip's defaults.\n\n"
        f"Training: {json.dumps(card)}\n")


def load_pixel(path: Path = OUT, device: str = "cpu") -> tuple[UNet2DModel, DDIMScheduler]:
    """Load the held-out model in float32 with its scheduler."""
    unet = UNet2DModel.from_pretrained(path / "unet").to(device, torch.float32).eval()
    return unet, DDIMScheduler.from_pretrained(path / "scheduler")


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    minutes = float(argv[0]) if argv else 20.0
    runs = Path(argv[1]) if len(argv) > 1 else Path("runs")
    out = Path(argv[2]) if len(argv) > 2 else OUT
    device = "cuda" if torch.cuda.is_available() else "cpu"
    run = Run(name="pixel", device=device, minutes=minutes, seed=7, runs_dir=runs, out_dir=out,
              batch_size=64 if device == "cpu" else 512, lr=4e-4, warmup=300, log_every=50)
    train_pixel(run)


if __name__ == "__main__":
    main(sys.argv[1:])
