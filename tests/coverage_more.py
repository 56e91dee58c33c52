"""Tiny configs and inputs for the rest of diffusers' image and video denoisers (data for test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R

_WANLIKE = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4, out_channels=4,
                text_dim=16, freq_dim=32, ffn_dim=32, num_layers=2, cross_attn_norm=True, rope_max_seq_len=32)


def _anyflow(t, frames=2, **kw):
    return dict(hidden_states=R(1, frames, 4, 8, 8), timestep=t.expand(1, frames),
                r_timestep=(t / 2).expand(1, frames), encoder_hidden_states=R(1, 6, 16), **kw)


def _fibo(t):
    ehs = R(1, 6, 64)
    return dict(hidden_states=R(1, 16, 8), encoder_hidden_states=ehs, img_ids=torch.zeros(16, 3),
                txt_ids=torch.zeros(6, 3), timestep=t / 1000, text_encoder_layers=[ehs[:, :, :32]] * 4)


def _cogview(t):
    return dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t,
                original_size=torch.tensor([[64, 64]]), target_size=torch.tensor([[64, 64]]),
                crop_coords=torch.tensor([[0, 0]]))


CASES: list[Case] = [
    Case("AnyFlowTransformer3DModel", "AnyFlow", dict(_WANLIKE, gate_value=0.25, deltatime_type="r"), _anyflow),
    Case("AnyFlowFARTransformer3DModel", "AnyFlow FAR",
         dict(_WANLIKE, compressed_patch_size=(1, 4, 4), full_chunk_limit=3, gate_value=0.25, deltatime_type="r"),
         lambda t: _anyflow(t, frames=4, chunk_partition=[2, 2])),
    Case("BriaFiboTransformer2DModel", "Bria FIBO",
         dict(patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, attention_head_dim=8,
              num_attention_heads=2, joint_attention_dim=64, text_encoder_dim=32, pooled_projection_dim=None,
              axes_dims_rope=[0, 4, 4]), _fibo),
    Case("BriaFibo2Transformer2DModel", "Bria FIBO 2",
         dict(in_channels=4, patch_size=2, dim=32, n_layers=2, n_refiner_layers=1, n_heads=2, cap_feat_dim=24,
              injection_layer_ids=(1,), perceiver_num_layers=1, min_num_gist_tokens=4, max_num_gist_tokens=8,
              gist_step=4, gist_min_text_len=4, gist_max_text_len=16, axes_dims=(4, 6, 6), axes_lens=(16, 16, 16)),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), timestep=t / 1000, encoder_hidden_states=R(1, 2, 6, 24))),
    Case("ChronoEditTransformer3DModel", "ChronoEdit",
         dict(_WANLIKE, attention_head_dim=8, qk_norm="rms_norm_across_heads", rope_max_seq_len=64,
              rope_temporal_skip_len=8),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16))),
    Case("CogView3PlusTransformer2DModel", "CogView 3 Plus",
         dict(patch_size=2, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=4, out_channels=4,
              text_embed_dim=8, time_embed_dim=8, condition_dim=2, pos_embed_max_size=8, sample_size=8), _cogview),
    Case("ConsisIDTransformer3DModel", "ConsisID",
         dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=2,
              text_embed_dim=8, num_layers=2, sample_width=8, sample_height=8, sample_frames=5, patch_size=2,
              temporal_compression_ratio=4, max_text_seq_length=6, cross_attn_interval=1, is_kps=False,
              is_train_face=True, cross_attn_dim_head=1, cross_attn_num_heads=1, LFE_id_dim=2, LFE_vit_dim=2,
              LFE_depth=5, LFE_dim_head=8, LFE_num_heads=2, LFE_num_id_token=1, LFE_num_querie=1, LFE_output_dim=10,
              LFE_ff_mult=1, LFE_num_scale=1),
         lambda t: dict(hidden_states=R(1, 2, 4, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t,
                        id_vit_hidden=[torch.ones(1, 2, 2)], id_cond=torch.ones(1, 2))),
    Case("EasyAnimateTransformer3DModel", "EasyAnimate",
         dict(attention_head_dim=16, num_attention_heads=2, in_channels=4, mmdit_layers=2, num_layers=2, out_channels=4,
              patch_size=2, sample_height=60, sample_width=90, text_embed_dim=16, time_embed_dim=8,
              time_position_encoding_type="3d_rope", timestep_activation_fn="silu"),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16))),
    Case("ErnieImageTransformer2DModel", "ERNIE-Image",
         dict(hidden_size=16, num_attention_heads=1, num_layers=2, ffn_hidden_size=16, in_channels=16, out_channels=16,
              patch_size=1, text_in_dim=16, rope_theta=256, rope_axes_dim=(8, 4, 4), eps=1e-6, qk_layernorm=True),
         lambda t: dict(hidden_states=R(1, 16, 8, 8), timestep=t / 1000, text_bth=R(1, 6, 16),
                        text_lens=torch.tensor([6]))),
    Case("GlmImageTransformer2DModel", "GLM-Image",
         dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8, num_attention_heads=2,
              text_embed_dim=32, time_embed_dim=16, condition_dim=8, prior_vq_quantizer_codebook_size=64),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32),
                        prior_token_id=torch.tensor([3]),
                        prior_token_drop=torch.zeros(1, dtype=torch.bool), timestep=t,
                        target_size=torch.tensor([[8.0, 8.0]]), crop_coords=torch.tensor([[0.0, 0.0]]))),
    Case("HeliosTransformer3DModel", "Helios",
         dict({k: v for k, v in _WANLIKE.items() if k != "rope_max_seq_len"}, qk_norm="rms_norm_across_heads",
              rope_dim=(4, 4, 4), has_multi_term_memory_patch=True,
              guidance_cross_attn=True, zero_history_timestep=True, is_amplify_history=False),
         lambda t: dict(hidden_states=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                        indices_hidden_states=torch.ones(1, 2), indices_latents_history_short=torch.ones(1, 1),
                        indices_latents_history_mid=torch.ones(1, 1), indices_latents_history_long=torch.ones(1, 4),
                        latents_history_short=R(1, 4, 1, 8, 8), latents_history_mid=R(1, 4, 1, 8, 8),
                        latents_history_long=R(1, 4, 4, 8, 8))),
]
