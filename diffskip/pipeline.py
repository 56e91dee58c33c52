"""DiffSkipPipeline: wrap any diffusers pipeline by composition; calls keep the pipeline's signature."""
from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import assets
from .analytic import GaussianSkip
from .control.pipe import control_context, resolve_control
from .engine import hooks
from .engine.session import resolve_span, session
from .engine.stats import Stats
from .errors import SessionError, UnsupportedPipelineError, short
from .policies import Policy, parse

__all__ = ["DiffSkipPipeline", "find_denoiser", "resolve_model", "CALL_DEFAULTS"]
logger = logging.getLogger(__name__)

DENOISERS = ("transformer", "unet")  # component names searched, in order
CALL_DEFAULTS = "diffskip_call.json"  # a model folder's own call options (e.g. a non-standard PixArt size)
_OWN = frozenset({"pipe", "policy", "denoiser", "denoiser_name", "count_flops", "skip", "last_stats",
                  "call_defaults", "control", "last_control"})  # attributes of the wrapper; every other write goes to the wrapped pipeline


def find_denoiser(pipe: Any, name: str | None = None) -> tuple[str, nn.Module]:
    """Return (component name, module) of a pipeline's denoiser: `name`, else `transformer` or `unet`."""
    found = name or next((n for n in DENOISERS if isinstance(getattr(pipe, n, None), nn.Module)), None)
    model = getattr(pipe, found, None) if found else None
    if not isinstance(model, nn.Module):
        comps = sorted(getattr(pipe, "components", {}) or {})
        raise UnsupportedPipelineError(
            f"{type(pipe).__name__} has no denoiser component {name or ' or '.join(DENOISERS)!r}; components: "
            f"{comps}. Allowed: a pipeline with a `transformer` or `unet`, or pass denoiser='<component name>' "
            f"naming an nn.Module registered with diffskip.register().")
    return found, model


def resolve_model(name: str) -> str:
    """Return the folder of an embedded model name ('fashion-sd'), else `name` as given (folder or hub id)."""
    return str(assets.path(name)) if assets.is_embedded(name) and not Path(name).exists() else name


def read_call_defaults(folder: str) -> dict[str, Any]:
    """Return the call options a model folder asks for in its `diffskip_call.json` ({} when it has none)."""
    path = Path(folder) / CALL_DEFAULTS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of pipeline call options, got {short(data)}.")
    return data


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
        policy: a Policy or spec string, e.g. "interval:every=3"; change it later with `pipe.policy = ...`.
        denoiser: the component to accelerate, when it is not `transformer` / `unet`.
        count_flops: measure executed vs full denoiser FLOPs into `last_stats`.
        skip: a `GaussianSkip` replacing the first steps with the Gaussian closed-form jump.
        call_defaults: call options applied to every call unless given (a model folder's diffskip_call.json).
        control: a control model (diffskip.control) or its folder; calls then take `control_image=` and
            `control_scale=` (docs/control.md).

    Attribute reads and writes other than the wrapper's own go to the wrapped pipeline
    (`fast.scheduler = DPMSolverMultistepScheduler.from_config(...)` changes the pipeline's scheduler).
    """

    def __init__(self, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                 count_flops: bool = True, skip: GaussianSkip | None = None,
                 call_defaults: dict[str, Any] | None = None, control: nn.Module | str | None = None):
        self.__dict__["pipe"] = pipe  # set first: attribute access falls through to it
        name, model = find_denoiser(pipe, denoiser)
        self.__dict__["denoiser_name"] = name
        self.__dict__["denoiser"] = hooks.attach(model)
        self.policy = policy
        self.count_flops = count_flops
        if skip is not None and not isinstance(skip, GaussianSkip):
            raise TypeError(f"skip must be a diffskip.GaussianSkip or None, got {type(skip).__name__}.")
        self.skip = skip
        self.call_defaults = dict(call_defaults or {})
        self.last_stats: Stats | None = None
        self.control = resolve_control(control)
        self.last_control = None  # the last call's ControlRun (branch runs per position)

    @classmethod
    def from_pretrained(cls, path: str, policy: Policy | str = "never", denoiser: str | None = None,
                        skip: GaussianSkip | None = None, control: nn.Module | str | None = None,
                        **kwargs) -> DiffSkipPipeline:
        """Load a diffusers pipeline (an embedded name like 'fashion-sd', a folder or a hub id) and wrap it."""
        from diffusers import DiffusionPipeline

        policy = parse(policy)  # a bad spec fails before any weights load
        folder = resolve_model(path)
        pipe = DiffusionPipeline.from_pretrained(folder, **kwargs)
        _maybe_xformers(pipe)
        return cls(pipe, policy, denoiser=denoiser, skip=skip, call_defaults=read_call_defaults(folder),
                   control=control)

    @classmethod
    def from_pipe(cls, pipe: Any, policy: Policy | str = "never", denoiser: str | None = None,
                  skip: GaussianSkip | None = None, control: nn.Module | str | None = None) -> DiffSkipPipeline:
        """Wrap an existing pipeline; it keeps running unaccelerated when called directly."""
        return cls(pipe, policy, denoiser=denoiser, skip=skip, control=control)

    def __call__(self, *args, **kwargs):
        """Call the wrapped pipeline with the policy active on its denoiser; stats go to `last_stats`."""
        from .analytic.pipe import skipping

        kwargs = {**self.call_defaults, **kwargs}
        sched = getattr(self.pipe, "scheduler", None)
        with control_context(self.pipe, self.denoiser, self.control, kwargs) as run, session(self.denoiser, self.policy, num_steps=lambda t: _remaining_steps(sched, t),
                     count_flops=self.count_flops) as s:
            if self.skip is None:
                out = self.pipe(*args, **kwargs)
            else:
                with skipping(self.pipe, self.skip, self.denoiser, args, kwargs) as kw:
                    out = self.pipe(*args, **kw)
                s.stats.skipped_steps = self.skip.steps
        self.last_stats, self.last_control = s.stats, run
        return out

    def to(self, *args, **kwargs) -> DiffSkipPipeline:
        """Move the wrapped pipeline (`pipe.to(...)`) and return this wrapper, so chaining keeps it."""
        self.pipe.to(*args, **kwargs)
        return self

    def detach(self) -> Any:
        """Remove this wrapper's hold on the denoiser (the last one restores it) and return the plain pipeline."""
        if self.__dict__.get("denoiser") is None:
            raise SessionError("this DiffSkipPipeline was already detached; wrap the pipeline again to use it.")
        hooks.detach(self.denoiser)
        self.__dict__["denoiser"] = None
        return self.pipe

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "policy":
            value = parse(value)
            h = hooks.hooked(self.denoiser)
            resolve_span(value, h.adapter, len(h.units), type(h.model).__name__)  # head/tail fit: check now
        if name in _OWN:
            self.__dict__[name] = value
        else:
            setattr(self.__dict__["pipe"], name, value)

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
