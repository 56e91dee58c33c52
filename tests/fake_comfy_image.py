"""Stand-ins for ComfyUI's image DiTs, reproduced like fake_comfy_video.py from the public ComfyUI source file
named on each: block list names, block forward signatures, call conventions (positional / keyword), return
structure, in-place updates and the model forward's timestep argument. The arithmetic inside is a toy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fake_comfy_models import _emb, _gate


def _pack(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H/2*W/2, C*4) with 2x2 patches."""
    b, c, h, w = x.shape
    return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)


def _unpack(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    b, c, h, w = shape
    return x.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(shape)


# -- Qwen-Image: comfy/ldm/qwen_image/model.py (QwenImageTransformer2DModel, QwenImageTransformerBlock) --------
class QwenImageTransformerBlock(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.img_mod, self.txt_mod, self.attn = nn.Linear(d, 2 * d), nn.Linear(d, 2 * d), nn.Linear(d, d)
        self.img_mlp, self.txt_mlp = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, hidden_states, encoder_hidden_states, encoder_hidden_states_mask, temb, image_rotary_emb=None,
                transformer_options={}):
        img_scale, img_gate = self.img_mod(temb)[:, None].chunk(2, -1)
        txt_scale, txt_gate = self.txt_mod(temb)[:, None].chunk(2, -1)
        joint = torch.cat([encoder_hidden_states, hidden_states], 1).mean(1, keepdim=True) + image_rotary_emb.mean()
        hidden_states = hidden_states + img_gate * _gate(self.attn, hidden_states * (1 + img_scale) + joint)
        encoder_hidden_states = encoder_hidden_states + txt_gate * _gate(self.attn, encoder_hidden_states + joint)
        hidden_states = torch.addcmul(hidden_states, img_gate, _gate(self.img_mlp, hidden_states))
        encoder_hidden_states = torch.addcmul(encoder_hidden_states, txt_gate,
                                              _gate(self.txt_mlp, encoder_hidden_states))
        return encoder_hidden_states, hidden_states  # (text, image): the order the source returns


class QwenImageTransformer2DModel(nn.Module):
    """forward(x, timestep, context, ...) -> _forward: txt, img = block(hidden_states=, encoder_hidden_states=, ...)."""

    latent, ctx = (4, 1, 8, 8), (5, 8)  # ComfyUI feeds Qwen-Image 5-D latents (B, C, 1, H, W)

    def __init__(self, d: int = 16, depth: int = 4):
        super().__init__()
        self.img_in, self.txt_in, self.time_text_embed = nn.Linear(16, d), nn.Linear(8, d), nn.Linear(d, d)
        self.transformer_blocks = nn.ModuleList(QwenImageTransformerBlock(d) for _ in range(depth))
        self.proj_out, self.d = nn.Linear(d, 16), d

    def forward(self, x, timestep, context, attention_mask=None, guidance=None, ref_latents=None,
                transformer_options={}, **kwargs):
        return self._forward(x, timestep, context, attention_mask, guidance, ref_latents, transformer_options, **kwargs)

    def _forward(self, x, timesteps, context, attention_mask=None, guidance=None, ref_latents=None,
                 transformer_options={}, control=None, **kwargs):
        shape = x.shape
        hidden_states = self.img_in(_pack(x[:, :, 0]))
        encoder_hidden_states = self.txt_in(context)
        image_rotary_emb = torch.linspace(0, 0.1, hidden_states.shape[1] + context.shape[1])
        temb = self.time_text_embed(_emb(timesteps * 1000, self.d))
        for block in self.transformer_blocks:
            encoder_hidden_states, hidden_states = block(
                hidden_states=hidden_states, encoder_hidden_states=encoder_hidden_states,
                encoder_hidden_states_mask=attention_mask, temb=temb, image_rotary_emb=image_rotary_emb,
                transformer_options=transformer_options)
        return _unpack(self.proj_out(hidden_states), shape[:2] + shape[3:]).unsqueeze(2)


# -- Lumina 2 / NextDiT: comfy/ldm/lumina/model.py (NextDiT, JointTransformerBlock) ---------------------------
class JointTransformerBlock(nn.Module):
    def __init__(self, d: int, modulation: bool = True):
        super().__init__()
        self.modulation, self.attention, self.feed_forward = modulation, nn.Linear(d, d), nn.Linear(d, d)
        if modulation:
            self.adaLN_modulation = nn.Linear(d, 2 * d)

    def forward(self, x, x_mask, freqs_cis, adaln_input=None):
        scale, gate = self.adaLN_modulation(adaln_input)[:, None].chunk(2, -1) if self.modulation else (0.0, 1.0)
        x = x + torch.tanh(torch.as_tensor(gate)) * _gate(self.attention, x * (1 + scale) + freqs_cis)
        return x + _gate(self.feed_forward, x)


class NextDiT(nn.Module):
    """forward(x, timesteps, context, num_tokens, ...): refiners once, then x = layer(x, mask, freqs, adaln_input)."""

    ctx = (5, 8)

    def __init__(self, d: int = 16, n_layers: int = 4, n_refiner_layers: int = 2):
        super().__init__()
        self.x_embedder, self.cap_embedder, self.t_embedder = nn.Linear(16, d), nn.Linear(8, d), nn.Linear(d, d)
        self.noise_refiner = nn.ModuleList(JointTransformerBlock(d) for _ in range(n_refiner_layers))
        self.context_refiner = nn.ModuleList(JointTransformerBlock(d, modulation=False)
                                             for _ in range(n_refiner_layers))
        self.layers = nn.ModuleList(JointTransformerBlock(d) for _ in range(n_layers))
        self.final_layer, self.dim = nn.Linear(d, 16), d

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"num_tokens": 5}

    def patchify_and_embed(self, x, cap_feats, cap_mask, t, num_tokens):
        freqs = torch.linspace(-0.1, 0.1, num_tokens + x.shape[2] * x.shape[3] // 4)[None, :, None]
        for layer in self.context_refiner:
            cap_feats = layer(cap_feats, cap_mask, freqs[:, :num_tokens])
        img = self.x_embedder(_pack(x))
        for layer in self.noise_refiner:
            img = layer(img, None, freqs[:, num_tokens:], t)
        return torch.cat([cap_feats, img], 1), cap_mask, x.shape, num_tokens, freqs

    def forward(self, x, timesteps, context, num_tokens, attention_mask=None, **kwargs):
        t = self.t_embedder(_emb((1.0 - timesteps) * 1000, self.dim))
        adaln_input = t
        cap_feats = self.cap_embedder(context)
        x, mask, img_size, cap_size, freqs_cis = self.patchify_and_embed(x, cap_feats, attention_mask, t, num_tokens)
        for layer in self.layers:
            x = layer(x, mask, freqs_cis, adaln_input)
        return -_unpack(self.final_layer(x[:, cap_size:]), img_size)


# -- HiDream: comfy/ldm/hidream/model.py (HiDreamImageTransformer2DModel, HiDreamImageBlock) -----------------
class HiDreamImageTransformerBlock(nn.Module):
    def __init__(self, d: int, single: bool):
        super().__init__()
        self.adaLN_modulation, self.attn1, self.ff_i = nn.Linear(d, 2 * d), nn.Linear(d, d), nn.Linear(d, d)
        self.single, self.ff_t = single, None if single else nn.Linear(d, d)

    def forward(self, image_tokens, image_tokens_masks=None, text_tokens=None, adaln_input=None, rope=None):
        scale, gate = self.adaLN_modulation(adaln_input)[:, None].chunk(2, -1)
        joint = image_tokens.mean(1, keepdim=True) if self.single else text_tokens.mean(1, keepdim=True)
        image_tokens = image_tokens + gate * _gate(self.attn1, image_tokens * (1 + scale) + joint + rope.mean())
        image_tokens = image_tokens + _gate(self.ff_i, image_tokens)
        if self.single:
            return image_tokens
        return image_tokens, text_tokens + _gate(self.ff_t, text_tokens + image_tokens.mean(1, keepdim=True))


class HiDreamImageBlock(nn.Module):
    def __init__(self, d: int, single: bool):
        super().__init__()
        self.block = HiDreamImageTransformerBlock(d, single)

    def forward(self, image_tokens, image_tokens_masks=None, text_tokens=None, adaln_input=None, rope=None):
        return self.block(image_tokens, image_tokens_masks, text_tokens, adaln_input, rope)


class HiDreamImageTransformer2DModel(nn.Module):
    """forward(x, t, y, context, encoder_hidden_states_llama3, ...): double blocks take the text by keyword."""

    ctx = (5, 8)

    def __init__(self, d: int = 16, num_layers: int = 3, num_single_layers: int = 2):
        super().__init__()
        self.t_embedder, self.p_embedder, self.x_embedder = nn.Linear(d, d), nn.Linear(8, d), nn.Linear(16, d)
        self.double_stream_blocks = nn.ModuleList(HiDreamImageBlock(d, False) for _ in range(num_layers))
        self.single_stream_blocks = nn.ModuleList(HiDreamImageBlock(d, True) for _ in range(num_single_layers))
        self.caption_projection = nn.ModuleList(nn.Linear(8, d) for _ in range(num_layers + num_single_layers + 1))
        self.final_layer, self.d = nn.Linear(d, 16), d

    def conds(self, batch: int, g: torch.Generator) -> dict:
        return {"y": torch.randn(batch, 8, generator=g), "encoder_hidden_states_llama3":
                torch.randn(batch, len(self.caption_projection) - 1, 3, 8, generator=g)}

    def forward(self, x, t, y=None, context=None, encoder_hidden_states_llama3=None, image_cond=None, control=None,
                transformer_options={}):
        return self._forward(x, t, y, context, encoder_hidden_states_llama3, image_cond, control, transformer_options)

    def _forward(self, x, t, y=None, context=None, encoder_hidden_states_llama3=None, image_cond=None, control=None,
                 transformer_options={}):
        shape = x.shape
        adaln_input = self.t_embedder(_emb(t * 1000, self.d)) + self.p_embedder(y)
        hidden_states = self.x_embedder(_pack(x))
        llama = encoder_hidden_states_llama3.movedim(1, 0)
        enc = [self.caption_projection[i](llama[i]) for i in range(len(llama))] + [self.caption_projection[-1](context)]
        rope = torch.linspace(0, 0.1, hidden_states.shape[1])[None, :, None]
        initial = torch.cat([enc[-1], enc[-2]], dim=1)
        seq_len, block_id = initial.shape[1], 0
        for block in self.double_stream_blocks:
            cur = torch.cat([initial, enc[block_id]], dim=1)
            hidden_states, initial = block(image_tokens=hidden_states, image_tokens_masks=None, text_tokens=cur,
                                           adaln_input=adaln_input, rope=rope)
            initial, block_id = initial[:, :seq_len], block_id + 1
        image_len, hidden_states = hidden_states.shape[1], torch.cat([hidden_states, initial], dim=1)
        full = hidden_states.shape[1]
        for block in self.single_stream_blocks:
            hidden_states = torch.cat([hidden_states, enc[block_id]], dim=1)
            hidden_states = block(image_tokens=hidden_states, image_tokens_masks=None, text_tokens=None,
                                  adaln_input=adaln_input, rope=rope)[:, :full]
            block_id += 1
        return -_unpack(self.final_layer(hidden_states[:, :image_len]), shape)


# -- HunyuanDiT: comfy/ldm/hydit/models.py (HunYuanDiT, HunYuanDiTBlock with long skips) ----------------------
class HunYuanDiTBlock(nn.Module):
    def __init__(self, d: int, skip: bool):
        super().__init__()
        self.default_modulation, self.attn1, self.attn2, self.mlp = (nn.Linear(d, d), nn.Linear(d, d),
                                                                     nn.Linear(d, d), nn.Linear(d, d))
        self.skip_linear = nn.Linear(2 * d, d) if skip else None

    def forward(self, x, c=None, text_states=None, freq_cis_img=None, skip=None):
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        x = x + _gate(self.attn1, F.layer_norm(x, x.shape[-1:]) + self.default_modulation(c)[:, None] + freq_cis_img)
        x = x + _gate(self.attn2, x + text_states.mean(1, keepdim=True))
        return x + _gate(self.mlp, x)


class HunYuanDiT(nn.Module):
    """forward(x, t, context, text_embedding_mask, ...): x = block(x, c, text_states, freqs_cis_img[, skip])."""

    ctx, text_len = (5, 8), 5

    def __init__(self, d: int = 16, depth: int = 6):
        super().__init__()
        self.mlp_t5, self.x_embedder, self.t_embedder = nn.Linear(8, 8), nn.Linear(16, d), nn.Linear(d, d)
        self.text_proj, self.final_layer = nn.Linear(8, d), nn.Linear(d, 16)
        self.text_embedding_padding = nn.Parameter(torch.randn(self.text_len + 4, 8) * 0.1)
        self.blocks = nn.ModuleList(HunYuanDiTBlock(d, skip=layer > depth // 2) for layer in range(depth))
        self.depth, self.d = depth, d

    def conds(self, batch: int, g: torch.Generator) -> dict:
        mask = torch.ones(batch, 5)
        mask[:, -1] = 0
        return {"text_embedding_mask": mask, "encoder_hidden_states_t5": torch.randn(batch, 4, 8, generator=g),
                "text_embedding_mask_t5": torch.ones(batch, 4)}

    def forward(self, x, t, context, text_embedding_mask=None, encoder_hidden_states_t5=None,
                text_embedding_mask_t5=None, image_meta_size=None, style=None, return_dict=False, control=None,
                transformer_options=None):
        text_states, text_states_t5 = context, self.mlp_t5(encoder_hidden_states_t5)
        mask = text_embedding_mask.bool()
        pad = self.text_embedding_padding
        text_states[:, -self.text_len:] = torch.where(mask[:, -self.text_len:, None], text_states[:, -self.text_len:],
                                                      pad[:self.text_len])  # in place, as the source does
        text_states = self.text_proj(torch.cat([text_states, text_states_t5], dim=1))
        freqs_cis_img = torch.linspace(0, 0.1, x.shape[2] * x.shape[3] // 4)[None, :, None]
        c, shape, x = self.t_embedder(_emb(t, self.d)), x.shape, self.x_embedder(_pack(x))
        skips = []
        for layer, block in enumerate(self.blocks):
            if layer > self.depth // 2:
                x = block(x, c, text_states, freqs_cis_img, skips.pop())
            else:
                x = block(x, c, text_states, freqs_cis_img)
            if layer < (self.depth // 2 - 1):
                skips.append(x)
        return _unpack(self.final_layer(x), shape)


IMAGE_FAMILIES = {"qwen_image": (QwenImageTransformer2DModel, True), "lumina2": (NextDiT, True),
                  "hidream": (HiDreamImageTransformer2DModel, True), "hunyuan_dit": (HunYuanDiT, False)}
for _cls, _mod in ((QwenImageTransformer2DModel, "qwen_image.model"), (QwenImageTransformerBlock, "qwen_image.model"),
                   (NextDiT, "lumina.model"), (JointTransformerBlock, "lumina.model"),
                   (HiDreamImageTransformer2DModel, "hidream.model"), (HiDreamImageBlock, "hidream.model"),
                   (HiDreamImageTransformerBlock, "hidream.model"), (HunYuanDiT, "hydit.models"),
                   (HunYuanDiTBlock, "hydit.models")):
    _cls.__module__ = f"comfy.ldm.{_mod}"
