"""Tiny configs and inputs for more of diffusers' image and video denoisers (data for test_coverage.py)."""
from __future__ import annotations

import torch

from coverage_base import Case, R


def _ideogram(t):
    from diffusers.models.transformers.transformer_ideogram4 import (IMAGE_POSITION_OFFSET, LLM_TOKEN_INDICATOR,
                                                                     OUTPUT_IMAGE_INDICATOR)
    txt, img = 4, 4
    hs = torch.cat([torch.zeros(1, txt, 16), R(1, img, 16)], 1)
    ehs = torch.cat([R(1, txt, 24), torch.zeros(1, img, 24)], 1)
    pos = torch.zeros(1, txt + img, 3, dtype=torch.long)
    pos[:, :txt] = torch.arange(txt)[:, None]
    pos[:, txt:, 0] = IMAGE_POSITION_OFFSET
    pos[:, txt:, 1] = torch.tensor([0, 0, 1, 1]) + IMAGE_POSITION_OFFSET
    pos[:, txt:, 2] = torch.tensor([0, 1, 0, 1]) + IMAGE_POSITION_OFFSET
    ind = torch.tensor([[LLM_TOKEN_INDICATOR] * txt + [OUTPUT_IMAGE_INDICATOR] * img])
    return dict(hidden_states=hs, encoder_hidden_states=ehs, timestep=1 - t / 1000, position_ids=pos,  # as its pipeline
                segment_ids=torch.ones(1, txt + img, dtype=torch.long), indicator=ind)


def _kandinsky6(t):
    return dict(hidden_states=R(1, 2, 4, 4, 9), encoder_hidden_states=R(1, 6, 8), pooled_projections=R(1, 8),
                timestep=t, visual_rope_pos=(torch.arange(2), torch.arange(2), torch.arange(2)))


def _krea2(t):
    pos = torch.zeros(4 + 4, 3)
    pos[4:, 1], pos[4:, 2] = torch.arange(2.0).repeat_interleave(2), torch.arange(2.0).repeat(2)
    return dict(hidden_states=R(1, 4, 16), encoder_hidden_states=R(1, 4, 3, 16), timestep=t / 1000,
                position_ids=pos, encoder_attention_mask=torch.tensor([[True, True, True, False]]))


def _minimax(t):
    n_txt, n_aud, n_vid = 4, 6, 8
    seq = n_txt + n_aud + n_vid
    txt, aud, vid = torch.arange(n_txt), torch.arange(n_txt, n_txt + n_aud), torch.arange(n_txt + n_aud, seq)
    tags = torch.zeros(seq, dtype=torch.long)
    tags[txt], tags[aud] = 1, 2
    t_idx = torch.zeros(seq, dtype=torch.long)
    t_idx[aud] = 1
    pos = torch.zeros(seq, 3)
    pos[:, 0] = torch.arange(seq, dtype=torch.float32)
    ramp = torch.arange(n_vid, dtype=torch.float32)
    pos[vid, 1], pos[vid, 2] = ramp % 4, ramp % 2
    return dict(hidden_states=R(1, n_vid, 16), audio_hidden_states=R(1, n_aud, 6), encoder_hidden_states=R(1, n_txt, 8),
                timestep=torch.cat([t / 1000, t / 2000]), timestep_indices=t_idx, token_tags=tags, position_ids=pos,
                video_indices=vid, audio_indices=aud, text_indices=txt)


_JOY = dict(patch_size=[1, 2, 2], in_channels=16, hidden_size=32, num_attention_heads=2, text_dim=16, num_layers=2,
            rope_dim_list=[4, 6, 6], theta=256)

CASES: list[Case] = [
    Case("Ideogram4Transformer2DModel", "Ideogram 4",
         dict(in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4, intermediate_size=32,
              adaln_dim=16, llm_features_dim=24, rope_theta=10_000, mrope_section=(2, 1, 1), norm_eps=1e-5),
         _ideogram),
    Case("JoyImageEditTransformer3DModel", "JoyImage Edit", _JOY,
         lambda t: dict(hidden_states=R(1, 16, 1, 4, 4), encoder_hidden_states=R(1, 6, 16), timestep=t)),
    Case("JoyImageEditPlusTransformer3DModel", "JoyImage Edit Plus", _JOY,
         lambda t: dict(hidden_states=R(1, 2, 16, 1, 2, 2), encoder_hidden_states=R(1, 6, 16), timestep=t,
                        shape_list=[[(1, 1, 1), (1, 1, 1)]])),
    Case("Kandinsky6Transformer3DModel", "Kandinsky 6",
         dict(in_visual_dim=4, out_visual_dim=4, in_text_dim=8, in_text_dim2=8, time_dim=16, patch_size=(1, 2, 2),
              model_dim=48, ff_dim=64, num_text_blocks=1, num_visual_blocks=2, axes_dims=(4, 4, 4), visual_cond=True,
              in_audio_dim=4, out_audio_dim=4), _kandinsky6),
    Case("Kandinsky6SRTransformer3DModel", "Kandinsky 6 SR",
         dict(in_visual_dim=4, out_visual_dim=8, time_dim=16, patch_size=(1, 2, 2), model_dim=24, ff_dim=32,
              num_visual_blocks=2, axes_dims=(4, 4, 4)),
         lambda t: dict(hidden_states=R(1, 2, 16, 16, 9), timestep=t)),
    Case("Krea2Transformer2DModel", "Krea 2",
         dict(in_channels=16, num_layers=2, attention_head_dim=8, num_attention_heads=4, num_key_value_heads=2,
              intermediate_size=32, timestep_embed_dim=8, text_hidden_dim=16, num_text_layers=3,
              text_num_attention_heads=2, text_num_key_value_heads=1, text_intermediate_size=16,
              num_layerwise_text_blocks=1, num_refiner_text_blocks=1, axes_dims_rope=(4, 2, 2), rope_theta=1000.0,
              norm_eps=1e-5), _krea2),
    Case("LongCatImageTransformer2DModel", "LongCat-Image",
         dict(patch_size=1, in_channels=4, num_layers=2, num_single_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8]),
         lambda t: dict(hidden_states=R(1, 16, 4), encoder_hidden_states=R(1, 6, 32), img_ids=torch.zeros(16, 3),
                        txt_ids=torch.zeros(6, 3), timestep=t / 1000, guidance=torch.tensor([3.5]))),
    Case("LuminaNextDiT2DModel", "Lumina-Next",
         dict(sample_size=8, patch_size=2, in_channels=4, hidden_size=24, num_layers=2, num_attention_heads=3,
              num_kv_heads=1, multiple_of=16, ffn_dim_multiplier=None, norm_eps=1e-5, learn_sigma=False,
              qk_norm=True, cross_attention_dim=32, scaling_factor=1.0),
         lambda t: dict(hidden_states=R(1, 4, 8, 8), encoder_hidden_states=R(1, 6, 32), timestep=1 - t / 1000,
                        encoder_mask=torch.ones(1, 6), image_rotary_emb=R(64, 64, 4), cross_attention_kwargs={})),
    Case("MiniMaxH3Transformer3DModel", "MiniMax-H3",
         dict(num_attention_heads=2, attention_head_dim=16, hidden_size=24, num_layers=2, num_refiner_layers=2,
              ffn_dim=32, in_channels=4, audio_in_channels=6, patch_size=(1, 2, 2), text_dim=8, freq_dim=8,
              time_embed_hidden_dim=24, time_embed_dim=16, rope_freq_dim=2), _minimax),
    Case("MotifVideoTransformer3DModel", "Motif-Video",
         dict(in_channels=33, out_channels=16, num_attention_heads=2, attention_head_dim=12, num_layers=2,
              num_single_layers=2, num_decoder_layers=0, mlp_ratio=4.0, patch_size=1, patch_size_t=1,
              qk_norm="rms_norm", norm_type="layer_norm", text_embed_dim=32, image_embed_dim=4, rope_theta=256.0,
              rope_axes_dim=(4, 4, 4), enable_text_cross_attention_dual=False,
              enable_text_cross_attention_single=False),
         lambda t: dict(hidden_states=R(1, 33, 2, 8, 8), encoder_hidden_states=R(1, 6, 32), timestep=t)),
]
