"""Tiny configs and inputs for the last of diffusers' image and video denoisers (data for test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R


def _flux3(t):
    img = torch.cartesian_prod(torch.arange(1), torch.arange(4), torch.arange(4), torch.arange(1))[None]
    txt = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(6))[None]
    return dict(hidden_states=R(1, 16, 4), encoder_hidden_states=R(1, 6, 32), timestep=t / 1000, img_ids=img[0],
                txt_ids=txt[0])


def _flux_like(t):
    return dict(hidden_states=R(1, 16, 4), encoder_hidden_states=R(1, 6, 32), img_ids=torch.zeros(16, 3),
                txt_ids=torch.zeros(6, 3), timestep=t / 1000)


def _qwen21(t):
    mask = torch.zeros(1, 4 + 1, dtype=torch.bool)
    mask[:, 4:] = True
    return dict(hidden_states=R(1, 4, 4), encoder_hidden_states=R(1, 4, 8),
                encoder_hidden_states_mask=torch.ones(1, 4, dtype=torch.long), timestep=t / 1000,
                img_shapes=[[(1, 2, 2)]], img_mask=mask)


def _sana_wm(t):
    f, h, w = 4, 8, 8
    c2w = torch.eye(4).repeat(1, f, 1, 1)
    c2w[..., 2, 3] = torch.arange(f, dtype=torch.float32) * 0.1
    cam = torch.cat([c2w.flatten(start_dim=-2), torch.tensor([float(w), float(h), w / 2, h / 2]).expand(1, f, 4)], -1)
    return dict(hidden_states=R(1, 4, f, h, w), timestep=t.expand(1, 1, f), encoder_hidden_states=R(1, 1, 6, 8),
                encoder_attention_mask=torch.ones(1, 6, dtype=torch.long), camera_conditions=cam,
                chunk_plucker=R(1, 8, f, h, w))


def _sana_refiner(t):
    from diffusers.models.transformers.transformer_sana_wm_refiner import SanaWMLTX2AudioVideoRotaryPosEmbed
    rope = SanaWMLTX2AudioVideoRotaryPosEmbed(dim=16, patch_size=1, patch_size_t=1, base_num_frames=20,
                                              base_height=2048, base_width=2048, scale_factors=(8, 32, 32),
                                              modality="video", double_precision=False, num_attention_heads=2)
    emb = rope(rope.prepare_video_coords(1, 2, 4, 4, device=torch.device("cpu"), fps=24.0), device="cpu")
    return dict(hidden_states=R(1, 32, 4), encoder_hidden_states=R(1, 6, 16), timestep=t.expand(1, 32),
                video_rotary_emb=emb, encoder_attention_mask=torch.ones(1, 6))


def _animate2(t):
    from diffusers.models.transformers.transformer_wan_animate_2 import WanAnimate2KVCache
    return dict(hidden_states=[R(16, 2, 4, 4)], timestep=t, encoder_hidden_states=[R(8, 32)],
                condition_latents=[R(20, 2, 4, 4)], encoder_hidden_states_image=R(1, 4, 1280),
                kv_cache=WanAnimate2KVCache(2), kv_cache_mode="extract", seq_len=8,
                offset_grid_sizes=torch.tensor([[2, 2, 2]]))


CASES: list[Case] = [
    Case("Flux3Transformer2DModel", "FLUX.3",
         dict(in_channels=4, cond_in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, timestep_channels=32, axes_dims_rope=(4, 4, 4, 4)),
         _flux3),
    Case("OvisImageTransformer2DModel", "Ovis-Image",
         dict(patch_size=1, in_channels=4, out_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=(4, 4, 8)), _flux_like),
    Case("NucleusMoEImageTransformer2DModel", "Nucleus-MoE Image",
         dict(patch_size=2, in_channels=16, out_channels=4, num_layers=5, attention_head_dim=16, num_attention_heads=2,
              num_key_value_heads=2, joint_attention_dim=16, axes_dims_rope=(8, 4, 4), num_experts=4,
              moe_intermediate_dim=16, capacity_factors=4.0),
         lambda t: dict(hidden_states=R(1, 16, 16), img_shapes=[(1, 4, 4)], encoder_hidden_states=R(1, 6, 16),
                        encoder_hidden_states_mask=torch.ones(1, 6), timestep=t / 1000),
         init_std=0.02),  # its expert weights are torch.empty until a checkpoint loads
    Case("PRXTransformer2DModel", "PRX",
         dict(in_channels=4, patch_size=2, context_in_dim=16, hidden_size=32, mlp_ratio=2.0, num_heads=2, depth=2,
              axes_dim=[8, 8]),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16))),
    Case("QwenImage21Transformer2DModel", "Qwen-Image 2.1",
         dict(patch_size=1, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
              context_in_dim=8, mlp_ratio=2, axes_dims_rope=(4, 6, 6)), _qwen21),
    Case("SanaWMTransformer3DModel", "SANA-WM",
         dict(in_channels=4, num_layers=2, hidden_size=32, num_attention_heads=2, patch_size=(1, 1, 1),
              softmax_every_n=2, linear_head_dim=16, t_kernel_size=3, conv_kernel_size=4, caption_channels=8,
              mlp_ratio=2.0, chunk_plucker_channels=8, chunk_plucker_post_attn_blocks=2),
         _sana_wm),
    Case("SanaWMLTX2RefinerTransformer3DModel", "SANA-WM refiner (LTX-2)",
         dict(in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
              cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4, audio_num_attention_heads=2,
              audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2, qk_norm="rms_norm_across_heads",
              caption_channels=16, rope_double_precision=False), _sana_refiner),
    Case("WanAnimate2Transformer3DModel", "Wan Animate 2",
         dict(patch_size=(1, 2, 2), text_len=16, in_dim=36, dim=32, ffn_dim=32, freq_dim=16, text_dim=32, out_dim=16,
              num_heads=2, num_layers=2, cross_attn_norm=True, use_img_emb=True), _animate2),
    Case("DreamLiteUNetModel", "DreamLite",
         dict(block_out_channels=(16, 32, 32), layers_per_block=1, norm_num_groups=8, cross_attention_dim=16,
              attention_head_dim=4, sample_size=8),
         lambda t: dict(sample=R(1, 4, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16))),
    Case("DreamLiteTransformer2DModel", "DreamLite (spatial transformer layer)",
         dict(num_attention_heads=2, attention_head_dim=8, in_channels=16, num_layers=2, norm_num_groups=8,
              cross_attention_dim=16),
         lambda t: dict(hidden_states=R(1, 16, 8, 8), encoder_hidden_states=R(1, 6, 16), timestep=t)),
]
