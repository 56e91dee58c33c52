"""Inject a control model into an attached denoiser: a residual added at its base blocks' outputs.

Injection rule: at every base block with a branch, the branch runs on the block's input and its residual
is added to whatever the block returns. Under a caching policy a skipped base block replays its cached
*base* residual (cached without control), and the control residual is still computed fresh and added on
top: the light branch runs every step, so the condition keeps steering while the base blocks are reused.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..engine import hooks
from ..errors import SessionError, short
from .models import FullControlNetModel, RelaCtrlModel

__all__ = ["ControlRun", "controlling", "condition_tokens", "load_control", "as_condition_images", "CONTROL_MODELS"]

CONTROL_MODELS = {"RelaCtrlModel": RelaCtrlModel, "FullControlNetModel": FullControlNetModel}


def load_control(path: str | Path, **kwargs) -> nn.Module:
    """Load a control model: a shipped branch's name or a folder saved with save_pretrained (config names the class)."""
    from ..assets.controls import control_path

    config = control_path(path) / "config.json"
    path = config.parent
    if not config.is_file():
        raise FileNotFoundError(f"no control model at {path} (config.json missing); pass a folder under "
                                f"controlnets/, e.g. controlnets/fashion-pixart-relactrl-edges.")
    name = json.loads(config.read_text(encoding="utf-8")).get("_class_name")
    if name not in CONTROL_MODELS:
        raise ValueError(f"{config}: _class_name={name!r} is not a control model; allowed: {sorted(CONTROL_MODELS)}.")
    return CONTROL_MODELS[name].from_pretrained(str(path), **kwargs).eval()


def as_condition_images(image: Any, size: int) -> torch.Tensor:
    """Return condition images (B, 3, size, size) in [-1, 1] from a PIL image, a list of them, or a tensor.

    Tensors: uint8 [0, 255] or float [0, 1], (C, H, W) or (B, C, H, W) with 1 or 3 channels.
    """
    import numpy as np
    from PIL import Image

    if isinstance(image, (str, Path)):
        image = Image.open(image)
    if isinstance(image, Image.Image):
        image = [image]
    if isinstance(image, (list, tuple)):
        if not all(isinstance(i, Image.Image) for i in image):
            kinds = short([type(i).__name__ for i in image])
            raise TypeError(f"control_image list items must be PIL images, got {kinds}.")
        image = torch.stack([torch.from_numpy(np.array(i.convert("RGB").resize((size, size)))).permute(2, 0, 1)
                             for i in image])
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"control_image must be a path, PIL image, list of PIL images or tensor; got "
                        f"{type(image).__name__}.")
    x = image[None] if image.ndim == 3 else image
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"control_image tensor must be (C, H, W) or (B, C, H, W) with 1 or 3 channels, got "
                         f"{tuple(image.shape)}.")
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.expand(-1, 3, -1, -1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x * 2 - 1


@torch.no_grad()
def condition_tokens(vae: nn.Module, transformer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Encode condition images: frozen VAE (posterior mean), then the base's patch + position embedding."""
    p = next(transformer.parameters())
    z = vae.encode(images.to(p.device, next(vae.parameters()).dtype)).latent_dist.mean
    z = (z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor
    return transformer.pos_embed(z.to(p.dtype))  # (B, L, D)


class ControlRun(hooks.Hook):
    """The control link of an attached denoiser's hook chain: add a control branch's residual at its blocks.

    It sits outside the caching session's link, so a replayed base block returns its cached base value and
    the control residual is still computed fresh and added on top.

    Args:
        model: a RelaCtrlModel or FullControlNetModel.
        cond: condition tokens (B_c, L, D); B_c is 1 (broadcast) or divides the denoiser's batch (CFG).
        scale: multiplies every control residual (0 gives the base model).
        off: base block indices whose branch is switched off (relevance scoring): no residual, state kept.
    """

    name = "control"

    def __init__(self, model: nn.Module, cond: torch.Tensor, scale: float = 1.0, off: tuple[int, ...] = ()):
        bad = sorted(set(off) - set(model.positions))
        if bad:
            raise ValueError(f"off={list(off)}: {bad} have no branch; allowed: {model.positions}.")
        self.model, self.cond, self.scale, self.off = model, cond, float(scale), frozenset(off)
        self.state: torch.Tensor | None = None
        self.calls = {p: 0 for p in model.positions}  # branch runs per position

    def tokens(self, batch: int) -> torch.Tensor:
        n = self.cond.shape[0]
        if batch % n:
            raise SessionError(f"control: {n} condition images do not divide the denoiser batch of {batch}; pass "
                               f"one condition image, or one per generated image.")
        return self.cond.repeat(batch // n, 1, 1) if n != batch else self.cond

    def reset_state(self) -> None:
        self.state = None  # after each denoiser call: the next one starts its branch from the condition again

    def unit_call(self, unit: hooks.Unit, call_next: Callable, args: tuple, kwargs: dict) -> Any:
        i = unit.index
        if i not in self.calls or i in self.off:
            return call_next(args, kwargs)
        if not isinstance(unit.streams, str):
            raise SessionError(f"control: unit {i} of this denoiser has streams {unit.streams!r}; a control branch "
                               f"needs blocks with one residual stream (PixArt-style).")
        bound = unit.signature.bind(*args, **kwargs).arguments
        hidden = bound[unit.streams]
        block_kwargs = {k: v for k, v in bound.items() if k != unit.streams}
        self.state, residual = self.model.branch(i, hidden, self.state, self.tokens(hidden.shape[0]), block_kwargs)
        self.calls[i] += 1
        out = call_next(args, kwargs)  # the base block, computed or replayed by the active caching session
        return out + self.scale * residual.to(out.dtype)


@contextlib.contextmanager
def controlling(denoiser: nn.Module, run: ControlRun) -> Iterator[ControlRun]:
    """Add a control model's residuals to an attached denoiser's blocks for the duration of the block."""
    h = hooks.hooked(denoiser)
    if max(run.model.positions) >= len(h.units):
        raise ValueError(f"control positions {run.model.positions} exceed the {len(h.units)} blocks of "
                         f"{type(denoiser).__name__}; use a control model trained for this base.")
    with hooks.activate(denoiser, run):
        yield run
