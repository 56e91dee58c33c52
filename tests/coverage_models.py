"""The coverage table: every image/video denoiser class diffusers exports, as data (tiny config + input builder).

Rows live in coverage_video.py, coverage_image.py, coverage_unet.py and coverage_more.py; this module joins them,
lists the classes that are out of scope with the reason, and enumerates diffusers the way issue #20 does.
"""
from __future__ import annotations

import diffusers

import coverage_image
import coverage_more
import coverage_more2
import coverage_more3
import coverage_unet
import coverage_video
from coverage_base import Case

__all__ = ["CASES", "OUT_OF_SCOPE", "NAMED_EXTRA", "NAMED", "enumerated", "in_scope"]

CASES: list[Case] = (coverage_video.CASES + coverage_image.CASES + coverage_unet.CASES + coverage_more.CASES
                     + coverage_more2.CASES + coverage_more3.CASES)

OUT_OF_SCOPE = {
    "AceStepTransformer1DModel": "audio (1-D music DiT)",
    "AudioLDM2UNet2DConditionModel": "audio (spectrogram UNet with two text streams)",
    "MiniMaxMusic3Transformer1DModel": "audio (1-D music transformer)",
    "StableAudioDiTModel": "audio (1-D DiT)",
    "StableAudio3DiTModel": "audio (1-D DiT)",
    "UNet1DModel": "1-D (trajectories / audio)",
    "HunyuanDiT2DControlNetModel": "ControlNet branch, not a denoiser",
    "HunyuanDiT2DMultiControlNetModel": "ControlNet branch, not a denoiser",
    "UNetControlNetXSModel": "ControlNet-XS (UNet fused with a control branch)",
    "TransformerTemporalModel": "a temporal layer used inside video UNets, not a denoiser",
}

# Denoisers the issue names whose class name escapes the enumeration filter (no "Model" suffix).
NAMED_EXTRA = ("I2VGenXLUNet",)


# The families issue #20 names, each with the table row (Case id) that covers it.
NAMED = {
    "Wan 2.1/2.2 T2V": "WanTransformer3DModel", "Wan 2.1/2.2 I2V": "WanTransformer3DModel-i2v",
    "Wan VACE": "WanVACETransformer3DModel", "Wan Animate": "WanAnimateTransformer3DModel",
    "HunyuanVideo 1.0": "HunyuanVideoTransformer3DModel", "HunyuanVideo 1.5": "HunyuanVideo15Transformer3DModel",
    "HunyuanVideo Framepack": "HunyuanVideoFramepackTransformer3DModel", "LTX-Video": "LTXVideoTransformer3DModel",
    "LTX-2": "LTX2VideoTransformer3DModel", "CogVideoX": "CogVideoXTransformer3DModel",
    "Mochi": "MochiTransformer3DModel", "Allegro": "AllegroTransformer3DModel",
    "SkyReels-V2": "SkyReelsV2Transformer3DModel", "Cosmos": "CosmosTransformer3DModel",
    "Latte": "LatteTransformer3DModel", "Sana Video": "SanaVideoTransformer3DModel",
    "Qwen-Image": "QwenImageTransformer2DModel", "FLUX.2": "Flux2Transformer2DModel",
    "HiDream": "HiDreamImageTransformer2DModel", "Lumina 2": "Lumina2Transformer2DModel",
    "Chroma": "ChromaTransformer2DModel", "AuraFlow": "AuraFlowTransformer2DModel",
    "CogView 4": "CogView4Transformer2DModel", "HunyuanDiT": "HunyuanDiT2DModel",
    "HunyuanImage": "HunyuanImageTransformer2DModel", "OmniGen": "OmniGenTransformer2DModel",
    "Z-Image": "ZImageTransformer2DModel", "Bria": "BriaTransformer2DModel",
    "Kandinsky 5": "Kandinsky5Transformer3DModel", "SDXL": "UNet2DConditionModel-sdxl",
    "SD3.5": "SD3Transformer2DModel-sd35", "UNet3DConditionModel": "UNet3DConditionModel",
    "AnimateDiff": "UNetMotionModel", "Stable Video Diffusion": "UNetSpatioTemporalConditionModel",
    "I2VGen-XL": "I2VGenXLUNet",
}


def enumerated() -> list[str]:
    """Return diffusers' exported denoiser classes by issue #20's rule, plus the named extras."""
    names = [n for n in dir(diffusers) if n.endswith("Model") and ("Transformer" in n or "UNet" in n or "DiT" in n)]
    return sorted(set(names) | set(NAMED_EXTRA))


def in_scope() -> list[str]:
    """Return the enumerated classes that are image or video denoisers."""
    return [n for n in enumerated() if n not in OUT_OF_SCOPE]
