"""A faithful fake of the ComfyUI pieces diffskip's nodes touch (ComfyUI is not on PyPI), written from its
public API shapes: ModelPatcher (clone, model_options, get_model_object, both wrapper APIs), a wrapper
executor, a CFG guider with an Euler loop that fills transformer_options, model_sampling, and stand-in
denoisers shaped like ComfyUI's UNetModel (layer loop inside each block, hs skip list), Flux (double
blocks that update img/txt in place, single blocks), PixArtMS (captions packed into one row) and SD3
(JointBlocks with a (*args, **kwargs) forward called positionally; the last one context-pre-only).
Their __module__ is "comfy.ldm...", so the registry keys them "comfy:Class" like the real ones.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

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

    def sample(self, noise, cond, uncond, sigmas, y=None):
        self._conds = (cond, uncond, y)
        wrappers = [w for ws in getattr(self.model_patcher, "wrappers", {}).get(OUTER_SAMPLE, {}).values() for w in ws]
        return Executor(self.outer_sample, self, wrappers).execute(noise, None, "euler", sigmas)

    def outer_sample(self, noise, latent_image, sampler, sigmas, denoise_mask=None, callback=None, seed=None):
        x = noise * sigmas[0]
        for i in range(len(sigmas) - 1):
            den = self._denoise(x, sigmas[i], sigmas)
            x = x + (x - den) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
        return x

    def _denoise(self, x, sigma, sigmas):
        cond, uncond, y = self._conds
        opts = self.model_patcher.model_options
        to = dict(opts["transformer_options"], sigmas=sigma.reshape(1).repeat(2 * len(x)), sample_sigmas=sigmas,
                  cond_or_uncond=[0, 1])
        c = {"c_crossattn": torch.cat([cond, uncond]), "transformer_options": to}
        if y is not None:
            c["y"] = torch.cat([y, y])
        inp, ts = torch.cat([x, x]), sigma.reshape(1).repeat(2 * len(x))
        base = self.model_patcher.model
        wrapper = opts.get("model_function_wrapper")
        out = wrapper(base.apply_model, {"input": inp, "timestep": ts, "c": c, "cond_or_uncond": [0, 1]}) \
            if wrapper is not None else base.apply_model(inp, ts, **c)
        den_c, den_u = out.chunk(2)
        return den_u + self.cfg * (den_c - den_u)


class BaseModel(nn.Module):
    """BaseModel shape: apply_model(x, sigma, c_crossattn, ...) maps sigma to the model's timestep."""

    def __init__(self, diffusion_model: nn.Module, flow: bool):
        super().__init__()
        self.diffusion_model, self.flow = diffusion_model, flow
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        self.log_sigmas = (((1 - torch.cumprod(1 - betas, 0)) / torch.cumprod(1 - betas, 0)) ** 0.5).log()

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        if self.flow:  # Flux: the timestep is the sigma itself
            return sigma
        d = sigma.double().log()[:, None] - self.log_sigmas[None]  # SD: fractional index into the schedule
        lo = (d >= 0).cumsum(1).argmax(1).clamp(max=998)
        w = (self.log_sigmas[lo] - sigma.double().log()) / (self.log_sigmas[lo] - self.log_sigmas[lo + 1])
        return (lo + w.clamp(0, 1)).float()

    def apply_model(self, x, t, c_crossattn=None, transformer_options=None, y=None, **kw):
        s = t.reshape(-1, *([1] * (x.dim() - 1)))
        xin = x if self.flow else x / (s ** 2 + 1) ** 0.5
        extra = {"y": y} if y is not None else {}
        out = self.diffusion_model(xin, self.timestep(t), context=c_crossattn,
                                   transformer_options=transformer_options or {}, **extra)
        return x - out * s


def sigmas(n: int, flow: bool) -> torch.Tensor:
    """Karras-like (SD) or linear (flow) sigma schedule ending at 0, as ComfyUI's schedulers give."""
    if flow:
        return torch.cat([torch.linspace(1.0, 1.0 / n, n), torch.zeros(1)])
    ramp = torch.linspace(0, 1, n)
    return torch.cat([(14.6 ** (1 / 7) + ramp * (0.03 ** (1 / 7) - 14.6 ** (1 / 7))) ** 7, torch.zeros(1)])


# -- UNetModel stand-in --------------------------------------------------------------------------------------
def _emb(t: torch.Tensor, dim: int) -> torch.Tensor:
    f = torch.exp(-math.log(10000) * torch.arange(dim // 2) / (dim // 2))
    a = t.float()[:, None] * f[None]
    return torch.cat([a.cos(), a.sin()], 1)


class TimestepBlock(nn.Module):
    pass


class ResBlock(TimestepBlock):
    def __init__(self, cin: int, cout: int, emb: int = 16):
        super().__init__()
        self.inp, self.emb, self.outp = nn.Conv2d(cin, cout, 3, padding=1), nn.Linear(emb, cout), \
            nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = F.silu(self.inp(F.silu(x))) + self.emb(emb)[:, :, None, None]
        return self.skip(x) + self.outp(F.silu(h))


class SpatialTransformer(nn.Module):
    def __init__(self, ch: int, ctx: int = 8):
        super().__init__()
        self.q, self.kv, self.o = nn.Linear(ch, ch), nn.Linear(ctx, 2 * ch), nn.Linear(ch, ch)

    def forward(self, x, context=None, transformer_options={}):
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        k, v = self.kv(context).chunk(2, -1)
        a = torch.softmax(self.q(t) @ k.transpose(1, 2) / c ** 0.5, -1) @ v
        return x + self.o(a).transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x, output_shape=None):
        size = output_shape[2:] if output_shape is not None else (x.shape[2] * 2, x.shape[3] * 2)
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


def forward_timestep_embed(ts, x, emb, context=None, transformer_options={}, output_shape=None):
    """ComfyUI runs each block's layers itself: the block's own forward is never called by the UNet."""
    for layer in ts:
        if isinstance(layer, TimestepBlock):
            x = layer(x, emb)
        elif isinstance(layer, SpatialTransformer):
            x = layer(x, context, transformer_options)
        elif isinstance(layer, Upsample):
            x = layer(x, output_shape=output_shape)
        else:
            x = layer(x)
    return x


class TimestepEmbedSequential(nn.Sequential, TimestepBlock):
    def forward(self, *args, **kwargs):
        return forward_timestep_embed(self, *args, **kwargs)


class UNetModel(nn.Module):
    """input_blocks / middle_block / output_blocks with an hs skip list, forward(x, timesteps, context, y)."""

    def __init__(self, c: int = 8):
        super().__init__()
        S = TimestepEmbedSequential
        self.time_embed = nn.Sequential(nn.Linear(c, 16), nn.SiLU(), nn.Linear(16, 16))
        self.input_blocks = nn.ModuleList([S(nn.Conv2d(4, c, 3, padding=1)), S(ResBlock(c, c), SpatialTransformer(c)),
                                           S(Downsample(c)), S(ResBlock(c, 2 * c), SpatialTransformer(2 * c))])
        self.middle_block = S(ResBlock(2 * c, 2 * c), SpatialTransformer(2 * c), ResBlock(2 * c, 2 * c))
        self.output_blocks = nn.ModuleList([
            S(ResBlock(4 * c, 2 * c), SpatialTransformer(2 * c)),
            S(ResBlock(3 * c, 2 * c), SpatialTransformer(2 * c), Upsample(2 * c)),
            S(ResBlock(3 * c, c), SpatialTransformer(c)), S(ResBlock(2 * c, c), SpatialTransformer(c))])
        self.out = nn.Sequential(nn.SiLU(), nn.Conv2d(c, 4, 3, padding=1))
        self.model_channels = c

    def forward(self, x, timesteps=None, context=None, y=None, control=None, transformer_options={}, **kwargs):
        emb = self.time_embed(_emb(timesteps, self.model_channels))
        hs, h = [], x
        for module in self.input_blocks:
            h = forward_timestep_embed(module, h, emb, context, transformer_options)
            hs.append(h)
        h = forward_timestep_embed(self.middle_block, h, emb, context, transformer_options)
        for module in self.output_blocks:
            h = torch.cat([h, hs.pop()], dim=1)
            h = forward_timestep_embed(module, h, emb, context, transformer_options,
                                       hs[-1].shape if hs else None)
        return self.out(h)


# -- Flux and PixArt stand-ins -------------------------------------------------------------------------------
class DoubleStreamBlock(nn.Module):
    def __init__(self, d: int, inplace: bool = True):
        super().__init__()
        self.img, self.txt, self.mod = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2 * d)
        self.inplace = inplace

    def forward(self, img, txt, vec, pe, attn_mask=None, transformer_options={}):
        a, b = self.mod(F.silu(vec))[:, None].chunk(2, -1)
        joint = torch.cat([txt, img], 1).mean(1, keepdim=True) + pe.mean()
        di, dt = torch.tanh(self.img(img + joint)) * (1 + a) * 0.3, torch.tanh(self.txt(txt + joint)) * (1 + b) * 0.3
        if not self.inplace:
            return img + di, txt + dt
        img += di  # in place, like ComfyUI's Flux blocks
        txt += dt
        return img, txt


class SingleStreamBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, d)

    def forward(self, x, vec, pe, attn_mask=None, transformer_options={}):
        x += torch.tanh(self.lin(x + vec[:, None])) * 0.3
        return x


class Flux(nn.Module):
    """forward(x, timestep, context, y): patchify, double blocks (img, txt), concat, single blocks."""

    def __init__(self, d: int = 16, double: int = 4, single: int = 2, inplace: bool = True):
        super().__init__()
        self.img_in, self.txt_in = nn.Linear(4, d), nn.Linear(8, d)
        self.time_in, self.vector_in, self.final = nn.Linear(d, d), nn.Linear(8, d), nn.Linear(d, 4)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(d, inplace) for _ in range(double))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(d) for _ in range(single))
        self.d = d

    def forward(self, x, timestep, context, y=None, guidance=None, control=None, transformer_options={}, **kw):
        b, c, h, w = x.shape
        img = self.img_in(x.flatten(2).transpose(1, 2))
        vec = self.time_in(_emb(timestep * 1000, self.d)) + self.vector_in(y)
        txt = self.txt_in(context)
        pe = torch.linspace(0, 1, img.shape[1] + txt.shape[1])
        for block in self.double_blocks:
            img, txt = block(img=img, txt=txt, vec=vec, pe=pe)
        img = torch.cat((txt, img), 1)
        for block in self.single_blocks:
            img = block(img, vec=vec, pe=pe)
        return self.final(img[:, txt.shape[1]:]).transpose(1, 2).reshape(b, c, h, w)


class PixArtMSBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.attn, self.cross = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, y, t, mask=None, HW=None, **kwargs):
        y = y.view(x.shape[0], -1, x.shape[-1])  # the captions were packed into one row
        return x + torch.tanh(self.attn(x) + self.cross(y).mean(1, keepdim=True)) * t[:, None] * 0.3


class PixArtMS(nn.Module):
    """forward(x, timesteps, context): blocks(x, y, t0) with y packed as (1, B*L, D)."""

    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.x_in, self.y_in, self.t_in, self.out = nn.Linear(4, d), nn.Linear(8, d), nn.Linear(d, d), nn.Linear(d, 4)
        self.blocks = nn.ModuleList(PixArtMSBlock(d) for _ in range(depth))
        self.d = d

    def forward(self, x, timesteps, context, c_size=None, c_ar=None, **kwargs):
        b, c, h, w = x.shape
        t = torch.sigmoid(self.t_in(_emb(timesteps, self.d)))
        y = self.y_in(context).reshape(1, -1, self.d)
        h_ = self.x_in(x.flatten(2).transpose(1, 2))
        for block in self.blocks:
            h_ = block(h_, y, t, None, (h, w))
        return self.out(h_).transpose(1, 2).reshape(b, c, h, w)


class JointBlock(nn.Module):
    """SD3 joint block: forward(*args, **kwargs), called block(context, x, c=...) -> (context, x)."""

    def __init__(self, d: int, pre_only: bool):
        super().__init__()
        self.ctx, self.x, self.pre_only = nn.Linear(d, d), nn.Linear(d, d), pre_only

    def forward(self, *args, **kwargs):
        return _block_mixing(*args, block=self, **kwargs)


def _block_mixing(context, x, block, c, use_checkpoint=False, transformer_options={}):
    joint = torch.cat([context, x], 1).mean(1, keepdim=True) * (1 + c[:, None])
    x = x + torch.tanh(block.x(x + joint)) * 0.3
    return (None if block.pre_only else context + torch.tanh(block.ctx(context + joint)) * 0.3), x


class MMDiT(nn.Module):
    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.x_in, self.ctx_in, self.t_in, self.y_in, self.out = (nn.Linear(4, d), nn.Linear(8, d), nn.Linear(d, d),
                                                                  nn.Linear(8, d), nn.Linear(d, 4))
        self.joint_blocks = nn.ModuleList(JointBlock(d, pre_only=i == depth - 1) for i in range(depth))
        self.d = d


class OpenAISignatureMMDITWrapper(MMDiT):
    """forward(x, timesteps, context, y): joint blocks over (context, x) passed positionally."""

    def forward(self, x, timesteps, context=None, y=None, control=None, transformer_options={}, **kwargs):
        b, ch, h, w = x.shape
        c_mod = torch.tanh(self.t_in(_emb(timesteps, self.d)))
        context, t = self.ctx_in(context), self.x_in(x.flatten(2).transpose(1, 2))
        for block in self.joint_blocks:
            context, t = block(context, t, c=c_mod, use_checkpoint=False, transformer_options=transformer_options)
        return self.out(t).transpose(1, 2).reshape(b, ch, h, w)


for _cls in (UNetModel, TimestepEmbedSequential, ResBlock, SpatialTransformer, Downsample, Upsample):
    _cls.__module__ = "comfy.ldm.modules.diffusionmodules.openaimodel"
for _cls in (Flux, DoubleStreamBlock, SingleStreamBlock):
    _cls.__module__ = "comfy.ldm.flux.model"
for _cls in (PixArtMS, PixArtMSBlock):
    _cls.__module__ = "comfy.ldm.pixart.pixartms"
for _cls in (MMDiT, OpenAISignatureMMDITWrapper, JointBlock):
    _cls.__module__ = "comfy.ldm.modules.diffusionmodules.mmdit"


def patcher(kind: str, legacy: bool = False) -> ModelPatcher:
    """Build a ModelPatcher over a seeded stand-in: 'unet' (SD), 'flux', 'flux-outofplace', 'pixart', 'sd3'."""
    torch.manual_seed(0)
    net = {"unet": UNetModel, "flux": Flux, "pixart": PixArtMS, "sd3": OpenAISignatureMMDITWrapper,
           "flux-outofplace": lambda: Flux(inplace=False)}[kind]().eval()
    return (LegacyModelPatcher if legacy else ModelPatcher)(BaseModel(net, flow=kind.startswith("flux")))


def sample(p: ModelPatcher, steps: int = 6, batch: int = 1) -> torch.Tensor:
    """Sample with CFG over fixed seeded inputs; returns the final latent."""
    kind = type(p.model.diffusion_model).__name__
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(batch, 4, 8, 8, generator=g)
    cond, uncond = torch.randn(batch, 5, 8, generator=g), torch.randn(batch, 5, 8, generator=g)
    y = torch.randn(batch, 8, generator=g) if kind == "Flux" else None
    with torch.no_grad():
        return Guider(p).sample(noise, cond, uncond, sigmas(steps, flow=kind == "Flux"), y=y)
