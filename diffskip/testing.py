"""Tiny offline pipelines built from configs (random weights) for tests and the no-model smoke path.

Nothing here downloads: tokenizers are built in memory, every component from a config.
"""
from __future__ import annotations

import string

import torch
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer, T5Config,
                          T5EncoderModel, T5Tokenizer)

__all__ = ["clip_tokenizer", "t5_tokenizer", "tiny_pipeline", "tiny_clip_text", "tiny_t5", "tiny_vae", "tiny_unet",
           "PIPELINES"]


def clip_tokenizer() -> CLIPTokenizer:
    """Build a byte-level CLIP BPE tokenizer with single-character tokens and a few merges."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(c, len(vocab))
    merges = [("a", "n"), ("t", "h"), ("e", "r")]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def t5_tokenizer() -> T5Tokenizer:
    """Build a T5 unigram tokenizer over lowercase letters (word-initial and inner pieces)."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(p + c, -5.0) for p in ("\u2581", "") for c in string.ascii_lowercase + string.digits]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=64)


def tiny_clip_text(projection: bool = False, hidden: int = 32):
    """Return a tiny random CLIP text encoder (with a projection head for SDXL's second encoder)."""
    cfg = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, intermediate_size=37,
                         num_attention_heads=4, num_hidden_layers=2, vocab_size=1000, projection_dim=32,
                         max_position_embeddings=77)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg).eval()


def tiny_t5():
    """Return a tiny random T5 encoder."""
    return T5EncoderModel(T5Config(vocab_size=200, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   decoder_start_token_id=0)).eval()


def tiny_vae(latent: int = 4, **kw):
    """Return a tiny random AutoencoderKL (extra config fields in kw)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(32, 32), in_channels=3, out_channels=3, latent_channels=latent,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         norm_num_groups=16, sample_size=16, **kw).eval()


def tiny_unet(**kw):
    """Return a tiny random UNet2DConditionModel (extra config fields in kw)."""
    from diffusers import UNet2DConditionModel

    cfg = dict(block_out_channels=(32, 32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
               down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
               up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
               norm_num_groups=16)
    cfg.update(kw)
    return UNet2DConditionModel(**cfg).eval()


def _sd(kind: str):
    import diffusers as d

    comps = dict(vae=tiny_vae(), text_encoder=tiny_clip_text(), tokenizer=clip_tokenizer(), unet=tiny_unet(),
                 scheduler=d.DDIMScheduler(steps_offset=1, beta_schedule="scaled_linear", beta_start=0.00085,
                                           beta_end=0.012, clip_sample=False, set_alpha_to_one=False),
                 safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "sd-controlnet":
        comps["controlnet"] = d.ControlNetModel(
            block_out_channels=(32, 32, 64), layers_per_block=1, in_channels=4, cross_attention_dim=32,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"), norm_num_groups=16,
            conditioning_embedding_out_channels=(16, 32)).eval()
        return d.StableDiffusionControlNetPipeline(**comps)
    cls = d.StableDiffusionImg2ImgPipeline if kind == "sd-img2img" else d.StableDiffusionPipeline
    return cls(**comps)


def _sdxl():
    import diffusers as d

    unet = tiny_unet(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=80, cross_attention_dim=64, use_linear_projection=True)
    return d.StableDiffusionXLPipeline(vae=tiny_vae(), text_encoder=tiny_clip_text(),
                                       text_encoder_2=tiny_clip_text(True),
                                       tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(), unet=unet,
                                       scheduler=d.EulerDiscreteScheduler(steps_offset=1))


def _pixart():
    import diffusers as d

    tr = d.PixArtTransformer2DModel(sample_size=8, num_layers=4, patch_size=2, attention_head_dim=8,
                                    num_attention_heads=3, caption_channels=32, in_channels=4, cross_attention_dim=24,
                                    out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
                                    num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                                    norm_elementwise_affine=False, norm_eps=1e-6).eval()
    return d.PixArtAlphaPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(), vae=tiny_vae(), transformer=tr,
                                 scheduler=d.DDIMScheduler())


def _dit():
    import diffusers as d

    tr = d.DiTTransformer2DModel(sample_size=8, num_layers=4, patch_size=2, attention_head_dim=8,
                                 num_attention_heads=2, in_channels=4, out_channels=8, num_embeds_ada_norm=1000).eval()
    return d.DiTPipeline(transformer=tr, vae=tiny_vae(), scheduler=d.DDIMScheduler(),
                         id2label={i: f"class{i}" for i in range(10)})


def _sd3():
    import diffusers as d

    tr = d.SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=4, attention_head_dim=8,
                                 num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                 pooled_projection_dim=64, out_channels=4).eval()
    return d.StableDiffusion3Pipeline(transformer=tr, vae=tiny_vae(shift_factor=0.0), text_encoder=tiny_clip_text(True),
                                      text_encoder_2=tiny_clip_text(True), text_encoder_3=tiny_t5(),
                                      tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(),
                                      tokenizer_3=t5_tokenizer(), scheduler=d.FlowMatchEulerDiscreteScheduler())


def _flux(kind: str):
    import diffusers as d

    tr = d.FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)).eval()
    cls = d.FluxImg2ImgPipeline if kind == "flux-img2img" else d.FluxPipeline
    return cls(transformer=tr, vae=tiny_vae(shift_factor=0.0), text_encoder=tiny_clip_text(), text_encoder_2=tiny_t5(),
               tokenizer=clip_tokenizer(), tokenizer_2=t5_tokenizer(), scheduler=d.FlowMatchEulerDiscreteScheduler())


PIPELINES = {"sd": lambda: _sd("sd"), "sd-img2img": lambda: _sd("sd-img2img"),
             "sd-controlnet": lambda: _sd("sd-controlnet"), "sdxl": _sdxl, "pixart": _pixart, "dit": _dit,
             "sd3": _sd3, "flux": lambda: _flux("flux"), "flux-img2img": lambda: _flux("flux-img2img")}


def tiny_pipeline(kind: str, seed: int = 0):
    """Build a tiny random-weight pipeline of `kind` (one of PIPELINES) deterministically."""
    if kind not in PIPELINES:
        raise ValueError(f"unknown tiny pipeline {kind!r}; allowed: {sorted(PIPELINES)}.")
    torch.manual_seed(seed)
    pipe = PIPELINES[kind]()
    pipe.set_progress_bar_config(disable=True)
    return pipe
