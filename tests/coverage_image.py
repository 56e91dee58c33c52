"""Tiny configs and inputs for diffusers' image DiTs (data for tests/test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R


def _ids(h: int, w: int) -> torch.Tensor:
    """Flux-style position ids (h*w, 3) for an h x w latent grid."""
    return torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(h * 1.0), torch.arange(w * 1.0), indexing="ij"), -1
                       ).reshape(-1, 3).float()


def _flux_like(t, c=4, txt=6, dim=32):
    return dict(hidden_states=R(1, 16, c), encoder_hidden_states=R(1, txt, dim), img_ids=_ids(4, 4),
                txt_ids=torch.zeros(txt, 3), timestep=t / 1000)


def _flux2(t):
    img = torch.cartesian_prod(torch.arange(1), torch.arange(4), torch.arange(4), torch.arange(1))[None]
    txt = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(6))[None]
    return dict(hidden_states=R(1, 16, 4), encoder_hidden_states=R(1, 6, 32), img_ids=img, txt_ids=txt,
                timestep=t / 1000, guidance=torch.tensor([1.0]))


def _qwen(t):
    return dict(hidden_states=R(1, 16, 16), encoder_hidden_states=R(1, 6, 16),
                encoder_hidden_states_mask=torch.ones(1, 6, dtype=torch.long), timestep=t / 1000,
                img_shapes=[(1, 4, 4)])


def _hidream(t):
    return dict(hidden_states=R(1, 4, 16, 16), encoder_hidden_states_t5=R(1, 6, 8),
                encoder_hidden_states_llama3=R(4, 1, 6, 4), pooled_embeds=R(1, 8), timesteps=t)


def _hunyuan_dit(t):
    return dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 4, 8), text_embedding_mask=torch.ones(1, 4),
                encoder_hidden_states_t5=R(1, 4, 8), text_embedding_mask_t5=torch.ones(1, 4), timestep=t,
                image_meta_size=torch.tensor([[64.0, 64, 64, 64, 0, 0]]), style=torch.zeros(1, dtype=torch.long),
                image_rotary_emb=[torch.ones(16, 8), torch.zeros(16, 8)])


def _omnigen(t):
    seq = 6 + 1 + 16
    return dict(hidden_states=R(1, 4, 8, 8), timestep=t / 1000, input_ids=torch.randint(0, 10, (1, 6)),
                input_img_latents=[], input_image_sizes={}, attention_mask=torch.ones(1, seq, seq),
                position_ids=torch.arange(seq)[None])


def _zimage(t):
    return dict(x=[R(16, 1, 8, 8)], cap_feats=[R(6, 16)], t=1 - t / 1000)


CASES = [
    Case("QwenImageTransformer2DModel", "Qwen-Image",
         dict(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16, num_attention_heads=2,
              joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4)), _qwen, compile=True),
    Case("Flux2Transformer2DModel", "FLUX.2",
         dict(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, timestep_guidance_channels=32,
              axes_dims_rope=[4, 4, 4, 4]), _flux2),
    Case("ChromaTransformer2DModel", "Chroma",
         dict(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, axes_dims_rope=[4, 4, 8], approximator_num_channels=8,
              approximator_hidden_dim=32, approximator_layers=1), _flux_like),
    Case("BriaTransformer2DModel", "Bria",
         dict(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
              num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=None, axes_dims_rope=[0, 4, 4]),
         lambda t: dict(_flux_like(t), timestep=t)),
    Case("HunyuanImageTransformer2DModel", "HunyuanImage",
         dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
              num_single_layers=2, num_refiner_layers=1, mlp_ratio=2.0, patch_size=(1, 1), text_embed_dim=16,
              rope_axes_dim=(4, 4)),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16),
                        encoder_attention_mask=torch.ones(1, 6))),
    Case("HiDreamImageTransformer2DModel", "HiDream",
         dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
              num_attention_heads=4, caption_channels=[8, 4], text_emb_dim=8, num_routed_experts=2,
              num_activated_experts=2, axes_dims_rope=(4, 2, 2), max_resolution=(16, 16), llama_layers=(0, 1, 2, 3),
              force_inference_output=True), _hidream),
    Case("Lumina2Transformer2DModel", "Lumina 2",
         dict(sample_size=8, patch_size=2, in_channels=4, hidden_size=24, num_layers=2, num_refiner_layers=1,
              num_attention_heads=3, num_kv_heads=1, multiple_of=2, ffn_dim_multiplier=None, norm_eps=1e-5,
              scaling_factor=1.0, axes_dim_rope=(4, 2, 2), axes_lens=(128, 128, 128), cap_feat_dim=32),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32), timestep=1 - t / 1000,
                        encoder_attention_mask=torch.ones(1, 6, dtype=torch.bool))),
    Case("AuraFlowTransformer2DModel", "AuraFlow",
         dict(sample_size=8, patch_size=2, in_channels=4, num_mmdit_layers=2, num_single_dit_layers=2,
              attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
              out_channels=4, pos_embed_max_size=64),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32), timestep=t)),
    Case("CogView4Transformer2DModel", "CogView 4",
         dict(patch_size=2, in_channels=4, num_layers=2, attention_head_dim=4, num_attention_heads=4, out_channels=4,
              text_embed_dim=8, time_embed_dim=8, condition_dim=4),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t,
                        original_size=torch.tensor([[64, 64]]), target_size=torch.tensor([[64, 64]]),
                        crop_coords=torch.tensor([[0, 0]]))),
    Case("HunyuanDiT2DModel", "HunyuanDiT",
         dict(sample_size=8, patch_size=2, in_channels=4, num_layers=4, attention_head_dim=8, num_attention_heads=2,
              cross_attention_dim=8, cross_attention_dim_t5=8, pooled_projection_dim=4, hidden_size=16, text_len=4,
              text_len_t5=4, activation_fn="gelu-approximate"), _hunyuan_dit),
    Case("OmniGenTransformer2DModel", "OmniGen",
         dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=4, intermediate_size=32, num_layers=2,
              pad_token_id=0, vocab_size=1000, in_channels=4, time_step_dim=4,
              rope_scaling={"long_factor": [1, 2], "short_factor": [1, 2]}), _omnigen),
    Case("ZImageTransformer2DModel", "Z-Image",
         dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=16, dim=16, n_layers=2, n_refiner_layers=1,
              n_heads=1, n_kv_heads=2, qk_norm=True, cap_feat_dim=16, rope_theta=256.0, t_scale=1000.0,
              axes_dims=[8, 4, 4], axes_lens=[256, 32, 32]), _zimage),
]
