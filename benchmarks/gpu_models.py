"""The denoisers of benchmarks/gpu.py, built from their configs with random weights: real size, or tiny for CPU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["CASES", "Case"]


@dataclass
class Case:
    """One denoiser: how to build it, its inputs, and one call at a step's timestep."""

    name: str
    build: Callable[[], torch.nn.Module]
    inputs: Callable[[torch.device, torch.dtype], tuple[torch.Tensor, dict]]
    call: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, dict], torch.Tensor]  # t: (1,)
    t_max: float = 999.0
    adapter: dict | None = None  # diffskip Adapter fields, for a class with no built-in adapter yet


def _sdxl(tiny: bool) -> Case:
    from diffusers import UNet2DConditionModel
    cfg = dict(sample_size=128, block_out_channels=(320, 640, 1280), layers_per_block=2,
               transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
               addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816,
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    if tiny:
        cfg.update(sample_size=8, block_out_channels=(16, 32), layers_per_block=1, transformer_layers_per_block=1,
                   attention_head_dim=(2, 4), cross_attention_dim=32, addition_time_embed_dim=8,
                   projection_class_embeddings_input_dim=80, norm_num_groups=8,
                   down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                   up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
    cfg.update(in_channels=4, out_channels=4, use_linear_projection=True, addition_embed_type="text_time")
    text = cfg["projection_class_embeddings_input_dim"] - 6 * cfg["addition_time_embed_dim"]

    def inputs(dev, dt):
        s = cfg["sample_size"]
        return torch.randn(1, 4, s, s, device=dev, dtype=dt), dict(
            encoder_hidden_states=torch.randn(1, 77, cfg["cross_attention_dim"], device=dev, dtype=dt),
            added_cond_kwargs={"text_embeds": torch.randn(1, text, device=dev, dtype=dt),
                               "time_ids": torch.tensor([[1024.0, 1024, 0, 0, 1024, 1024]], device=dev, dtype=dt)})

    def call(m, x, t, kw):
        return m(x, t, **kw).sample
    return Case("SDXL UNet 1024x1024" if not tiny else "SDXL UNet (tiny)",
                lambda: UNet2DConditionModel(**cfg), inputs, call)


def _flux(tiny: bool) -> Case:
    from diffusers import FluxTransformer2DModel
    cfg = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
               num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
               axes_dims_rope=(16, 56, 56))
    side, txt = (4, 8) if tiny else (64, 512)  # 1024 px: 128x128 latents packed 2x2 -> 64x64 tokens
    if tiny:
        cfg.update(in_channels=16, num_layers=1, num_single_layers=2, attention_head_dim=16, num_attention_heads=2,
                   joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8))

    def inputs(dev, dt):
        ids = torch.zeros(side, side, 3, device=dev)
        ids[..., 1] += torch.arange(side, device=dev)[:, None]
        ids[..., 2] += torch.arange(side, device=dev)[None, :]
        return torch.randn(1, side * side, cfg["in_channels"], device=dev, dtype=dt), dict(
            encoder_hidden_states=torch.randn(1, txt, cfg["joint_attention_dim"], device=dev, dtype=dt),
            pooled_projections=torch.randn(1, cfg["pooled_projection_dim"], device=dev, dtype=dt),
            img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(txt, 3, device=dev),
            guidance=torch.full((1,), 3.5, device=dev))

    def call(m, x, t, kw):
        return m(x, timestep=t.to(x.dtype), **kw).sample
    return Case("FLUX.1-dev-size DiT 1024x1024" if not tiny else "FLUX DiT (tiny)",
                lambda: FluxTransformer2DModel(**cfg), inputs, call, t_max=1.0)


def _wan(tiny: bool) -> Case:
    from diffusers import WanTransformer3DModel
    cfg = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
               text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
               qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)
    shape, txt = ((2, 8, 8), 8) if tiny else ((9, 60, 104), 512)  # 33 frames at 480x832: 9 x 60 x 104 latents
    if tiny:
        cfg.update(num_attention_heads=2, attention_head_dim=8, text_dim=16, freq_dim=16, ffn_dim=32, num_layers=2,
                   rope_max_seq_len=32)

    def inputs(dev, dt):
        return torch.randn(1, 16, *shape, device=dev, dtype=dt), dict(
            encoder_hidden_states=torch.randn(1, txt, cfg["text_dim"], device=dev, dtype=dt))

    def call(m, x, t, kw):
        return m(x, timestep=t, **kw).sample
    return Case("Wan 2.1 1.3B-size DiT 480p x 33 frames" if not tiny else "Wan DiT (tiny)",
                lambda: WanTransformer3DModel(**cfg), inputs, call,
                adapter=dict(units=("blocks",), reuse="residual", streams="hidden_states"))


CASES = {"sdxl": _sdxl, "flux": _flux, "wan": _wan}
