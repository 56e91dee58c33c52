"""Component configs of the Fashion-MNIST zoo (CLIP, VAE, UNet, PixArt, T5)."""
from __future__ import annotations

from diffusers import AutoencoderKL, PixArtTransformer2DModel, UNet2DConditionModel
from transformers import CLIPConfig, CLIPModel, T5Config, T5EncoderModel

TEXT_DIM = 256
LATENT_CHANNELS = 4
BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
             beta_schedule="scaled_linear")


def clip_config(vocab_size: int, bos: int, eos: int) -> CLIPConfig:
    """Return a small CLIP: 256-d 3-layer text tower, 128-d 4-layer ViT with 4x4 patches on 32x32."""
    text = dict(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=4 * TEXT_DIM,
                num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77,
                bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, projection_dim=128)
    vision = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4, image_size=32, patch_size=4, projection_dim=128)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=128)


def build_clip(vocab_size: int, bos: int, eos: int) -> CLIPModel:
    """Build the CLIP model from its config."""
    return CLIPModel(clip_config(vocab_size, bos, eos))


def build_vae() -> AutoencoderKL:
    """Build the 32x32x3 <-> 4x8x8 AutoencoderKL (two downsamplings)."""
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, sample_size=32,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=32,
    )


def build_unet() -> UNet2DConditionModel:
    """Build the ~6M-parameter cross-attention UNet on 4x8x8 latents."""
    return UNet2DConditionModel(
        sample_size=8, in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(64, 128, 128), layers_per_block=1, cross_attention_dim=TEXT_DIM,
        attention_head_dim=8, norm_num_groups=32, transformer_layers_per_block=1,
    )


def build_pixart() -> PixArtTransformer2DModel:
    """Build the 12-block PixArt-alpha transformer (inner 128, patch 1) on 4x8x8 latents."""
    return PixArtTransformer2DModel(
        num_attention_heads=4, attention_head_dim=32, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, num_layers=12, cross_attention_dim=128, sample_size=8,
        patch_size=1, caption_channels=TEXT_DIM, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, interpolation_scale=1,
    )


def build_t5(vocab_size: int) -> T5EncoderModel:
    """Build the tiny T5 encoder (d_model 256, 2 layers) trained jointly with PixArt."""
    config = T5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_kv=64, d_ff=512, num_layers=2,
                      num_heads=4, dropout_rate=0.0, feed_forward_proj="gated-gelu",
                      pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5EncoderModel(config)


def count(model) -> int:
    """Return the number of parameters of a module."""
    return sum(p.numel() for p in model.parameters())
