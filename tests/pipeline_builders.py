"""Tiny offline diffusers pipelines (random weights, in-memory tokenizers) for tests/test_pipelines_e2e.py."""
from __future__ import annotations

import torch
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, T5Config, UMT5EncoderModel
from transformers.convert_slow_tokenizer import bytes_to_unicode

import diffusers as d
from diffskip.testing import PIPELINES as TINY, clip_tokenizer, t5_tokenizer, tiny_clip_text, tiny_t5, tiny_vae

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>"]


def bpe_tokenizer(cls=PreTrainedTokenizerFast, **special) -> PreTrainedTokenizerFast:
    """Build a byte-level BPE tokenizer (one token per byte, a few special tokens) entirely in memory."""
    vocab = {c: i for i, c in enumerate(bytes_to_unicode().values())}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    out = cls(tokenizer_object=tok, **special)
    out.add_special_tokens({"additional_special_tokens": [s for s in SPECIALS if s not in special.values()]})
    return out


def umt5():
    return UMT5EncoderModel(T5Config(vocab_size=200, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4)).eval()


def flow_scheduler(**kw):
    return d.FlowMatchEulerDiscreteScheduler(**kw)


def wan_vae():
    return d.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                              temperal_downsample=[False, True, True]).eval()


def wan_transformer(in_channels: int):
    """A tiny WanTransformer3DModel (16 latent channels out; 36 in for image-to-video)."""
    return d.WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                   in_channels=in_channels, out_channels=16, text_dim=32, freq_dim=32, ffn_dim=32,
                                   num_layers=3, cross_attn_norm=True, qk_norm="rms_norm_across_heads",
                                   rope_max_seq_len=32).eval()


def wan_t2v():
    return d.WanPipeline(tokenizer=t5_tokenizer(), text_encoder=umt5(), vae=wan_vae(),
                         scheduler=flow_scheduler(shift=3.0), transformer=wan_transformer(16))


def wan_i2v():
    """Wan 2.2 I2V style: no CLIP image encoder; the image enters as latents concatenated to the noise."""
    return d.WanImageToVideoPipeline(tokenizer=t5_tokenizer(), text_encoder=umt5(), vae=wan_vae(),
                                     scheduler=flow_scheduler(shift=3.0), transformer=wan_transformer(36))


def ltx():
    vae = d.AutoencoderKLLTXVideo(in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
                                  decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
                                  decoder_layers_per_block=(1, 1, 1, 1, 1),
                                  spatio_temporal_scaling=(True, True, False, False),
                                  decoder_spatio_temporal_scaling=(True, True, False, False),
                                  decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4,
                                  upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1, patch_size_t=1,
                                  encoder_causal=True, decoder_causal=False).eval()
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    tr = d.LTXVideoTransformer3DModel(in_channels=8, out_channels=8, patch_size=1, patch_size_t=1,
                                      num_attention_heads=2, attention_head_dim=8, cross_attention_dim=16, num_layers=3,
                                      caption_channels=32).eval()
    return d.LTXPipeline(scheduler=flow_scheduler(), vae=vae, text_encoder=tiny_t5(), tokenizer=t5_tokenizer(),
                         transformer=tr)


def cogvideox():
    vae = d.AutoencoderKLCogVideoX(in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
                                   up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                   latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                   temporal_compression_ratio=4).eval()
    tr = d.CogVideoXTransformer3DModel(num_attention_heads=4, attention_head_dim=8, in_channels=4, out_channels=4,
                                       time_embed_dim=2, text_embed_dim=32, num_layers=3, sample_width=2,
                                       sample_height=2, sample_frames=9, patch_size=2, temporal_compression_ratio=4,
                                       max_text_seq_length=16).eval()
    return d.CogVideoXPipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(), vae=vae, transformer=tr,
                               scheduler=d.CogVideoXDDIMScheduler())


def animatediff():
    unet = d.UNet2DConditionModel(block_out_channels=(16, 32), layers_per_block=1, sample_size=8, in_channels=4,
                                  out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                  up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
                                  norm_num_groups=8).eval()
    adapter = d.MotionAdapter(block_out_channels=(16, 32), motion_layers_per_block=1, motion_norm_num_groups=8,
                              motion_num_attention_heads=2, motion_max_seq_length=8)
    return d.AnimateDiffPipeline(vae=tiny_vae(), text_encoder=tiny_clip_text(), tokenizer=clip_tokenizer(), unet=unet,
                                 motion_adapter=adapter, feature_extractor=None, image_encoder=None,
                                 scheduler=d.DDIMScheduler(steps_offset=1, beta_schedule="linear", clip_sample=False))


def latte():
    tr = d.LatteTransformer3DModel(sample_size=8, num_layers=2, patch_size=2, attention_head_dim=8,
                                   num_attention_heads=2, caption_channels=32, in_channels=4, cross_attention_dim=16,
                                   out_channels=8, attention_bias=True, activation_fn="gelu-approximate",
                                   num_embeds_ada_norm=1000, norm_type="ada_norm_single",
                                   norm_elementwise_affine=False, norm_eps=1e-6, video_length=2).eval()
    return d.LattePipeline(tokenizer=t5_tokenizer(), text_encoder=tiny_t5(), vae=tiny_vae(), transformer=tr,
                           scheduler=d.DDIMScheduler())


def image(size: int = 16) -> Image.Image:
    """A fixed RGB test image."""
    g = torch.Generator().manual_seed(3)
    return Image.fromarray((torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy())


def qwen_image():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2TokenizerFast

    cfg = Qwen2_5_VLConfig(text_config=dict(hidden_size=16, intermediate_size=16, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=2, vocab_size=300,
                                            rope_scaling=dict(mrope_section=[1, 1, 2], rope_type="default",
                                                              type="default"), rope_theta=1e6),
                           vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2,
                                              out_hidden_size=16),
                           hidden_size=16, vocab_size=300, vision_start_token_id=290, vision_end_token_id=291,
                           vision_token_id=292, image_token_id=293, video_token_id=294)
    enc = Qwen2_5_VLForConditionalGeneration(cfg).eval()
    vae = d.AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                   temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                   latents_std=[1.0] * 4).eval()
    tr = d.QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=3,
                                       attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                       guidance_embeds=False, axes_dims_rope=(8, 4, 4)).eval()
    tok = bpe_tokenizer(Qwen2TokenizerFast, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    return d.QwenImagePipeline(scheduler=flow_scheduler(), vae=vae, text_encoder=enc, tokenizer=tok,
                               transformer=tr)


def hidream():
    from transformers import LlamaConfig, LlamaForCausalLM

    llama = LlamaForCausalLM(LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=260,
                                         eos_token_id=261)).eval()
    tr = d.HiDreamImageTransformer2DModel(patch_size=2, in_channels=4, out_channels=4, num_layers=1,
                                          num_single_layers=1, attention_head_dim=8, num_attention_heads=4,
                                          caption_channels=[32, 32], text_emb_dim=64, num_routed_experts=2,
                                          num_activated_experts=2, axes_dims_rope=(4, 2, 2), max_resolution=(32, 32),
                                          llama_layers=(0, 1), force_inference_output=True).eval()
    tok4 = bpe_tokenizer(eos_token="<|eot_id|>", bos_token="<|begin_of_text|>")
    pipe = d.HiDreamImagePipeline(scheduler=flow_scheduler(), vae=tiny_vae(shift_factor=0.0),
                                  text_encoder=tiny_clip_text(True), tokenizer=clip_tokenizer(),
                                  text_encoder_2=tiny_clip_text(True), tokenizer_2=clip_tokenizer(),
                                  text_encoder_3=tiny_t5(), tokenizer_3=t5_tokenizer(), text_encoder_4=llama,
                                  tokenizer_4=tok4, transformer=tr)
    pipe.default_sample_size = 16  # its resolution rescaling targets default_sample_size**2 latent pixels
    return pipe


def hunyuan_video():
    from transformers import LlamaConfig, LlamaModel

    llama = LlamaModel(LlamaConfig(vocab_size=300, hidden_size=16, intermediate_size=37, num_hidden_layers=3,
                                   num_attention_heads=2, num_key_value_heads=2, bos_token_id=260,
                                   eos_token_id=261, pad_token_id=261)).eval()
    vae = d.AutoencoderKLHunyuanVideo(in_channels=3, out_channels=3, latent_channels=4,
                                      down_block_types=("HunyuanVideoDownBlock3D",) * 4,
                                      up_block_types=("HunyuanVideoUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                      layers_per_block=1, norm_num_groups=4, spatial_compression_ratio=8,
                                      temporal_compression_ratio=4, mid_block_add_attention=True).eval()
    tr = d.HunyuanVideoTransformer3DModel(in_channels=4, out_channels=4, num_attention_heads=2, attention_head_dim=10,
                                          num_layers=2, num_single_layers=2, num_refiner_layers=1, patch_size=1,
                                          patch_size_t=1, guidance_embeds=True, text_embed_dim=16,
                                          pooled_projection_dim=32, rope_axes_dim=(2, 4, 4)).eval()
    tok = bpe_tokenizer(bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|eot_id|>")
    return d.HunyuanVideoPipeline(text_encoder=llama, tokenizer=tok, transformer=tr, vae=vae,
                                  scheduler=flow_scheduler(shift=7.0), text_encoder_2=tiny_clip_text(),
                                  tokenizer_2=clip_tokenizer())


def _t(**kw) -> dict:
    return dict(num_inference_steps=4, output_type="latent", **kw)


_VIDEO = dict(prompt="a red shoe", height=16, width=16)
# name -> (builder, call kwargs, video, separate cond/uncond passes per step)
PIPELINES = {
    "WanPipeline": (wan_t2v, _t(**_VIDEO, negative_prompt="blur", num_frames=5, guidance_scale=5.0,
                                max_sequence_length=16), True, True),
    "WanImageToVideoPipeline": (wan_i2v, _t(height=16, width=16, num_frames=5, guidance_scale=5.0),
                                True, True),  # prompt embeddings given: its prompt cleaning needs ftfy
    "LTXPipeline": (ltx, _t(prompt="a red shoe", height=32, width=32, num_frames=9, guidance_scale=3.0,
                            max_sequence_length=16), True, False),
    "CogVideoXPipeline": (cogvideox, _t(**_VIDEO, num_frames=9, guidance_scale=6.0, max_sequence_length=16),
                          True, False),
    "AnimateDiffPipeline": (animatediff, _t(**_VIDEO, num_frames=2, guidance_scale=7.5), True, False),
    "HunyuanVideoPipeline": (hunyuan_video, _t(**_VIDEO, num_frames=5, guidance_scale=6.0, max_sequence_length=16,
                                               prompt_template={"template": "{}", "crop_start": 0}), True, False),
    "LattePipeline": (latte, _t(**_VIDEO, video_length=2, guidance_scale=4.5, clean_caption=False), True, False),
    "QwenImagePipeline": (qwen_image, _t(prompt="a red shoe", negative_prompt="blur", height=32, width=32,
                                         true_cfg_scale=4.0, max_sequence_length=16), False, True),
    "HiDreamImagePipeline": (hidream, _t(prompt="a red shoe", height=32, width=32, guidance_scale=5.0,
                                         max_sequence_length=16), False, False),
    "StableDiffusionXLPipeline": (TINY["sdxl"], _t(prompt="a red shoe", height=16, width=16, guidance_scale=5.0),
                                  False, False),
    "StableDiffusion3Pipeline": (TINY["sd3"], _t(prompt="a red shoe", height=16, width=16, guidance_scale=5.0,
                                                 max_sequence_length=16), False, False),
    "FluxPipeline": (TINY["flux"], _t(prompt="a red shoe", negative_prompt="blur", height=16, width=16,
                                      true_cfg_scale=4.0, max_sequence_length=16), False, True),
    "PixArtAlphaPipeline": (TINY["pixart"], _t(prompt="a red shoe", height=16, width=16, guidance_scale=4.5,
                                               use_resolution_binning=False, clean_caption=False), False, False),
}


def call_kwargs(name: str) -> dict:
    """Return the pipeline's call kwargs (tensors and images built fresh, deterministically)."""
    kw = dict(PIPELINES[name][1])
    if name == "WanImageToVideoPipeline":
        g = torch.Generator().manual_seed(5)
        kw.update(image=image(16), prompt_embeds=torch.randn(1, 16, 32, generator=g),
                  negative_prompt_embeds=torch.randn(1, 16, 32, generator=g))
    return kw
