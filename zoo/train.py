"""Train the Fashion-MNIST zoo: one model per call, or all of them in dependency order."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from .loop import Run

log = logging.getLogger(__name__)
MODELS = ("clip", "vae", "classifier", "unet", "pixart")
# Per-model defaults: (batch size on CUDA, batch size on CPU, learning rate, warmup steps).
HPARAMS = {
    "clip": (1024, 128, 5e-4, 300),
    "vae": (512, 64, 5e-4, 200),
    "classifier": (512, 128, 2e-3, 100),
    "unet": (1024, 128, 4e-4, 500),
    "pixart": (1024, 128, 4e-4, 500),
}
SEEDS = {name: i for i, name in enumerate(MODELS)}


def make_run(name: str, minutes: float, device: str, runs_dir: Path, out_dir: Path) -> Run:
    """Return the Run of a model with its default hyper-parameters."""
    if name not in HPARAMS:
        raise ValueError(f"unknown model {name!r}; choose one of {MODELS} or 'all'")
    gpu_bs, cpu_bs, lr, warmup = HPARAMS[name]
    cuda = device.startswith("cuda")
    return Run(name=name, device=device, minutes=minutes, seed=SEEDS[name], runs_dir=runs_dir,
               out_dir=out_dir, batch_size=gpu_bs if cuda else cpu_bs, lr=lr, warmup=warmup,
               log_every=200 if cuda else 20)


def train_one(name: str, minutes: float, device: str = "cpu", runs_dir: Path = Path("runs"),
              out_dir: Path = Path("diffskip/assets")) -> dict:
    """Train (or resume) one model for a wall-clock budget and export it."""
    from . import auxiliary, denoise  # heavy imports only when training

    run = make_run(name, minutes, device, runs_dir, out_dir)
    fn = {"clip": auxiliary.train_clip, "vae": auxiliary.train_vae, "classifier": auxiliary.train_classifier,
          "unet": denoise.train_unet, "pixart": denoise.train_pixart}[name]
    info = fn(run)
    (run.dir / "summary.json").write_text(json.dumps(info, indent=2))
    log.info("%s done: %s", name, {k: v for k, v in info.items() if k != "loss_curve"})
    return info


def spawn(names: list[str], minutes: dict[str, float], device: str, runs_dir: Path,
          out_dir: Path) -> list[str]:
    """Train several models concurrently in child processes; return the names that failed."""
    procs = []
    for name in names:
        cmd = [sys.executable, "-m", "zoo.train", name, str(minutes[name]), device,
               str(runs_dir), str(out_dir)]
        procs.append((name, subprocess.Popen(cmd)))
    return [name for name, p in procs if p.wait() != 0]


def train_all(minutes: float, device: str = "cpu", runs_dir: Path = Path("runs"),
              out_dir: Path = Path("diffskip/assets")) -> None:
    """Train CLIP, VAE and classifier together, then UNet and PixArt together."""
    first = 0.25 * minutes
    second = 0.75 * minutes
    budget = {"clip": first, "vae": first, "classifier": 0.6 * first,
              "unet": second, "pixart": second}
    failed = spawn(["clip", "vae", "classifier"], budget, device, runs_dir, out_dir)
    if {"clip", "vae"} & set(failed):
        raise RuntimeError(f"training failed for {failed}; the denoisers need CLIP and the VAE")
    failed += spawn(["unet", "pixart"], budget, device, runs_dir, out_dir)
    if failed:
        raise RuntimeError(f"training failed for {failed}; see the log above")


def main(argv: list[str]) -> None:
    """Entry point of the child processes: name minutes device runs_dir out_dir."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    name, minutes, device, runs_dir, out_dir = argv
    train_one(name, float(minutes), device, Path(runs_dir), Path(out_dir))


if __name__ == "__main__":
    main(sys.argv[1:])
