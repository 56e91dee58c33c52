"""Two-Dimensional Shuffle Mixer (TDSM), the light control block of RelaCtrl (Cao et al., 2025).

Written from the paper's description (no code was copied). Every permutation is drawn from a seeded
`torch.Generator`, so the same seed gives the same block and the same output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TDSMBlock", "permutation", "shuffle", "unshuffle"]


def permutation(n: int, seed: int) -> torch.Tensor:
    """Return a fixed permutation of range(n) drawn from a generator seeded with `seed`."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def shuffle(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Permute the L x d elements of each sample jointly (token and channel axes mixed).  # (B, L, d)"""
    b, length, d = x.shape
    return x.reshape(b, length * d)[:, perm].reshape(b, length, d)


def unshuffle(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Invert `shuffle` exactly (a scatter through the same permutation).  # (B, L, d)"""
    b, length, d = x.shape
    out = torch.empty_like(x.reshape(b, length * d))
    out[:, perm] = x.reshape(b, length * d)
    return out.reshape(b, length, d)


class WindowAttention(nn.Module):
    """Multi-head self-attention shared by every window of one channel group."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, d) -> (N, T, d)
        n, t, d = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v)  # (N, heads, T, d / heads)
        return self.out(y.transpose(1, 2).reshape(n, t, d))


class TDSMBlock(nn.Module):
    """adaLN-single modulation, channel-group split, 2-D shuffle, windowed shared attention, gated residual.

    Args:
        dim: channels of the base stream (D).
        groups: channel groups; fewer groups are wider (more capacity: each has D/groups channels).
        heads: attention heads per group (must divide D/groups).
        windows: windows per group; each holds L/windows tokens of the shuffled (L, d) grid.
        seed: seeds the channel permutation and each group's element shuffle.
    """

    def __init__(self, dim: int, groups: int, heads: int = 4, windows: int = 4, seed: int = 0):
        super().__init__()
        if groups < 1 or dim % groups or (dim // groups) % heads:
            raise ValueError(f"TDSMBlock: groups={groups} must divide dim={dim} into groups whose width "
                             f"{dim // max(groups, 1)} is a multiple of heads={heads}; allowed groups: "
                             f"{[g for g in range(1, dim + 1) if dim % g == 0 and (dim // g) % heads == 0]}.")
        self.dim, self.groups, self.windows, self.seed = dim, groups, windows, seed
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(3, dim) / dim**0.5)  # adaLN-single: own offsets
        self.attn = nn.ModuleList(WindowAttention(dim // groups, heads) for _ in range(groups))
        self.register_buffer("channels", permutation(dim, seed), persistent=False)
        self._perms: dict[int, list[torch.Tensor]] = {}  # tokens L -> one element permutation per group

    def element_perms(self, length: int, device: torch.device) -> list[torch.Tensor]:
        """Return each group's fixed permutation of its L x d elements (drawn once per token count)."""
        if length % self.windows:
            raise ValueError(f"TDSMBlock: {length} tokens do not split into windows={self.windows}; use a "
                             f"sample size whose token count is a multiple of {self.windows}.")
        if length not in self._perms:
            d = self.dim // self.groups
            self._perms[length] = [permutation(length * d, self.seed * 1009 + 1 + g) for g in range(self.groups)]
        return [p.to(device) for p in self._perms[length]]

    def mix(self, h: torch.Tensor) -> torch.Tensor:
        """Shuffle-mix the channel groups of a modulated stream.  # (B, L, D) -> (B, L, D)"""
        b, length, _ = h.shape
        h = h[..., self.channels]
        out = []
        for g, (part, perm) in enumerate(zip(h.chunk(self.groups, dim=-1), self.element_perms(length, h.device))):
            d = part.shape[-1]
            s = shuffle(part, perm).reshape(b * self.windows, length // self.windows, d)  # windows of L/4 tokens
            out.append(unshuffle(self.attn[g](s).reshape(b, length, d), perm))
        mixed = torch.cat(out, dim=-1)
        return torch.empty_like(mixed).index_copy_(-1, self.channels, mixed)  # undo the channel permutation

    def forward(self, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        """Return x + gate * mix(modulate(norm(x))); `timestep` is the base's adaLN-single output (B, 6D)."""
        b = x.shape[0]
        mod = self.scale_shift_table[None] + timestep.reshape(b, 6, self.dim)[:, :3]  # (B, 3, D)
        shift, scale, gate = mod.unbind(1)
        h = self.norm(x) * (1 + scale[:, None]) + shift[:, None]
        return x + gate[:, None] * self.mix(h)
