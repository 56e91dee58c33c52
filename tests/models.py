"""Tiny denoisers for every built-in adapter, their inputs, and a denoising loop driven by the timestep."""
from __future__ import annotations

import torch
from torch import nn

import diffusers as d
from diffskip.testing import tiny_unet

B_TXT = 5  # text tokens


def _text(b, dim):
    return torch.randn(b, B_TXT, dim)


def build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "unet-sd":
        return tiny_unet()
    if kind == "unet-sdxl":
        return tiny_unet(addition_embed_type="text_time", addition_time_embed_dim=8, cross_attention_dim=64,
                     projection_class_embeddings_input_dim=80, use_linear_projection=True)
    if kind == "unet2d":
        return d.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32, 32),
                             layers_per_block=1, norm_num_groups=8,
                             down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D")).eval()
    if kind == "dit":
        return d.DiTTransformer2DModel(sample_size=8, num_layers=4, patch_size=2, attention_head_dim=8,
                                       num_attention_heads=2, in_channels=4, out_channels=4,
                                       num_embeds_ada_norm=10).eval()
    if kind == "pixart":
        return d.PixArtTransformer2DModel(sample_size=8, num_layers=4, patch_size=2, attention_head_dim=8,
                                          num_attention_heads=3, caption_channels=32, in_channels=4,
                                          cross_attention_dim=24, out_channels=4, attention_bias=True,
                                          activation_fn="gelu-approximate", num_embeds_ada_norm=1000,
                                          norm_type="ada_norm_single", norm_elementwise_affine=False,
                                          norm_eps=1e-6).eval()
    if kind == "sd3":
        return d.SD3Transformer2DModel(sample_size=8, patch_size=1, in_channels=4, num_layers=4, attention_head_dim=8,
                                       num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
                                       pooled_projection_dim=64, out_channels=4).eval()
    if kind == "flux":
        return d.FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=2, num_single_layers=2,
                                        attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                        pooled_projection_dim=32, axes_dims_rope=(4, 4, 8)).eval()
    if kind == "sana":
        return d.SanaTransformer2DModel(patch_size=1, in_channels=4, out_channels=4, num_layers=4,
                                        num_attention_heads=2, attention_head_dim=4, num_cross_attention_heads=2,
                                        cross_attention_head_dim=4, cross_attention_dim=8, caption_channels=8,
                                        sample_size=8).eval()
    raise KeyError(kind)


KINDS = ["unet-sd", "unet-sdxl", "unet2d", "dit", "pixart", "sd3", "flux", "sana"]


def inputs(kind: str, b: int, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """Return (x, extra kwargs) for a model call of batch b."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    if kind == "unet-sd":
        return r(b, 4, 8, 8), {"encoder_hidden_states": r(b, B_TXT, 32)}
    if kind == "unet-sdxl":
        return r(b, 4, 8, 8), {"encoder_hidden_states": r(b, B_TXT, 64),
                               "added_cond_kwargs": {"text_embeds": r(b, 32), "time_ids": r(b, 6)}}
    if kind == "unet2d":
        return r(b, 3, 8, 8), {}
    if kind == "dit":
        return r(b, 4, 8, 8), {"class_labels": torch.arange(b) % 10}
    if kind == "pixart":
        return r(b, 4, 8, 8), {"encoder_hidden_states": r(b, B_TXT, 32),
                               "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}
    if kind == "sd3":
        return r(b, 4, 8, 8), {"encoder_hidden_states": r(b, B_TXT, 32), "pooled_projections": r(b, 64)}
    if kind == "flux":
        img = torch.stack(torch.meshgrid(torch.zeros(1), torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1)
        return r(b, 16, 16), {"encoder_hidden_states": r(b, B_TXT, 32), "pooled_projections": r(b, 32),
                              "img_ids": img.reshape(16, 3), "txt_ids": torch.zeros(B_TXT, 3)}
    if kind == "sana":
        return r(b, 4, 8, 8), {"encoder_hidden_states": r(b, B_TXT, 8)}
    raise KeyError(kind)


def stacked_inputs(kind: str, seeds: list[int]) -> tuple[torch.Tensor, dict]:
    """Concatenate batch-1 inputs of several seeds (so row i equals the batch-1 input of seeds[i])."""
    parts = [inputs(kind, 1, s) for s in seeds]
    cat = lambda vs: torch.cat(vs) if vs[0].dim() and vs[0].shape[0] == 1 else vs[0]  # noqa: E731
    kw = {k: ({kk: cat([p[1][k][kk] for p in parts]) if v is not None else None for kk, v in parts[0][1][k].items()}
              if isinstance(parts[0][1][k], dict) else cat([p[1][k] for p in parts])) for k in parts[0][1]}
    return torch.cat([p[0] for p in parts]), kw


def denoise(model: nn.Module, kind: str, b: int = 2, steps: int = 6, seed: int = 0, xkw=None) -> torch.Tensor:
    """Run a plain Euler-like loop calling `model` once per step with decreasing timesteps."""
    x, kw = xkw or inputs(kind, b, seed)
    b = x.shape[0]
    name = "sample" if kind.startswith("unet") else "hidden_states"
    with torch.no_grad():
        for t in torch.linspace(999, 50, steps):
            tt = t / 1000 if kind == "flux" else t
            ts = tt.expand(b) if not kind.startswith("unet") else tt
            out = model(**{name: x}, timestep=ts, return_dict=False, **kw)[0]
            x = x - 0.1 * out
    return x
