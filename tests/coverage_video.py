"""Tiny configs and inputs for diffusers' video denoisers (data for tests/test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R

_WAN = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
            rope_max_seq_len=32)
_HV = dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10, num_layers=2,
           num_single_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1, guidance_embeds=True,
           text_embed_dim=16, pooled_projection_dim=8, rope_axes_dim=(2, 4, 4), image_condition_type=None)


def _wan(t, c=4, **kw):
    return dict(hidden_states=R(1, c, 2, 8, 8), encoder_hidden_states=R(1, 6, 16), timestep=t, **kw)


def _hv(t, **kw):
    return dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                pooled_projections=R(1, 8), encoder_attention_mask=torch.ones(1, 6), guidance=t.new_full((1,), 3.5),
                **kw)


def _framepack(t):
    return _hv(t, image_embeds=R(1, 6, 16), indices_latents=torch.arange(2), latents_clean=R(1, 4, 1, 8, 8),
               indices_latents_clean=torch.arange(1), latents_history_2x=R(1, 4, 1, 8, 8),
               indices_latents_history_2x=torch.arange(1), latents_history_4x=R(1, 4, 4, 8, 8),
               indices_latents_history_4x=torch.arange(4))


def _ltx(t):
    return dict(hidden_states=R(1, 2 * 8 * 8, 4), encoder_hidden_states=R(1, 6, 16), timestep=t,
                encoder_attention_mask=torch.ones(1, 6).bool(), num_frames=2, height=8, width=8)


def _ltx2(t):
    return dict(_ltx(t), audio_hidden_states=R(1, 5, 4), audio_encoder_hidden_states=R(1, 6, 16), audio_num_frames=5,
                fps=25.0)


def _animate(t):
    return dict(hidden_states=R(1, 12, 5, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                encoder_hidden_states_image=R(1, 4, 16), pose_hidden_states=R(1, 4, 4, 8, 8),
                face_pixel_values=R(1, 3, 13, 16, 16))


def _cosmos(t):
    return dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                attention_mask=torch.ones(1, 6), fps=30)


CASES = [
    Case("WanTransformer3DModel", "Wan 2.1/2.2 (T2V)", _WAN, _wan, compile=True),
    Case("WanTransformer3DModel", "Wan 2.1/2.2 (I2V)", dict(_WAN, in_channels=8, image_dim=16, added_kv_proj_dim=24),
         lambda t: _wan(t, c=8, encoder_hidden_states_image=R(1, 4, 16)), variant="i2v"),
    Case("WanVACETransformer3DModel", "Wan VACE", dict(_WAN, num_layers=3, vace_layers=[0, 2], vace_in_channels=12),
         lambda t: _wan(t, control_hidden_states=R(1, 12, 2, 8, 8))),
    Case("WanAnimateTransformer3DModel", "Wan Animate",
         dict(_WAN, in_channels=12, latent_channels=4, image_dim=16, motion_encoder_channel_sizes={"4": 16, "8": 16,
              "16": 16}, motion_encoder_size=16, motion_style_dim=8, motion_dim=4, motion_encoder_dim=16,
              face_encoder_hidden_dim=16, face_encoder_num_heads=2, inject_face_latents_blocks=2), _animate),
    Case("SkyReelsV2Transformer3DModel", "SkyReels-V2", _WAN, _wan),
    Case("HunyuanVideoTransformer3DModel", "HunyuanVideo 1.0", _HV, _hv, compile=True),
    Case("HunyuanVideoFramepackTransformer3DModel", "HunyuanVideo Framepack",
         dict(_HV, patch_size=2, has_image_proj=True, image_proj_dim=16, has_clean_x_embedder=True), _framepack),
    Case("HunyuanVideo15Transformer3DModel", "HunyuanVideo 1.5",
         dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
              num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16,
              text_embed_2_dim=8, image_embed_dim=12, rope_axes_dim=(2, 2, 4), target_size=16, task_type="t2v"),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                        encoder_hidden_states_2=R(1, 4, 8), encoder_attention_mask=torch.ones(1, 6),
                        encoder_attention_mask_2=torch.ones(1, 4), image_embeds=torch.zeros(1, 3, 12))),
    Case("LTXVideoTransformer3DModel", "LTX-Video",
         dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
              num_layers=2, qk_norm="rms_norm_across_heads", caption_channels=16), _ltx),
    Case("LTX2VideoTransformer3DModel", "LTX-2",
         dict(in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
              cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
              audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
              caption_channels=16, rope_double_precision=False), _ltx2),
    Case("CogVideoXTransformer3DModel", "CogVideoX",
         dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
              text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=5, patch_size=2,
              temporal_compression_ratio=4, max_text_seq_length=6),
         lambda t: dict(hidden_states=R(1, 2, 4, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t)),
    Case("MochiTransformer3DModel", "Mochi",
         dict(patch_size=2, num_attention_heads=2, attention_head_dim=8, num_layers=2, pooled_projection_dim=16,
              in_channels=4, out_channels=None, qk_norm="rms_norm", text_embed_dim=16, time_embed_dim=4,
              activation_fn="swiglu", max_sequence_length=6),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), encoder_hidden_states=R(1, 6, 16), timestep=t,
                        encoder_attention_mask=torch.ones(1, 6, dtype=torch.bool))),
    Case("AllegroTransformer3DModel", "Allegro",
         dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, num_layers=2,
              cross_attention_dim=16, sample_width=8, sample_height=8, sample_frames=2, caption_channels=8),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t)),
    Case("CosmosTransformer3DModel", "Cosmos",
         dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=2, mlp_ratio=2,
              text_embed_dim=16, adaln_lora_dim=4, max_size=(4, 32, 32), patch_size=(1, 2, 2),
              rope_scale=(2.0, 1.0, 1.0), concat_padding_mask=False, extra_pos_embed_type="learnable"), _cosmos),
    Case("LatteTransformer3DModel", "Latte",
         dict(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=4, num_attention_heads=2,
              caption_channels=8, in_channels=4, cross_attention_dim=8, out_channels=8, attention_bias=True,
              activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
              norm_elementwise_affine=False, norm_eps=1e-6, video_length=2),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t,
                        enable_temporal_attentions=True)),
    Case("SanaVideoTransformer3DModel", "Sana Video",
         dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=12, num_layers=2,
              num_cross_attention_heads=2, cross_attention_head_dim=12, cross_attention_dim=24, caption_channels=16,
              mlp_ratio=2.5, attention_bias=False, sample_size=8, patch_size=(1, 2, 2), norm_elementwise_affine=False,
              norm_eps=1e-6, qk_norm="rms_norm_across_heads", rope_max_seq_len=32),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), encoder_hidden_states=R(1, 6, 16), timestep=t)),
    Case("Kandinsky5Transformer3DModel", "Kandinsky 5",
         dict(in_visual_dim=4, in_text_dim=16, in_text_dim2=8, time_dim=16, out_visual_dim=4, patch_size=(1, 2, 2),
              model_dim=32, ff_dim=48, num_text_blocks=1, num_visual_blocks=2, axes_dims=(8, 4, 4)),
         lambda t: dict(hidden_states=R(1, 2, 8, 8, 4), encoder_hidden_states=R(6, 16), timestep=t,
                        pooled_projections=R(1, 8), visual_rope_pos=[torch.arange(2), torch.arange(4), torch.arange(4)],
                        text_rope_pos=torch.arange(6))),
]
