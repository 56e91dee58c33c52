"""Built-in adapters for diffusers denoisers (registered by key, so nothing is imported here)."""
from __future__ import annotations

from .base import Adapter, register

# UNets: DeepCache / A-SDM feature inheritance at layer granularity (each resnet, attention and resampler is a
# unit). The live path is conv_in -> the last up layer (resnet + attention) -> conv_out, DeepCache's shallowest
# branch; deeper layers replay their cached outputs. Drift-gated policies also keep the first resnet live
# as their probe. Policy head/tail move the branch point, one layer at a time.
_UNET = Adapter(units=("down_blocks", "mid_block", "up_blocks"), reuse="output", head=0, tail=2,
                layers=(("resnets", "attentions"), ("downsamplers", "upsamplers")))
register("diffusers:UNet2DConditionModel", _UNET)  # SD 1.x / 2.x / SDXL
register("diffusers:UNet2DModel", _UNET)

# DiTs: First-Block-Cache style residual reuse; the first block is the live head and the drift probe.
_DIT = Adapter(units=("transformer_blocks",), reuse="residual", streams="hidden_states")
register("diffusers:DiTTransformer2DModel", _DIT)
register("diffusers:PixArtTransformer2DModel", _DIT)
register("diffusers:SanaTransformer2DModel", _DIT)

# Joint-attention DiTs return (encoder_hidden_states, hidden_states); SD3's last block returns None first.
register("diffusers:SD3Transformer2DModel",
         Adapter(units=("transformer_blocks",), reuse="residual",
                 streams=("encoder_hidden_states", "hidden_states")))
register("diffusers:FluxTransformer2DModel",
         Adapter(units=("transformer_blocks", "single_transformer_blocks"), reuse="residual",
                 streams=("encoder_hidden_states", "hidden_states"), unbatched=("image_rotary_emb",)))

# Single-list DiTs whose pipelines pass a rising timestep (1 - t / 1000: 0 is noise). Detection finds their
# `layers` (the noise/context refiners run once per call and stay live) but cannot tell the direction from
# one call, so these are explicit.
_RISING = Adapter(units=("layers",), reuse="residual", streams="hidden_states", rising=True)
register("diffusers:LuminaNextDiT2DModel", _RISING)
register("diffusers:Lumina2Transformer2DModel", _RISING)
register("diffusers:Ideogram4Transformer2DModel", _RISING)
register("diffusers:ZImageTransformer2DModel",
         Adapter(units=("layers",), reuse="residual", streams="x", timestep="t", rising=True))
