"""Tiny random diffusers denoisers with no registered adapter, and one call's inputs for each (a table, no logic)."""
from __future__ import annotations

import torch

B = 2  # batch of every call


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _r(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed + sum(shape)))


def _t(t: float) -> torch.Tensor:
    return torch.full((B,), float(t))


# class name -> (config, inputs(t) -> forward kwargs). Widths 8-32, 1-3 blocks per list, 2-3 frames for video.
# t falls from 1000 to 0; each input passes it as the class's pipeline does (Lumina 2 and Z-Image: 1 - t / 1000).
SPECS: dict[str, tuple[dict, object]] = {
    "WanTransformer3DModel": (
        dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
             text_dim=16, freq_dim=16, ffn_dim=32, num_layers=3, rope_max_seq_len=32),
        lambda t: dict(hidden_states=_r(B, 4, 2, 8, 8), timestep=_t(t), encoder_hidden_states=_r(B, 6, 16))),
    "CogVideoXTransformer3DModel": (
        dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4, time_embed_dim=8,
             text_embed_dim=16, num_layers=3, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
             temporal_compression_ratio=4, max_text_seq_length=6),
        lambda t: dict(hidden_states=_r(B, 3, 4, 8, 8), encoder_hidden_states=_r(B, 6, 16), timestep=_t(t))),
    "LTXVideoTransformer3DModel": (
        dict(in_channels=8, out_channels=8, num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16,
             num_layers=3, caption_channels=16),
        lambda t: dict(hidden_states=_r(B, 2 * 4 * 4, 8), encoder_hidden_states=_r(B, 6, 16), timestep=_t(t),
                       encoder_attention_mask=torch.ones(B, 6), num_frames=2, height=4, width=4)),
    "HunyuanVideoTransformer3DModel": (
        dict(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
             num_single_layers=2, num_refiner_layers=1, patch_size=1, patch_size_t=1, text_embed_dim=16,
             pooled_projection_dim=8, rope_axes_dim=(2, 2, 4)),
        lambda t: dict(hidden_states=_r(B, 4, 2, 4, 4), timestep=_t(t), encoder_hidden_states=_r(B, 6, 16),
                       encoder_attention_mask=torch.ones(B, 6), pooled_projections=_r(B, 8),
                       guidance=torch.full((B,), 3.5))),
    "QwenImageTransformer2DModel": (
        dict(patch_size=2, in_channels=16, out_channels=4, num_layers=3, attention_head_dim=8, num_attention_heads=2,
             joint_attention_dim=16, axes_dims_rope=(2, 2, 4)),
        lambda t: dict(hidden_states=_r(B, 16, 16), encoder_hidden_states=_r(B, 6, 16),
                       encoder_hidden_states_mask=torch.ones(B, 6), timestep=_t(t / 1000),
                       img_shapes=[[(1, 4, 4)]] * B)),
    "UNet3DConditionModel": (
        dict(block_out_channels=(8, 16), norm_num_groups=4, layers_per_block=1, cross_attention_dim=16,
             attention_head_dim=4, in_channels=4, out_channels=4,
             down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
             up_block_types=("UpBlock3D", "CrossAttnUpBlock3D")),
        lambda t: dict(sample=_r(B, 4, 2, 8, 8), timestep=_t(t), encoder_hidden_states=_r(B, 6, 16))),
    "Flux2Transformer2DModel": (
        dict(patch_size=1, in_channels=8, num_layers=2, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, joint_attention_dim=16, timestep_guidance_channels=16,
             axes_dims_rope=(2, 2, 2, 2)),
        lambda t: dict(hidden_states=_r(B, 16, 8), encoder_hidden_states=_r(B, 6, 16), timestep=_t(t / 1000),
                       img_ids=torch.zeros(16, 4), txt_ids=torch.zeros(6, 4), guidance=torch.full((B,), 3.5))),
    "HiDreamImageTransformer2DModel": (
        dict(patch_size=2, in_channels=4, out_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=8,
             num_attention_heads=2, caption_channels=[16, 8], text_emb_dim=16, num_routed_experts=2,
             num_activated_experts=1, axes_dims_rope=(4, 2, 2), max_resolution=(16, 16), llama_layers=[0, 1, 2, 3]),
        lambda t: dict(hidden_states=_r(B, 4, 8, 8), timesteps=_t(t), encoder_hidden_states_t5=_r(B, 6, 16),
                       encoder_hidden_states_llama3=_r(4, B, 5, 8), pooled_embeds=_r(B, 16))),
    "Lumina2Transformer2DModel": (
        dict(sample_size=8, patch_size=2, in_channels=4, hidden_size=16, num_layers=3, num_refiner_layers=1,
             num_attention_heads=2, num_kv_heads=1, multiple_of=8, axes_dim_rope=(4, 2, 2), axes_lens=(32, 32, 32),
             cap_feat_dim=16),
        lambda t: dict(hidden_states=_r(B, 4, 8, 8), timestep=_t(1 - t / 1000), encoder_hidden_states=_r(B, 6, 16),
                       encoder_attention_mask=torch.ones(B, 6, dtype=torch.bool))),
    "ZImageTransformer2DModel": (
        dict(all_patch_size=(2,), all_f_patch_size=(1,), in_channels=4, dim=16, n_layers=3, n_refiner_layers=1,
             n_heads=2, n_kv_heads=2, cap_feat_dim=16, axes_dims=[2, 2, 4], axes_lens=[64, 32, 32]),
        lambda t: dict(x=[_r(4, 1, 8, 8, seed=i) for i in range(B)], t=_t(1 - t / 1000),
                       cap_feats=[_r(6, 16, seed=i) for i in range(B)])),
}


def build(name: str) -> torch.nn.Module:
    """Return the class `name` built from its tiny config, seeded and in eval mode."""
    import diffusers

    torch.manual_seed(0)
    return getattr(diffusers, name)(**SPECS[name][0]).eval()


def inputs(name: str, t: float) -> dict:
    """Return one call's keyword arguments for class `name` at timestep `t` (0..1000)."""
    return SPECS[name][1](t)


def output(out) -> torch.Tensor:
    """Return the sample of a denoiser's output (a tuple, a dataclass or a list of per-sample tensors)."""
    x = out[0] if isinstance(out, tuple) else out.sample
    return torch.stack(x) if isinstance(x, list) else x
