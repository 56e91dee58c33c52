"""Stand-ins for ComfyUI's Wan models (comfy/ldm/wan/model.py: WanModel, WanAttentionBlock, VaceWanModel,
VaceWanAttentionBlock), reproduced like fake_comfy_video.py: block list names, block forward signatures, call
conventions, return structure, in-place updates and the model forward's timestep argument. Toy arithmetic.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fake_comfy_models import _emb, _gate, _patchify, _unpatchify


# -- Wan 2.x: comfy/ldm/wan/model.py (WanModel, WanAttentionBlock) -------------------------------------------
def repeat_e(e: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-frame modulation to per-token (Wan 2.2 per-frame timesteps), as the source's repeat_e."""
    return e if e.size(1) == 1 else torch.repeat_interleave(e, x.size(1) // e.size(1), dim=1)


class WanAttentionBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.self_attn, self.cross_attn, self.ffn = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.modulation = nn.Parameter(torch.randn(1, 6, d) * 0.1)

    def forward(self, x, e, freqs, context, context_img_len=257, transformer_options={}):
        e = (self.modulation.unsqueeze(0) + e).unbind(2)  # e: (B, 1 or frames, 6, D)
        y = _gate(self.self_attn, F.layer_norm(x, x.shape[-1:]) * (1 + repeat_e(e[1], x)) + repeat_e(e[0], x) + freqs)
        x = torch.addcmul(x, y, repeat_e(e[2], x))
        x = x + _gate(self.cross_attn, x + context.mean(1, keepdim=True))
        y = _gate(self.ffn, F.layer_norm(x, x.shape[-1:]) * (1 + repeat_e(e[4], x)) + repeat_e(e[3], x))
        return torch.addcmul(x, y, repeat_e(e[5], x))


class WanModel(nn.Module):
    """forward(x, timestep, context, ...) -> _forward -> forward_orig: x = block(x, e=e0, freqs=..., context=...)."""

    latent, ctx = (4, 3, 4, 4), (5, 8)

    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.patch_embedding, self.text_embedding = nn.Linear(16, d), nn.Linear(8, d)
        self.time_embedding, self.time_projection, self.head = nn.Linear(d, d), nn.Linear(d, 6 * d), nn.Linear(d, 16)
        self.blocks = nn.ModuleList(WanAttentionBlock(d) for _ in range(depth))
        self.dim = d

    def forward(self, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={}, **kwargs):
        return self._forward(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)

    def _forward(self, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options={}, **kwargs):
        freqs = torch.linspace(-0.1, 0.1, x.shape[2] * x.shape[3] * x.shape[4] // 4)[None, :, None]
        return self.forward_orig(x, timestep, context, clip_fea=clip_fea, freqs=freqs,
                                 transformer_options=transformer_options, **kwargs)

    def forward_orig(self, x, t, context, clip_fea=None, freqs=None, transformer_options={}, **kwargs):
        shape, x = x.shape, self.patch_embedding(_patchify(x))
        e = self.time_embedding(_emb(t.flatten() * 1000, self.dim)).reshape(t.shape[0], -1, self.dim)
        e0 = self.time_projection(e).unflatten(2, (6, self.dim))  # (B, 1 or frames, 6, D)
        context = self.text_embedding(context)
        for block in self.blocks:
            x = block(x, e=e0, freqs=freqs, context=context, context_img_len=None,
                      transformer_options=transformer_options)
        return _unpatchify(self.head(x + repeat_e(e, x)), shape)


class VaceWanAttentionBlock(WanAttentionBlock):
    def __init__(self, d: int, block_id: int):
        super().__init__(d)
        self.block_id, self.before_proj, self.after_proj = block_id, nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, c, x, **kwargs):
        if self.block_id == 0:
            c = self.before_proj(c) + x
        c = super().forward(c, **kwargs)
        return self.after_proj(c), c


class VaceWanModel(WanModel):
    """WanModel whose forward_orig adds each VACE block's skip to x in place after the mapped main block."""

    def __init__(self, d: int = 16, depth: int = 4, vace_layers: int = 2):
        super().__init__(d, depth)
        self.vace_blocks = nn.ModuleList(VaceWanAttentionBlock(d, i) for i in range(vace_layers))
        self.vace_patch_embedding = nn.Linear(16, d)
        self.vace_layers_mapping = {i: n for n, i in enumerate(range(0, depth, depth // vace_layers))}

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"vace_context": torch.randn(batch, 1, *self.latent, generator=g), "vace_strength": [1.0]}

    def forward_orig(self, x, t, context, vace_context, vace_strength, clip_fea=None, freqs=None,
                     transformer_options={}, **kwargs):
        shape, x = x.shape, self.patch_embedding(_patchify(x))
        e = self.time_embedding(_emb(t.flatten() * 1000, self.dim)).reshape(t.shape[0], -1, self.dim)
        e0 = self.time_projection(e).unflatten(2, (6, self.dim))
        context = self.text_embedding(context)
        n = vace_context.shape[1]
        c = list(self.vace_patch_embedding(_patchify(vace_context.movedim(0, 1).flatten(0, 1))).split(shape[0]))
        x_orig = x
        for i, block in enumerate(self.blocks):
            x = block(x, e=e0, freqs=freqs, context=context, context_img_len=None,
                      transformer_options=transformer_options)
            ii = self.vace_layers_mapping.get(i, None)
            if ii is not None:
                for iii in range(n):
                    c_skip, c[iii] = self.vace_blocks[ii](c[iii], x=x_orig, e=e0, freqs=freqs, context=context,
                                                           context_img_len=None,
                                                           transformer_options=transformer_options)
                    x += c_skip * vace_strength[iii]  # in place on the block's output
        return _unpatchify(self.head(x + repeat_e(e, x)), shape)


WAN_FAMILIES = {"wan": (WanModel, True), "wan22-i2v": (WanModel, True), "wan_vace": (VaceWanModel, True)}
for _cls in (WanModel, WanAttentionBlock, VaceWanModel, VaceWanAttentionBlock):
    _cls.__module__ = "comfy.ldm.wan.model"
