"""Stand-ins for ComfyUI's video DiTs. Each reproduces, from the public ComfyUI source file named on it, what
diffskip depends on: the block list's name, the block's forward signature (argument names and order), how the
model calls it (positional or keyword), what it returns, in-place updates and the timestep argument of the
model's forward. The arithmetic inside is a toy; nothing is copied.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fake_comfy_models import DoubleStreamBlock, SingleStreamBlock, _emb, _gate, _patchify, _unpatchify
from fake_comfy_wan import WAN_FAMILIES


# -- HunyuanVideo: comfy/ldm/hunyuan_video/model.py (Flux's DoubleStreamBlock / SingleStreamBlock) ----------
class HunyuanVideo(nn.Module):
    """forward(x, timestep, context, y, ...) -> forward_orig: img, txt = block(img=, txt=, vec=, pe=, ...)."""

    latent, ctx = (4, 2, 4, 4), (5, 8)

    def __init__(self, d: int = 16, depth: int = 3, single: int = 2):
        super().__init__()
        self.img_in, self.txt_in, self.time_in = nn.Linear(16, d), nn.Linear(8, d), nn.Linear(d, d)
        self.vector_in, self.final_layer = nn.Linear(8, d), nn.Linear(d, 16)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(d) for _ in range(depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(d) for _ in range(single))
        self.d = d

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"y": torch.randn(batch, 8, generator=g)}

    def forward(self, x, timestep, context, y, guidance=None, attention_mask=None, guiding_frame_index=None,
                control=None, transformer_options={}, **kwargs):
        return self.forward_orig(x, None, context, None, attention_mask, timestep, y, guidance, guiding_frame_index,
                                 control, transformer_options)

    def forward_orig(self, img, img_ids, txt, txt_ids, txt_mask, timesteps, y, guidance=None,
                     guiding_frame_index=None, control=None, transformer_options={}):
        shape, img = img.shape, self.img_in(_patchify(img))
        vec = self.time_in(_emb(timesteps * 1000, self.d)) + self.vector_in(y)
        txt = self.txt_in(txt)
        pe = torch.linspace(0, 1, img.shape[1] + txt.shape[1])
        for block in self.double_blocks:
            img, txt = block(img=img, txt=txt, vec=vec, pe=pe, attn_mask=None, modulation_dims_img=None,
                             modulation_dims_txt=None)
        img_len, img = img.shape[1], torch.cat((img, txt), 1)
        for block in self.single_blocks:
            img = block(img, vec=vec, pe=pe, attn_mask=None, modulation_dims=None)
        return _unpatchify(self.final_layer(img[:, :img_len]), shape)


# -- LTX-Video: comfy/ldm/lightricks/model.py (LTXVModel, BasicTransformerBlock) -----------------------------
class BasicTransformerBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.attn1, self.attn2, self.ff = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.scale_shift_table = nn.Parameter(torch.randn(6, d) * 0.1)

    def forward(self, x, context=None, attention_mask=None, timestep=None, pe=None):
        mods = self.scale_shift_table[None, None] + timestep.reshape(x.shape[0], timestep.shape[1], 6, -1)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mods.unbind(dim=2)
        x += _gate(self.attn1, F.layer_norm(x, x.shape[-1:]) * (1 + scale_msa) + shift_msa + pe) * gate_msa  # in place
        x += _gate(self.attn2, x + (context * attention_mask[:, :, None]).mean(1, keepdim=True))
        x += _gate(self.ff, F.layer_norm(x, x.shape[-1:]) * (1 + scale_mlp) + shift_mlp) * gate_mlp
        return x


class LTXVModel(nn.Module):
    """forward(x, timestep, context, attention_mask, ...): x = block(x, context=, attention_mask=, timestep=, pe=)."""

    latent, ctx = (4, 2, 4, 4), (5, 8)

    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.patchify_proj, self.caption_projection, self.proj_out = nn.Linear(4, d), nn.Linear(8, d), nn.Linear(d, 4)
        self.adaln_single = nn.Linear(d, 6 * d)
        self.transformer_blocks = nn.ModuleList(BasicTransformerBlock(d) for _ in range(depth))
        self.d = d

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"attention_mask": torch.ones(batch, 5)}

    def forward(self, x, timestep, context, attention_mask, frame_rate=25, guiding_latent=None,
                transformer_options={}, **kwargs):
        shape = x.shape
        x = self.patchify_proj(x.flatten(2).transpose(1, 2))  # patch size 1: one token per latent pixel
        timestep = timestep * 1000.0
        ts = self.adaln_single(_emb(timestep.flatten(), self.d)).view(shape[0], -1, 6 * self.d)
        context = self.caption_projection(context).view(shape[0], -1, x.shape[-1])
        pe = torch.linspace(-0.1, 0.1, x.shape[1])[None, :, None]
        for block in self.transformer_blocks:
            x = block(x, context=context, attention_mask=attention_mask, timestep=ts, pe=pe)
        return self.proj_out(x).transpose(1, 2).reshape(shape)


# -- Mochi: comfy/ldm/genmo/joint_model/asymm_models_joint.py (AsymmDiTJoint, AsymmetricJointBlock) -----------
class AsymmetricJointBlock(nn.Module):
    def __init__(self, dx: int, dy: int, update_y: bool = True):
        super().__init__()
        self.update_y = update_y
        self.mod_x, self.mod_y = nn.Linear(dx, 2 * dx), nn.Linear(dx, 2 * dy if update_y else dy)
        self.attn_x, self.attn_y, self.y_to_x = nn.Linear(dx, dx), nn.Linear(dy, dy), nn.Linear(dy, dx)

    def forward(self, x, c, y, **attn_kwargs):
        c = F.silu(c)
        scale_x, gate_x = self.mod_x(c)[:, None].chunk(2, -1)
        x = x + _gate(self.attn_x, x * (1 + scale_x) + self.y_to_x(y[:, :attn_kwargs["crop_y"]]).mean(1, keepdim=True)
                      + attn_kwargs["rope_cos"]) * torch.tanh(gate_x)
        if self.update_y:  # the last block does not update the text tokens: it returns y as it came
            scale_y, gate_y = self.mod_y(c)[:, None].chunk(2, -1)
            y = y + _gate(self.attn_y, y * (1 + scale_y)) * torch.tanh(gate_y)
        return x, y


class AsymmDiTJoint(nn.Module):
    """forward(x, timestep, context, attention_mask, num_tokens, ...): x, y_feat = block(x, c, y_feat, rope_cos=...)."""

    latent, ctx = (4, 2, 4, 4), (5, 8)

    def __init__(self, dx: int = 16, dy: int = 12, depth: int = 4):
        super().__init__()
        self.x_embedder, self.t_embedder, self.t5_yproj = nn.Linear(16, dx), nn.Linear(dx, dx), nn.Linear(8, dy)
        self.blocks = nn.ModuleList(AsymmetricJointBlock(dx, dy, update_y=b < depth - 1) for b in range(depth))
        self.final_layer, self.dx = nn.Linear(dx, 16), dx

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"attention_mask": torch.ones(batch, 5), "num_tokens": 4}

    def forward(self, x, timestep, context, attention_mask, num_tokens=256, packed_indices=None, rope_cos=None,
                rope_sin=None, control=None, transformer_options={}, **kwargs):
        shape, sigma = x.shape, timestep
        x = self.x_embedder(_patchify(x))
        c = self.t_embedder(_emb((1 - sigma) * 1000, self.dx))
        y_feat = self.t5_yproj(context)
        rope_cos, rope_sin = torch.linspace(0, 0.1, x.shape[1])[None, :, None], None
        for block in self.blocks:
            x, y_feat = block(x, c, y_feat, rope_cos=rope_cos, rope_sin=rope_sin, crop_y=num_tokens)
        return -_unpatchify(self.final_layer(x), shape)


# -- Cosmos Predict2: comfy/ldm/cosmos/predict2.py (MiniTrainDIT, Block); x stays (B, T, H, W, D) ------------
class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.adaln_modulation_self_attn = nn.Linear(d, 2 * d)
        self.self_attn, self.mlp = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x_B_T_H_W_D, emb_B_T_D, crossattn_emb, rope_emb_L_1_1_D=None, adaln_lora_B_T_3D=None,
                extra_per_block_pos_emb=None, transformer_options={}):
        if extra_per_block_pos_emb is not None:
            x_B_T_H_W_D = x_B_T_H_W_D + extra_per_block_pos_emb
        scale, gate = self.adaln_modulation_self_attn(emb_B_T_D)[:, :, None, None].chunk(2, -1)  # (B, T, 1, 1, D)
        ctx = crossattn_emb.mean(1)[:, None, None, None]
        x_B_T_H_W_D = x_B_T_H_W_D + gate * _gate(self.self_attn, x_B_T_H_W_D * (1 + scale) + ctx)
        return x_B_T_H_W_D + _gate(self.mlp, x_B_T_H_W_D)


class MiniTrainDIT(nn.Module):
    """forward(x, timesteps, context, ...) -> _forward: x = block(x, t_emb, crossattn_emb, **block_kwargs)."""

    latent, ctx = (4, 2, 4, 4), (5, 16)

    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.x_embedder, self.t_embedder, self.final_layer = nn.Linear(16, d), nn.Linear(d, d), nn.Linear(d, 16)
        self.extra_pos_embedder = nn.Parameter(torch.randn(1, 1, 2, 2, d) * 0.1)
        self.blocks = nn.ModuleList(Block(d) for _ in range(depth))
        self.d = d

    def forward(self, x, timesteps, context, fps=None, padding_mask=None, **kwargs):
        return self._forward(x, timesteps, context, fps, padding_mask, **kwargs)

    def _forward(self, x, timesteps, context, fps=None, padding_mask=None, **kwargs):
        b, c, t, h, w = shape = x.shape
        x_B_T_H_W_D = self.x_embedder(_patchify(x)).view(b, t, h // 2, w // 2, self.d)
        timesteps_B_T = timesteps.unsqueeze(1) if timesteps.ndim == 1 else timesteps
        t_embedding_B_T_D = self.t_embedder(_emb(timesteps_B_T.flatten() * 1000, self.d)).view(b, -1, self.d)
        block_kwargs = {"rope_emb_L_1_1_D": None, "adaln_lora_B_T_3D": None,
                        "extra_per_block_pos_emb": self.extra_pos_embedder,
                        "transformer_options": kwargs.get("transformer_options", {})}
        for block in self.blocks:
            x_B_T_H_W_D = block(x_B_T_H_W_D, t_embedding_B_T_D, context, **block_kwargs)
        return _unpatchify(self.final_layer(x_B_T_H_W_D).reshape(b, -1, 16), shape)


VIDEO_FAMILIES = {**WAN_FAMILIES, "hunyuan_video": (HunyuanVideo, True),
                  "ltxv": (LTXVModel, True), "mochi": (AsymmDiTJoint, True), "cosmos_predict2": (MiniTrainDIT, True)}
for _cls, _mod in ((HunyuanVideo, "hunyuan_video.model"),
                   (LTXVModel, "lightricks.model"), (BasicTransformerBlock, "lightricks.model"),
                   (AsymmDiTJoint, "genmo.joint_model.asymm_models_joint"),
                   (AsymmetricJointBlock, "genmo.joint_model.asymm_models_joint"),
                   (MiniTrainDIT, "cosmos.predict2"), (Block, "cosmos.predict2")):
    _cls.__module__ = f"comfy.ldm.{_mod}"
