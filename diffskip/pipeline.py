"""DiffSkipPipeline: wrap any diffusers pipeline by composition; calls keep the pipeline's signature."""
from __future__ import annotations

import importlib.util
import logging
from typing import Any

import torch
from torch import nn

from . import hooks
from .analytic import GaussianSkip
from .analytic_pipe import skipping
from .policy import Policy, parse
from .session import session
from .stats import Stats

__all__ = ["DiffSkipPipeline", "UnsupportedPipelineError"]
logger = logging.getLogger(__name__)

DENOISERS = ("transformer", "unet")  # component names searched, in order


class UnsupportedPipelineError(TypeError):
    """The pipeline has no denoiser component diffskip can attach to."""


def _remaining_steps(scheduler, t: float) -> int | None:
    """Count the distinct scheduler timesteps from the first one the denoiser saw (`t`) to the end.

    Locating `t` (or `t * 1000`, as Flux passes timestep / 1000) handles img2img's shortened schedules.
    """
    ts = getattr(scheduler, "timesteps", None)
    if ts is None or len(ts) == 0:
        return None
    ts = torch.unique_consecutive(torch.as_tensor(ts, dtype=torch.float64).cpu())
    for scale in (1.0, 1000.0):
        hit = torch.nonzero(torch.isclose(ts, torch.tensor(t * scale, dtype=torch.float64), rtol=1e-4, atol=1e-3))
        if hit.numel():
            return int(ts.numel() - hit[0, 0])
    return None


class DiffSkipPipeline:
    """Run a diffusers pipeline with a caching policy on its denoiser; the wrapped object stays exact.

    Args:
        pipe: any `DiffusionPipeline` with a `transformer` or `unet` component (or name it in `denoiser`).
        policy: a Policy or spec string, e.g. "interval:every=3" or `diffskip.Uniform(speedup=2)`.
        denoiser: the component to accelerate, when it is not `transformer` / `unet`.
        count_flops: measure executed vs full denoiser FLOPs into `last_stats` (torch FlopCounterMode once
            per input shape, then counting executed units).
        skip: a `GaussianSkip` replacing the first steps with the Gaussian closed-form jump (analytic
            teleportation); `last_stats.skipped_steps` reports them beside the policy's reuse.
    """

    def __init__(self, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                 count_flops: bool = True, skip: GaussianSkip | None = None):
        self.__dict__["pipe"] = pipe  # set first: __getattr__ falls through to it
        self.policy = parse(policy)
        self.denoiser_name = denoiser or next((n for n in DENOISERS if isinstance(getattr(pipe, n, None), nn.Module)),
                                              None)
        model = getattr(pipe, self.denoiser_name, None) if self.denoiser_name else None
        if not isinstance(model, nn.Module):
            comps = sorted(getattr(pipe, "components", {}) or {})
            raise UnsupportedPipelineError(
                f"{type(pipe).__name__} has no denoiser component {denoiser or ' or '.join(DENOISERS)!r}; "
                f"components: {comps}. Allowed: a pipeline with a `transformer` or `unet`, or pass "
                f"denoiser='<component name>' naming an nn.Module registered with diffskip.register().")
        self.denoiser = hooks.attach(model)
        self.count_flops = count_flops
        if skip is not None and not isinstance(skip, GaussianSkip):
            raise TypeError(f"skip must be a diffskip.GaussianSkip or None, got {type(skip).__name__}.")
        self.skip = skip
        self.last_stats: Stats | None = None

    @classmethod
    def from_pretrained(cls, path: str, policy: Policy | str = "never", denoiser: str | None = None,
                        skip: GaussianSkip | None = None, **kwargs) -> DiffSkipPipeline:
        """Load any diffusers pipeline (`DiffusionPipeline.from_pretrained(path, **kwargs)`) and wrap it."""
        from diffusers import DiffusionPipeline

        pipe = DiffusionPipeline.from_pretrained(path, **kwargs)
        _maybe_xformers(pipe)
        return cls(pipe, policy, denoiser=denoiser, skip=skip)

    @classmethod
    def from_pipe(cls, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                  skip: GaussianSkip | None = None) -> DiffSkipPipeline:
        """Wrap an existing pipeline; it keeps running unaccelerated when called directly."""
        return cls(pipe, policy, denoiser=denoiser, skip=skip)

    def __call__(self, *args, **kwargs):
        """Call the wrapped pipeline with the policy active on its denoiser; stats go to `last_stats`."""
        sched = getattr(self.pipe, "scheduler", None)
        with session(self.denoiser, self.policy, num_steps=lambda t: _remaining_steps(sched, t),
                     count_flops=self.count_flops) as s:
            if self.skip is None:
                out = self.pipe(*args, **kwargs)
            else:
                with skipping(self.pipe, self.skip, self.denoiser, args, kwargs) as kw:
                    out = self.pipe(*args, **kw)
                s.stats.skipped_steps = self.skip.steps
        self.last_stats = s.stats
        return out

    def to(self, *args, **kwargs) -> DiffSkipPipeline:
        """Move the wrapped pipeline (`pipe.to(...)`) and return this wrapper, so chaining keeps it."""
        self.pipe.to(*args, **kwargs)
        return self

    def detach(self) -> Any:
        """Remove diffskip's wrappers from the denoiser and return the plain pipeline."""
        hooks.detach(self.denoiser)
        return self.pipe

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["pipe"], name)

    def __repr__(self) -> str:
        skip = f", skip={self.skip}" if self.skip is not None else ""
        return (f"DiffSkipPipeline({type(self.pipe).__name__}, policy={self.policy}, "
                f"denoiser={self.denoiser_name}{skip})")


def _maybe_xformers(pipe: Any) -> None:
    """Use xformers attention when it is installed and CUDA is available, and say so in the log."""
    installed, cuda = importlib.util.find_spec("xformers") is not None, torch.cuda.is_available()
    if not (installed and cuda):
        logger.info("xformers not in use (installed: %s, CUDA: %s); using PyTorch SDPA attention.", installed, cuda)
        return
    pipe.enable_xformers_memory_efficient_attention()
    logger.info("xformers memory-efficient attention enabled on %s.", type(pipe).__name__)
