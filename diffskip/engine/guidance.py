"""Which rows or call of each denoiser step are classifier-free guidance's unconditional half (CFG-aware caching).

Batched guidance (diffusers' Stable Diffusion, SDXL, SD3, PixArt) concatenates [uncond, cond] into one call:
`uncond="half"`. Pipelines calling the denoiser twice per step (Wan, Qwen-Image, Flux true CFG: every
diffusers pipeline with a `cache_context("uncond")` calls the conditional pass first) give `uncond=1`, the
step's second call (the step clock numbers calls with an equal timestep as branches 0, 1).
"""
from __future__ import annotations

from typing import Any

from ..errors import PolicyError, SessionError
from .chain import CallInfo

__all__ = ["Guidance", "UNCOND", "check_uncond"]

UNCOND = ("None, 'half' (the first half of each call's batch rows: diffusers' [uncond, cond] batching), "
          "'second-half' ([cond, uncond] batching: Lumina, DiT), an int k "
          "(the k-th call of each step: 1 where a pipeline calls the denoiser cond first, then uncond), or a "
          "callable (batch, calls at step 0) -> one of those")


def check_uncond(uncond: Any) -> None:
    """Raise SessionError unless `uncond` is one of the allowed forms."""
    ok = uncond is None or uncond in ("half", "second-half") or callable(uncond) or (
        isinstance(uncond, int) and not isinstance(uncond, bool) and uncond >= 0)
    if not ok:
        raise SessionError(f"uncond={uncond!r} is invalid; allowed: {UNCOND}.")


class Guidance:
    """Resolve a session's `uncond=` per run and name each call's unconditional rows (step 0 included: the
    planner computes everything there, and the difference cache starts from it)."""

    def __init__(self, uncond: Any):
        check_uncond(uncond)
        self.spec = uncond
        self.uncond = None if callable(uncond) else uncond  # resolved for the current run
        self.calls0 = 0  # denoiser calls at step 0 of the current run

    def rows(self, call: CallInfo, policy: Any) -> tuple[int, ...]:
        """Return the call's unconditional rows, or raise when they cannot be known.

        A callable is asked on each call of step 0 until it answers (a batched pipeline answers on the first
        call, a two-call one on the second) and once more at step 1.
        """
        if call.new_run:
            self.calls0 = 0
            if callable(self.spec):
                self.uncond = None
        if call.step == 0:
            self.calls0 += 1
        if callable(self.spec) and self.uncond is None and call.step <= 1:
            self.uncond = self.spec(call.batch, self.calls0)
            check_uncond(self.uncond)
            if callable(self.uncond):
                raise SessionError(f"uncond's callable returned {self.uncond!r}; allowed: None, 'half', "
                                   f"'second-half' or an int >= 0.")
        if self.uncond is None and (self.spec is None or call.step >= 1):
            raise PolicyError(f"{policy}: cfg={policy.cfg} needs to know which rows are the unconditional half of "
                              f"classifier-free guidance, but uncond=None; allowed: {UNCOND}. Fix: pass uncond= "
                              f"to diffskip.session() (DiffSkipPipeline sets it for diffusers pipelines) or set cfg=1.")
        if self.uncond is None:
            return ()
        if not isinstance(self.uncond, str):
            return tuple(range(call.batch)) if call.branch == self.uncond else ()
        if call.batch % 2:
            raise SessionError(f"uncond={self.uncond!r} but the denoiser was called with an odd batch of "
                               f"{call.batch}; allowed: an even batch of two halves. Fix: pass the right uncond= "
                               f"or set cfg=1.")
        half = call.batch // 2
        return tuple(range(half)) if self.uncond == "half" else tuple(range(half, call.batch))
