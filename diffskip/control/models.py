"""Control models for PixArt-style DiTs: RelaCtrl's light TDSM branch and a full copied-block ControlNet.

Both are diffusers `ModelMixin`/`ConfigMixin` (save_pretrained / from_pretrained) and expose one method,
`branch(index, hidden, state, cond, block_kwargs)`, that diffskip's attach mechanism calls at each base
block with a branch (diffskip.control.inject): it returns the branch's next state and the residual added to
that base block's output. Every projection into or out of the base stream starts at zero, so an untrained
model leaves the base model's output unchanged, bit for bit.
"""
from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .tdsm import TDSMBlock

__all__ = ["RelaCtrlModel", "FullControlNetModel", "zero_linear"]


def zero_linear(dim: int) -> nn.Linear:
    """Return a Linear(dim, dim) whose weight and bias start at zero."""
    layer = nn.Linear(dim, dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _check_positions(positions: list[int], num_layers: int) -> None:
    if not positions or sorted(set(positions)) != list(positions) or positions[0] < 0 or positions[-1] >= num_layers:
        raise ValueError(f"positions={positions} must be strictly increasing base block indices in "
                         f"[0, {num_layers}); e.g. [2, 3, 4].")


class RelaCtrlModel(ModelMixin, ConfigMixin):
    """RelaCtrl: TDSM control blocks at the relevant base blocks, wider (fewer groups) where relevance is high.

    At base block i with a branch, the block sees the base stream plus the projected control state,
    u = x_i + P_in(c); c <- TDSM_i(u); the base block's output gets P_out(c). The first branch starts from the
    condition tokens (frozen VAE latents through the base's frozen patch and position embedding).

    Args:
        dim: channels of the base stream.
        num_layers: blocks of the base model (for validation).
        positions: base block indices with a TDSM block, increasing.
        groups: channel groups per position (same length as positions).
        heads, windows: attention heads per group, windows per group.
        seed: seeds every fixed permutation (block k uses seed * 100 + position).
        condition: the condition this model was trained on ("edges" or "mask"), recorded for users.
    """

    @register_to_config
    def __init__(self, dim: int = 128, num_layers: int = 12, positions: tuple[int, ...] = (0,),
                 groups: tuple[int, ...] = (1,), heads: int = 4, windows: int = 4, seed: int = 0,
                 condition: str = "edges"):
        super().__init__()
        positions, groups = list(positions), list(groups)
        _check_positions(positions, num_layers)
        if len(groups) != len(positions):
            raise ValueError(f"groups={groups} needs one entry per position ({len(positions)} positions: {positions}).")
        self.slot = {p: k for k, p in enumerate(positions)}
        self.proj_in = nn.ModuleList(zero_linear(dim) for _ in positions)
        self.blocks = nn.ModuleList(TDSMBlock(dim, g, heads, windows, seed * 100 + p)
                                    for p, g in zip(positions, groups))
        self.proj_out = nn.ModuleList(zero_linear(dim) for _ in positions)

    @property
    def positions(self) -> list[int]:
        return list(self.config.positions)

    def branch(self, index: int, hidden: torch.Tensor, state: torch.Tensor | None, cond: torch.Tensor,
               block_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the TDSM branch at base block `index`; return (control state, residual).  # (B, L, D) each"""
        k = self.slot[index]
        c = cond if state is None else state
        c = self.blocks[k](hidden + self.proj_in[k](c), block_kwargs["timestep"])
        return c, self.proj_out[k](c)


class FullControlNetModel(ModelMixin, ConfigMixin):
    """PixArt-delta-style ControlNet: trainable copies of the first base blocks, zero linear after each.

    c_0 = x_0 + P_before(cond); c_{k+1} = copy_k(c_k, same text, mask and timestep as base block k);
    base block k's output gets P_k(c_{k+1}). `from_transformer` copies the base weights.
    """

    @register_to_config
    def __init__(self, dim: int = 128, num_layers: int = 12, num_blocks: int = 6, num_attention_heads: int = 4,
                 attention_head_dim: int = 32, cross_attention_dim: int = 128,
                 activation_fn: str = "gelu-approximate", num_embeds_ada_norm: int = 1000,
                 attention_bias: bool = True, norm_elementwise_affine: bool = False, norm_eps: float = 1e-6,
                 condition: str = "edges"):
        super().__init__()
        _check_positions(list(range(num_blocks)), num_layers)
        self.before = zero_linear(dim)
        self.blocks = nn.ModuleList(BasicTransformerBlock(
            dim, num_attention_heads, attention_head_dim, cross_attention_dim=cross_attention_dim,
            activation_fn=activation_fn, num_embeds_ada_norm=num_embeds_ada_norm, attention_bias=attention_bias,
            norm_type="ada_norm_single", norm_elementwise_affine=norm_elementwise_affine, norm_eps=norm_eps)
            for _ in range(num_blocks))
        self.after = nn.ModuleList(zero_linear(dim) for _ in range(num_blocks))

    @classmethod
    def from_transformer(cls, transformer: nn.Module, num_blocks: int | None = None,
                         condition: str = "edges") -> FullControlNetModel:
        """Build one from a PixArtTransformer2DModel, copying its first `num_blocks` blocks (default: half)."""
        c = transformer.config
        n = c.num_layers // 2 if num_blocks is None else num_blocks
        model = cls(dim=c.num_attention_heads * c.attention_head_dim, num_layers=c.num_layers, num_blocks=n,
                    num_attention_heads=c.num_attention_heads, attention_head_dim=c.attention_head_dim,
                    cross_attention_dim=c.cross_attention_dim, activation_fn=c.activation_fn,
                    num_embeds_ada_norm=c.num_embeds_ada_norm, attention_bias=c.attention_bias,
                    norm_elementwise_affine=c.norm_elementwise_affine, norm_eps=c.norm_eps, condition=condition)
        for copy, block in zip(model.blocks, transformer.transformer_blocks):
            copy.load_state_dict(block.state_dict())
        return model

    @property
    def positions(self) -> list[int]:
        return list(range(self.config.num_blocks))

    def branch(self, index: int, hidden: torch.Tensor, state: torch.Tensor | None, cond: torch.Tensor,
               block_kwargs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Run copy `index` on the control state; return (control state, residual).  # (B, L, D) each"""
        c = hidden + self.before(cond) if state is None else state
        c = self.blocks[index](c, **block_kwargs)
        return c, self.after[index](c)
