"""Tiny configs and inputs for diffusers' UNets and the classes with built-in adapters (data for test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R

_SD = dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
           down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
           cross_attention_dim=16, norm_num_groups=8, attention_head_dim=4)
_3D = dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
           down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
           cross_attention_dim=16, norm_num_groups=8, attention_head_dim=4)


def _sd(t, **kw):
    return dict(sample=R(1, 4, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16), **kw)


def _sdxl(t):
    return _sd(t, added_cond_kwargs=dict(text_embeds=R(1, 16), time_ids=torch.tensor([[16.0, 16, 0, 0, 16, 16]])))


def _svd(t):
    return dict(sample=R(1, 2, 4, 8, 8), timestep=t, encoder_hidden_states=R(1, 1, 16),
                added_time_ids=torch.tensor([[6.0, 127, 0.02]]))


def _pixart(t):
    return dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32), timestep=t,
                added_cond_kwargs=dict(resolution=None, aspect_ratio=None))


def _sd3(t):
    return dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32), pooled_projections=R(1, 64),
                timestep=t)


CASES = [
    Case("UNet2DConditionModel", "Stable Diffusion 1.x/2.x", _SD, _sd, variant="sd", compile=True),
    Case("UNet2DConditionModel", "SDXL",
         dict(_SD, addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=40,
              use_linear_projection=True), _sdxl, variant="sdxl"),
    Case("UNet2DModel", "DDPM UNet",
         dict(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32), layers_per_block=1,
              norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
              up_block_types=("AttnUpBlock2D", "UpBlock2D")),
         lambda t: dict(sample=R(1, 3, 8, 8), timestep=t)),
    Case("UNet3DConditionModel", "ModelScope T2V (UNet3D)", _3D,
         lambda t: dict(sample=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(1, 6, 16))),
    Case("I2VGenXLUNet", "I2VGen-XL", dict(_3D, num_attention_heads=4),
         lambda t: dict(sample=R(1, 4, 2, 8, 8), timestep=t, fps=torch.tensor([8]), image_latents=R(1, 4, 2, 8, 8),
                        image_embeddings=R(1, 16), encoder_hidden_states=R(1, 6, 16))),
    Case("UNetMotionModel", "AnimateDiff (UNetMotion)",
         dict(block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
              down_block_types=("CrossAttnDownBlockMotion", "DownBlockMotion"),
              up_block_types=("UpBlockMotion", "CrossAttnUpBlockMotion"), cross_attention_dim=16, norm_num_groups=8,
              num_attention_heads=2),
         lambda t: dict(sample=R(1, 4, 2, 8, 8), timestep=t, encoder_hidden_states=R(2, 6, 16))),  # one per frame
    Case("UNetSpatioTemporalConditionModel", "Stable Video Diffusion",
         dict(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
              down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
              up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=16,
              num_attention_heads=(2, 4), addition_time_embed_dim=4, projection_class_embeddings_input_dim=12,
              num_frames=2), _svd),
    Case("DiTTransformer2DModel", "DiT",
         dict(sample_size=8, num_layers=3, patch_size=2, attention_head_dim=8, num_attention_heads=2, in_channels=4,
              out_channels=4, num_embeds_ada_norm=1000),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), timestep=t, class_labels=torch.tensor([1]))),
    Case("PixArtTransformer2DModel", "PixArt",
         dict(sample_size=8, num_layers=3, patch_size=2, attention_head_dim=8, num_attention_heads=3,
              caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=4, attention_bias=True,
              activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
              norm_elementwise_affine=False, norm_eps=1e-6), _pixart),
    Case("Transformer2DModel", "Transformer2D (PixArt-style)",
         dict(sample_size=8, num_layers=3, patch_size=2, attention_head_dim=8, num_attention_heads=3,
              caption_channels=32, in_channels=4, cross_attention_dim=24, out_channels=4, attention_bias=True,
              activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
              norm_elementwise_affine=False, norm_eps=1e-6), _pixart),
    Case("SD3Transformer2DModel", "SD3", dict(sample_size=8, patch_size=1, in_channels=4, num_layers=3,
         attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
         pooled_projection_dim=64, out_channels=4), _sd3, variant="sd3"),
    Case("SD3Transformer2DModel", "SD3.5", dict(sample_size=8, patch_size=1, in_channels=4, num_layers=3,
         attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
         pooled_projection_dim=64, out_channels=4, qk_norm="rms_norm", dual_attention_layers=(0,)), _sd3,
         variant="sd35"),
    Case("FluxTransformer2DModel", "FLUX.1",
         dict(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)),
         lambda t: dict(hidden_states=R(1, 16, 16), encoder_hidden_states=R(1, 6, 32), pooled_projections=R(1, 32),
                        timestep=t / 1000, img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(6, 3))),
    Case("SanaTransformer2DModel", "Sana",
         dict(patch_size=1, in_channels=4, out_channels=4, num_layers=3, num_attention_heads=2, attention_head_dim=4,
              num_cross_attention_heads=2, cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
              sample_size=8),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 8), timestep=t)),
]
