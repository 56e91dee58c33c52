"""Stand-in denoisers shaped like ComfyUI's (written from its public layouts, not copied): UNetModel (each
block's layers looped by the model itself, hs skip list), Flux (double blocks that update img/txt in place),
PixArtMS (captions packed into one row) and SD3 (JointBlocks with a (*args, **kwargs) forward called
positionally; the last one context-pre-only). Their __module__ is "comfy.ldm...", so the registry keys them
"comfy:Class" like the real ones. The first helpers are shared by the DiT stand-ins (fake_comfy_wan/video/image).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _gate(lin: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A bounded toy update: 0.3 * tanh(lin(x))."""
    return torch.tanh(lin(x)) * 0.3


def _patchify(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, T*H/2*W/2, C*4) with 2x2 spatial patches."""
    b, c, t, h, w = x.shape
    return x.view(b, c, t, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6).reshape(b, t * h * w // 4, c * 4)


def _unpatchify(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    b, c, t, h, w = shape
    return x.view(b, t, h // 2, w // 2, c, 2, 2).permute(0, 4, 1, 2, 5, 3, 6).reshape(shape)


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

    def forward(self, img, txt, vec, pe, attn_mask=None, modulation_dims_img=None, modulation_dims_txt=None,
                transformer_options={}):
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

    def forward(self, x, vec, pe, attn_mask=None, modulation_dims=None, transformer_options={}):
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

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"y": torch.randn(batch, 8, generator=g)}

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
