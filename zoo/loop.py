"""Resumable training loop (a time or a step budget) with EMA and periodic checkpoints."""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One model's training run: where it checkpoints, its device, budget and seed."""

    name: str
    device: str = "cpu"
    minutes: float = 1.0
    seed: int = 0
    runs_dir: Path = Path("runs")
    out_dir: Path = Path("diffskip/assets")
    batch_size: int = 256
    lr: float = 3e-4
    warmup: int = 200
    ckpt_minutes: float = 3.0
    log_every: int = 100
    extra: dict = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        """Return the run's checkpoint folder."""
        return self.runs_dir / self.name

    def autocast(self):
        """Return bf16 autocast on CUDA, a disabled context elsewhere."""
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.startswith("cuda"))


class EMA:
    """Exponential moving average of parameters with a warm-up on the decay."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = [p.detach().clone() for p in model.parameters()]
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current parameters into the average."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in model.parameters()], 1 - decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters into a model."""
        for s, p in zip(self.shadow, model.parameters()):
            p.copy_(s)


def save_ckpt(run: Run, state: dict) -> None:
    """Write the checkpoint atomically."""
    run.dir.mkdir(parents=True, exist_ok=True)
    tmp = run.dir / "ckpt.pt.tmp"
    torch.save(state, tmp)
    tmp.replace(run.dir / "ckpt.pt")


def resume(run: Run, model: nn.Module, opt, sched, ema: EMA | None) -> dict:
    """Load the run's checkpoint into model/optimiser/EMA if there is one; return the loop state."""
    path = run.dir / "ckpt.pt"
    if not path.exists():
        return {"step": 0, "elapsed": 0.0, "losses": []}
    ckpt = torch.load(path, map_location=run.device, weights_only=False)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    sched.load_state_dict(ckpt["sched"])
    if ema is not None:
        ema.shadow, ema.updates = ckpt["ema"], ckpt["ema_updates"]
    log.info("%s: resumed at step %d (%.0f s)", run.name, ckpt["state"]["step"],
             ckpt["state"]["elapsed"])
    return ckpt["state"]


def train_loop(run: Run, model: nn.Module, step_fn: Callable[[int], torch.Tensor],
               ema: EMA | None = None, steps: int | None = None) -> dict:
    """Optimise step_fn's loss until the run's time budget is spent (or for exactly `steps` optimiser steps,
    a budget shared by models that must be compared); return a summary. Only trainable parameters train."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=run.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / run.warmup))
    state = resume(run, model, opt, sched, ema)
    torch.manual_seed(run.seed + state["step"])
    start, last_ckpt = time.time() - state["elapsed"], time.time()
    acc = torch.zeros((), device=run.device)  # summed on device: no sync per step
    model.train()
    while state["step"] < steps if steps is not None else time.time() - start < run.minutes * 60:
        loss = step_fn(state["step"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if ema is not None:
            ema.update(model)
        acc += loss.detach()
        state["step"] += 1
        if state["step"] % run.log_every == 0:
            log_loss(run, state, acc, time.time() - start)
        if time.time() - last_ckpt > run.ckpt_minutes * 60:
            state["elapsed"] = time.time() - start
            save_ckpt(run, ckpt_state(model, opt, sched, ema, state))
            last_ckpt = time.time()
    state["elapsed"] = time.time() - start
    save_ckpt(run, ckpt_state(model, opt, sched, ema, state))
    if ema is not None:
        ema.copy_to(model)
    model.eval()
    return summary(run, state)


def log_loss(run: Run, state: dict, acc: torch.Tensor, elapsed: float) -> None:
    """Record and log the mean loss of the last log_every steps, then reset the accumulator."""
    mean = acc.item() / run.log_every
    acc.zero_()
    state["losses"].append([state["step"], round(elapsed, 1), mean])
    log.info("%s step %d t=%.0fs loss %.5f", run.name, state["step"], elapsed, mean)


def ckpt_state(model: nn.Module, opt, sched, ema: EMA | None, state: dict) -> dict:
    """Collect everything needed to resume."""
    out = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
           "state": state}
    if ema is not None:
        out["ema"], out["ema_updates"] = ema.shadow, ema.updates
    return out


def summary(run: Run, state: dict) -> dict:
    """Return and store the run summary (steps, wall time, final loss, settings)."""
    losses = state["losses"]
    info = {"model": run.name, "seed": run.seed, "steps": state["step"],
            "wall_s": round(state["elapsed"], 1), "batch_size": run.batch_size, "lr": run.lr,
            "device": run.device, "final_loss": losses[-1][2] if losses else None,
            "loss_curve": losses[:: max(1, len(losses) // 20)] + losses[-1:], **run.extra}
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / "summary.json").write_text(json.dumps(info, indent=2))
    return info
