"""A faithful fake of the ComfyUI pieces diffskip's nodes touch (ComfyUI is not on PyPI), written from its
public API shapes: ModelPatcher (clone, model_options, get_model_object, both wrapper APIs), a wrapper
executor, a CFG guider with an Euler loop that fills transformer_options (sigmas, sample_sigmas,
cond_or_uncond), and BaseModel's sigma -> timestep mapping (SD: discrete t; Flux: sigma). The stand-in
denoisers are in fake_comfy_models.py.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from fake_comfy_image import IMAGE_FAMILIES
from fake_comfy_models import Flux, OpenAISignatureMMDITWrapper, PixArtMS, UNetModel
from fake_comfy_video import VIDEO_FAMILIES

FAMILIES = {**VIDEO_FAMILIES, **IMAGE_FAMILIES}

OUTER_SAMPLE = "outer_sample"


# -- ModelPatcher and sampling ------------------------------------------------------------------------------
class LegacyModelPatcher:
    """A ComfyUI ModelPatcher from before the wrapper API: only set_model_unet_function_wrapper exists."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.model_options: dict = {"transformer_options": {}}
        self.wrappers: dict = {}

    def clone(self):
        n = type(self)(self.model)  # the BaseModel and its diffusion_model are shared, like ComfyUI's
        n.model_options = copy.deepcopy(self.model_options)
        n.wrappers = {t: {k: list(v) for k, v in d.items()} for t, d in self.wrappers.items()}
        return n

    def get_model_object(self, name: str):
        return getattr(self.model, name)

    def set_model_unet_function_wrapper(self, fn) -> None:
        self.model_options["model_function_wrapper"] = fn


class ModelPatcher(LegacyModelPatcher):
    """ModelPatcher shape: a shared BaseModel, per-clone model_options and composable keyed wrappers."""

    def add_wrapper_with_key(self, wrapper_type: str, key: str, wrapper) -> None:
        self.wrappers.setdefault(wrapper_type, {}).setdefault(key, []).append(wrapper)

    def remove_wrappers_with_key(self, wrapper_type: str, key: str) -> None:
        self.wrappers.get(wrapper_type, {}).pop(key, None)


class Executor:
    """Wrapper call stack: each wrapper gets (executor, *args); calling the executor runs the next one."""

    def __init__(self, original, class_obj, wrappers: list, idx: int = 0):
        self.original, self.class_obj, self.wrappers, self.idx = original, class_obj, wrappers, idx

    def execute(self, *args, **kwargs):
        if self.idx == len(self.wrappers):
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)

    def __call__(self, *args, **kwargs):
        return Executor(self.original, self.class_obj, self.wrappers, self.idx + 1).execute(*args, **kwargs)


class Guider:
    """CFG guider: OUTER_SAMPLE wrappers around an Euler run; cond and uncond batched in one call."""

    def __init__(self, model_patcher: ModelPatcher, cfg: float = 3.0):
        self.model_patcher, self.cfg = model_patcher, cfg

    def sample(self, noise, cond, uncond, sigmas, extra=None):
        self._conds = (cond, uncond, extra or {})
        wrappers = [w for ws in getattr(self.model_patcher, "wrappers", {}).get(OUTER_SAMPLE, {}).values() for w in ws]
        return Executor(self.outer_sample, self, wrappers).execute(noise, None, "euler", sigmas)

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, seed=None):
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            den = self._denoise(x, sigmas[i], sigmas)
            x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return x

    def _denoise(self, x, sigma, sigmas):
        cond, uncond, extra = self._conds
        opts = self.model_patcher.model_options
        to = dict(opts["transformer_options"], sigmas=sigma.reshape(1).repeat(2 * len(x)), sample_sigmas=sigmas,
                  cond_or_uncond=[0, 1])
        c = {"c_crossattn": torch.cat([cond, uncond]), "transformer_options": to}
        c.update({k: torch.cat([v, v]) if isinstance(v, torch.Tensor) else v for k, v in extra.items()})
        inp, ts = torch.cat([x, x]), sigma.reshape(1).repeat(2 * len(x))
        base = self.model_patcher.model
        wrapper = opts.get("model_function_wrapper")
        out = wrapper(base.apply_model, {"input": inp, "timestep": ts, "c": c, "cond_or_uncond": [0, 1]}) \
            if wrapper is not None else base.apply_model(inp, ts, **c)
        den_c, den_u = out.chunk(2)
        return den_u + self.cfg * (den_c - den_u)


class BaseModel(nn.Module):
    """BaseModel shape: apply_model(x, sigma, c_crossattn, ...) maps sigma to the model's timestep."""

    def __init__(self, diffusion_model: nn.Module, flow: bool, keep_first_frame: bool = False):
        super().__init__()
        self.diffusion_model, self.flow, self.keep_first_frame = diffusion_model, flow, keep_first_frame
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        self.log_sigmas = (((1 - torch.cumprod(1 - betas, 0)) / torch.cumprod(1 - betas, 0)) ** 0.5).log()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.flow:  # Flux: the timestep is the sigma itself
            return sigma
        d = sigma.double().log()[:, None] - self.log_sigmas[None]  # SD: fractional index into the schedule
        lo = (d >= 0).cumsum(1).argmax(1).clamp(max=998)
        w = (self.log_sigmas[lo] - sigma.double().log()) / (self.log_sigmas[lo] - self.log_sigmas[lo + 1])
        return (lo + w.clamp(0, 1)).float()

    def process_timestep(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """WAN22.process_timestep (comfy/model_base.py) with an image-to-video denoise_mask: the kept first
        frame gets timestep 0, the others t, one value per latent frame: shape (B, frames)."""
        if not self.keep_first_frame:
            return t
        mask = torch.ones(x.shape[0], 1, x.shape[2], 1, 1)
        mask[:, :, 0] = 0.0
        return (mask * t.view(-1, 1, 1, 1, 1)).reshape(t.shape[0], -1)

    def apply_model(self, x, t, c_crossattn=None, transformer_options=None, **extra):
        s = t.reshape(-1, *([1] * (x.dim() - 1)))
        xin = x if self.flow else x / (s ** 2 + 1) ** 0.5
        out = self.diffusion_model(xin, self.process_timestep(self.timestep(t), x), context=c_crossattn,
                                   transformer_options=transformer_options or {}, **extra)
        return x - out * s


def sigmas(n: int, flow: bool) -> torch.Tensor:
    """Karras-like (SD) or linear (flow) sigma schedule ending at 0, as ComfyUI's schedulers give."""
    if flow:
        return torch.cat([torch.linspace(1.0, 1.0 / n, n), torch.zeros(1)])
    ramp = torch.linspace(0, 1, n)
    return torch.cat([(14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7, torch.zeros(1)])


# kind -> (stand-in, flow model sampling); the DiT families' stand-ins are in fake_comfy_video/_image.py
KINDS = {"unet": (UNetModel, False), "flux": (Flux, True), "flux-outofplace": (lambda: Flux(inplace=False), True),
         "pixart": (PixArtMS, False), "sd3": (OpenAISignatureMMDITWrapper, False), **FAMILIES}


def patcher(kind: str, legacy: bool = False) -> ModelPatcher:
    """Build a ModelPatcher over a seeded stand-in named in KINDS ('wan22-i2v': per-frame timesteps)."""
    torch.manual_seed(0)
    make, flow = KINDS[kind]
    net = make().eval()
    return (LegacyModelPatcher if legacy else ModelPatcher)(BaseModel(net, flow, keep_first_frame=kind == "wan22-i2v"))


def sample(p: ModelPatcher, steps: int = 6, batch: int = 1) -> torch.Tensor:
    """Sample with CFG over fixed seeded inputs (the stand-in's latent, context and extra conds); final latent."""
    net = p.model.diffusion_model
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(batch, *getattr(net, "latent", (4, 8, 8)), generator=g)
    ctx = getattr(net, "ctx", (5, 8))
    cond, uncond = torch.randn(batch, *ctx, generator=g), torch.randn(batch, *ctx, generator=g)
    extra = net.conds(batch, g) if hasattr(net, "conds") else {}
    with torch.no_grad():
        return Guider(p).sample(noise, cond, uncond, sigmas(steps, flow=p.model.flow), extra)


def node(name: str, model, **values):
    """Run diffskip's ComfyUI node `name` on a patcher with its default inputs (`values` override); return the model."""
    from diffskip import comfy as dc

    n = dc.NODE_CLASS_MAPPINGS[name]()
    spec = n.INPUT_TYPES()["required"]
    kw = {k: v[1]["default"] for k, v in spec.items() if k != "model"}
    kw.update(values)
    return getattr(n, n.FUNCTION)(model, **kw)[0]
