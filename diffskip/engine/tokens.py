"""Token-level partial compute (token-wise feature caching after ToCa, Zou et al. 2024, and DuCa, Zou et al. 2024).

With a policy's `tokens` > 0, in a step where a DiT block (or a span of blocks sharing one summed residual,
engine/reuse.py `Spans`) would replay, the `tokens` fraction of the span's tokens whose input changed most since
they last computed (relative L2 change per token, per sample) is gathered from the span's input stream, runs
through the span's blocks as a shorter sequence (self-attention among those tokens only; other arguments such as
the text tokens and the timestep embedding stay whole), and the fresh residual replaces the replayed one at those
tokens, for this step and, as an offset on the forecast, for later replays until the span computes again.

Supported: residual reuse on blocks with one (batch, tokens, channels) stream whose tokens interact only through
attention and that take no per-token argument besides it (PixArt, DiT). Refused with an error naming the fix:
output reuse (UNets), two-stream blocks (SD3, Flux joint attention), per-token arguments (rotary embeddings).
FLOPs: a partial run counts the unit's FLOPs times the fraction of tokens it computed (see engine/flops.py).
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from torch.utils._pytree import tree_leaves

from ..errors import PolicyError, SessionError
from .cache import stream

__all__ = ["Tokens", "check_model"]


def check_model(session) -> None:
    """Refuse tokens > 0 at session start on models whose units it cannot run on a subset of tokens."""
    p, h = session.policy, session.hooked
    if not p.tokens or not p.reuses:
        return
    name, fix = type(h.model).__name__, f"Fix: tokens=0 on {type(h.model).__name__}."
    if h.adapter.reuse != "residual":
        raise PolicyError(f"{p}: tokens={p.tokens} recomputes a fraction of a transformer block's tokens, but the "
                          f"units of {name} replay their outputs (UNet layers have no token stream); allowed: "
                          f"tokens>0 on DiTs with residual reuse (PixArt, DiT). {fix}")
    multi = sorted({u.streams for u in h.units if u.index in session.skippable and not isinstance(u.streams, str)})
    if multi:
        raise PolicyError(f"{p}: the blocks of {name} carry two streams {multi} (joint text-image attention), whose "
                          f"tokens tokens>0 would have to select together; allowed: blocks with one token stream "
                          f"(PixArt, DiT). {fix}")
    if h.adapter.unbatched:
        raise PolicyError(f"{p}: {name} passes {list(h.adapter.unbatched)} to its blocks (per-token rotary "
                          f"embeddings), which tokens>0 would have to gather with the tokens; allowed: blocks whose "
                          f"only per-token input is their stream (PixArt, DiT). {fix}")


def _at(idx: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return idx.unsqueeze(-1).expand(-1, -1, x.shape[-1])  # (B, k) -> (B, k, D) gather/scatter index


def with_stream(bound: inspect.BoundArguments, name: str, value: torch.Tensor) -> inspect.BoundArguments:
    """Return a copy of a unit's bound arguments with its stream `name` replaced."""
    args = dict(bound.arguments)
    base, _, index = name.partition("[")
    if index:
        seq = list(args[base])
        seq[int(index.rstrip("]"))] = value
        args[base] = type(args[base])(seq)
    else:
        args[base] = value
    return inspect.BoundArguments(bound.signature, args)


class Tokens:
    """Run a replaying span on its most-changed tokens and patch the cache there (one per session)."""

    def __init__(self, session):
        self.s = session
        self.fraction = session.policy.tokens if session.policy.reuses else 0.0
        self.checked: set[int] = set()  # units whose call arguments were checked for per-token data
        check_model(session)

    @property
    def on(self) -> bool:
        return self.fraction > 0.0

    def reset(self, key: Any, x: torch.Tensor, rows: tuple[int, ...] | None = None) -> None:
        """The span `key` computes (every row, or `rows`) from input `x` (B, N, D): remember it for selection."""
        cache, k = self.s.branch.cache, ("inputs", key)
        if rows is None or cache.get(k) is None:
            cache.keep(k, x.detach().clone())
            return
        idx = torch.tensor(rows, device=x.device)
        cache.keep(k, cache.get(k).index_copy(0, idx, x.index_select(0, idx)))

    def select(self, key: Any, x: torch.Tensor) -> torch.Tensor:
        """Return, per sample, the sorted indices (B, k) of the tokens whose input changed most since they last
        computed (relative L2 change); every token, in order, at tokens=1."""
        b, n = x.shape[:2]
        k = min(n, max(1, round(self.fraction * n)))
        if k == n:
            return torch.arange(n, device=x.device).expand(b, n)
        last = self.s.branch.cache.get(("inputs", key))
        if last is None or last.shape != x.shape:
            raise SessionError(f"span {key}: no inputs of shape {tuple(x.shape)} kept from its last compute; "
                               f"allowed: a span that computed in this run before it replays. Fix: report this.")
        change = (x - last).float().norm(dim=-1) / last.float().norm(dim=-1).clamp_min(1e-12)  # (B, N)
        return change.topk(k, dim=1).indices.sort(dim=1).values

    def check(self, unit, bound: inspect.BoundArguments, name: str, x: torch.Tensor) -> None:
        """Refuse a unit whose stream is not (B, N, D) or that takes another argument with N tokens."""
        if unit.index in self.checked:
            return
        model = type(self.s.hooked.model).__name__
        if x.dim() != 3:
            raise SessionError(f"unit {unit.index} of {model}: tokens>0 needs a (batch, tokens, channels) stream; "
                               f"{name!r} has shape {tuple(x.shape)}. Fix: tokens=0 on this model.")
        b, n = x.shape[:2]
        for arg, v in bound.arguments.items():
            for t in tree_leaves(v) if arg != name.partition("[")[0] else ():
                if isinstance(t, torch.Tensor) and (n in t.shape[1:] or (t.dim() and t.shape[0] == n != b)):
                    raise SessionError(
                        f"unit {unit.index} of {model}: argument {arg!r} of shape {tuple(t.shape)} has a dimension "
                        f"of {n}, the stream's token count (per-token data such as rotary embeddings or a token "
                        f"mask), which tokens>0 would have to gather with the tokens; not supported. Fix: tokens=0 "
                        f"on this model.")
        self.checked.add(unit.index)

    def partial(self, unit, call_next: Callable, bound, key: Any, first: bool, last: bool) -> Any:
        """Run one unit of a replaying span on the span's selected tokens; at the span's last unit return the
        replayed output with the fresh tokens in place (earlier units return their stream unchanged)."""
        s, br = self.s, self.s.branch
        name = s.streams[unit.index].names[0]
        x = stream(bound, name)  # (B, N, D)
        if first:
            self.check(unit, bound, name, x)
            idx = self.select(key, x)  # (B, k)
            x0 = cur = x.gather(1, _at(idx, x))  # (B, k, D)
        else:
            idx, x0, cur = br.pending.pop(("tokens", key))
        sub = with_stream(bound, name, cur)
        try:
            out = s.run(unit, call_next, sub.args, sub.kwargs, s.batch)
        except RuntimeError as e:
            raise SessionError(f"unit {unit.index} of {type(s.hooked.model).__name__} failed on {cur.shape[1]} of "
                               f"{x.shape[1]} tokens ({e}); tokens>0 needs blocks whose tokens interact only "
                               f"through attention (no convolution over the token grid). Fix: tokens=0.") from e
        s.meter.discount(unit.index, s.batch, cur.shape[1] / x.shape[1])
        if not isinstance(out, torch.Tensor) or out.shape != cur.shape:
            raise SessionError(f"unit {unit.index}: returned {type(out).__name__} "
                               f"{tuple(getattr(out, 'shape', ()))} for a stream of shape {tuple(cur.shape)}; "
                               f"tokens>0 needs blocks that return their stream's shape. Fix: tokens=0.")
        if not last:
            br.pending[("tokens", key)] = (idx, x0, out)
            return x
        br.cache.patch_tokens(key, idx, out - x0, s.step)
        inputs = br.cache.get(("inputs", key))
        if inputs is not None:
            br.cache.keep(("inputs", key), inputs.scatter(1, _at(idx, x), x0))
        full = x + br.cache.replay(key, s.step)[0]
        return full.scatter(1, _at(idx, x), out.to(full.dtype))  # exactly the block's output at those tokens
