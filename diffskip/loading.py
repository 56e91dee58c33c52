"""What DiffSkipPipeline.from_pretrained does besides wrapping: find the model folder, load the pipeline, choose
the attention backend, read the folder's call options and Gaussian statistics."""
from __future__ import annotations

import importlib.util
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import torch

from . import assets
from .errors import SessionError, short

__all__ = ["CALL_DEFAULTS", "resolve_model", "read_call_defaults", "load_pipeline", "use_xformers",
           "default_steps", "read_default_steps", "gaussian_stats"]
logger = logging.getLogger(__name__)
CALL_DEFAULTS = "diffskip_call.json"  # a model folder's own call options (e.g. a non-standard PixArt size)
STEPS_KEY = "default_steps"  # in diffskip_call.json: the model's step count when a call names none


def resolve_model(name: str) -> str:
    """Return the folder of an embedded model name ('fashion-sd'), else `name` as given (folder or hub id)."""
    return str(assets.path(name)) if assets.is_embedded(name) and not Path(name).exists() else name


def _call_file(folder: str) -> dict[str, Any]:
    path = Path(folder) / CALL_DEFAULTS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of pipeline call options, got {short(data)}.")
    return data


def read_call_defaults(folder: str) -> dict[str, Any]:
    """Return the call options a model folder asks for in its `diffskip_call.json` ({} when it has none)."""
    return {k: v for k, v in _call_file(folder).items() if k != STEPS_KEY}


def read_default_steps(folder: str) -> int | None:
    """Return the step count a model folder gives calls that name none (`default_steps` in diffskip_call.json)."""
    n = _call_file(folder).get(STEPS_KEY)
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"{Path(folder) / CALL_DEFAULTS}: {STEPS_KEY}={short(n)}; allowed: an int >= 1.")
    return n


def load_pipeline(name: str, **kwargs) -> tuple[Any, str]:
    """Load a diffusers pipeline (embedded name, folder or hub id) with the attention backend chosen; return
    (pipeline, the folder or id it came from)."""
    from diffusers import DiffusionPipeline

    folder = resolve_model(name)
    pipe = DiffusionPipeline.from_pretrained(folder, **kwargs)
    use_xformers(pipe)
    return pipe, folder


def use_xformers(pipe: Any) -> bool:
    """Use xformers attention when it is installed and CUDA is available, say so in the log; return whether."""
    installed, cuda = importlib.util.find_spec("xformers") is not None, torch.cuda.is_available()
    if not (installed and cuda):
        logger.info("xformers not in use (installed: %s, CUDA: %s); using PyTorch SDPA attention.", installed, cuda)
        return False
    pipe.enable_xformers_memory_efficient_attention()
    logger.info("xformers memory-efficient attention enabled on %s.", type(pipe).__name__)
    return True


def default_steps(pipe: Any) -> int:
    """The step count of a call that names none: the model folder's `default_steps`, else the pipeline's own."""
    if getattr(pipe, "default_steps", None):
        return pipe.default_steps
    pipe = getattr(pipe, "pipe", pipe)
    p = inspect.signature(pipe.__call__).parameters.get("num_inference_steps")
    if p is None or not isinstance(p.default, int):
        raise SessionError(f"{type(pipe).__name__} has no default num_inference_steps; pass num_inference_steps=.")
    return p.default


def gaussian_stats(source: str | None, required: bool = True):
    """Return a model folder's GaussianStats (analytic skipping), or None / raise when it has none."""
    from .analytic import GaussianStats

    folder = Path(source) if source else None
    if folder is not None and (folder / "diffskip_gaussian.json").is_file():
        return GaussianStats.load(folder)
    if required:
        raise SessionError(f"no Gaussian statistics in {source!r}; fit them with `diffskip fit-gaussian` "
                           f"or tune with jumps=False.")
    return None
