"""Adapters for ComfyUI's own denoiser classes, registered by key ("comfy:Class"), so nothing imports comfy.

ComfyUI calls its models positionally through `BaseModel.apply_model` (x, t, context=..., ...) with the
timestep of its model_sampling (SD: discrete t falling from ~999; Flux: sigma-like, falling from 1), which
is all the session's step clock needs.
"""
from __future__ import annotations

from .base import Adapter, register

# ComfyUI's UNetModel (SD1.x/2.x/SDXL) does not call its TimestepEmbedSequential blocks' forward: it loops
# over each block's layers itself (ResBlock, SpatialTransformer, Down/Upsample). So the units are those
# layers, and DeepCache's live shallow path is kept by leaving the first input block and the last output
# block out of the unit list entirely: they always run, whatever the policy's head/tail, so the fresh
# skip connection hs[0] always reaches the output. Skipped layers return their cached outputs, and the
# skip connections they feed (hs) carry those cached features, as in DeepCache. The first unit (the first
# layer of input block 1) is the live head and the drift probe.
UNET = Adapter(units=("input_blocks.1:.*", "middle_block.*", "output_blocks.:-1.*"), reuse="output", head=1,
               tail=0, timestep="timesteps")
register("comfy:UNetModel", UNET)

# Flux-style DiTs: double-stream blocks take img= and txt= by keyword and return (img, txt), updating img in
# place (the session clones the input before taking the residual). Single-stream blocks take the concatenated
# stream as x and return it: their own stream spec (list_streams).
FLUX = Adapter(units=("double_blocks", "single_blocks"), reuse="residual", streams=("img", "txt"), head=1,
               timestep="timestep", list_streams=(("single_blocks", "x"),))
register("comfy:Flux", FLUX)
register("comfy:Chroma", FLUX)

# PixArt-style DiTs: blocks(x, y, t0, ...) -> x. ComfyUI packs the caption tokens of the whole batch into
# one row (y is (1, B*L, D)), so use batch-wide policies (interval / uniform / mask) here: a per-sample
# Threshold sub-batch would not match the packed captions.
PIXART = Adapter(units=("blocks",), reuse="residual", streams="x", head=1, timestep="timesteps")
register("comfy:PixArtMS", PIXART)

# SD3-style joint-attention DiTs: ComfyUI's JointBlock.forward(*args, **kwargs) is called as
# block(context, x, c=...) and returns (context, x); the last block returns (None, x) (context pre-only).
register("comfy:OpenAISignatureMMDITWrapper",
         Adapter(units=("joint_blocks",), reuse="residual", streams=("args[0]", "args[1]"), head=1,
                 timestep="timesteps"))
# Not registered: AuraFlow's class shares SD3's base name "MMDiT" but not its layout.

# Video and image DiT families, each written from its ComfyUI source file (tests/fake_comfy_video.py and
# tests/fake_comfy_image.py reproduce the call conventions; docs/comfyui.md says what is verified how).
# One tensor stream per block, called with it first: x = block(x, ...).
register("comfy:WanModel", Adapter(units=("blocks",), reuse="residual", streams="x", timestep="timestep"))
register("comfy:LTXVModel", Adapter(units=("transformer_blocks",), reuse="residual", streams="x",
                                    timestep="timestep"))  # blocks update x in place and return it
register("comfy:NextDiT", Adapter(units=("layers",), reuse="residual", streams="x",  # Lumina 2; the refiners
                                  timestep="timesteps"))  # run once per call before the layers and stay live
register("comfy:HunYuanDiT", Adapter(units=("blocks",), reuse="residual", streams="x", timestep="t"))
register("comfy:MiniTrainDIT", Adapter(units=("blocks",), reuse="residual", streams="x_B_T_H_W_D",
                                       timestep="timesteps"))  # Cosmos Predict2; x stays (B, T, H, W, D)
# Two streams: (image, text) by keyword, in the order each block returns them.
register("comfy:HunyuanVideo", FLUX)  # Flux's double- and single-stream blocks
register("comfy:QwenImageTransformer2DModel",
         Adapter(units=("transformer_blocks",), reuse="residual",
                 streams=("encoder_hidden_states", "hidden_states"), timestep="timestep"))  # returns (txt, img)
register("comfy:HiDreamImageTransformer2DModel",  # single-stream blocks take one concatenated stream: live
         Adapter(units=("double_stream_blocks",), reuse="residual", streams=("image_tokens", "text_tokens"),
                 timestep="t"))
register("comfy:AsymmDiTJoint", Adapter(units=("blocks",), reuse="residual", streams=("x", "y"),
                                        timestep="timestep"))  # Mochi; the last block returns y unchanged
# Not registered: Cosmos 1's GeneralDIT keeps its blocks in a ModuleDict in (T, H, W, B, D) layout; the batch is
# not the first dimension, which per-sample decisions and forecasts assume.
