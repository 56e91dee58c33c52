"""Acceleration methods to benchmark, each applied through its own public API: "family/key=value,...".

Families: `none` (baseline), `diffskip/<policy spec>`, `steps/n=K[,scheduler=dpm++]` (fewer steps, no
caching), `plan/path=FILE` (a plan from `diffskip tune`), diffusers built-ins (`fbc`, `taylorseer`, `magcache`,
`pab`, `fastercache`), `deepcache` (DeepCacheSDHelper), `tgate` (T-GATE loaders), `cachedit` (DBCache,
`taylor=1` adds its TaylorSeer calibrator). Every family returns a callable with the pipeline's signature.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
from typing import Any, Callable

from diffskip.engine.clock import read_timestep
from diffskip.pipeline import DiffSkipPipeline, find_denoiser

Runner = Callable[..., Any]


class MethodError(ValueError):
    """A method spec names an unknown family or key, or the family's package is missing."""


def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    """Split "family/k=v,k=v" (diffskip: "diffskip/<policy spec>") into the family and its raw settings."""
    family, _, rest = spec.partition("/")
    if family not in FAMILIES:
        raise MethodError(f"unknown method family {family!r} in {spec!r}; known: {sorted(FAMILIES)}")
    if family == "diffskip":
        return family, {"policy": rest or "never"}
    settings = dict(kv.split("=", 1) for kv in rest.split(",") if kv) if rest else {}
    allowed = FAMILIES[family][1]
    unknown = sorted(set(settings) - set(allowed))
    if unknown:
        raise MethodError(f"{spec!r}: unknown key(s) {unknown} for {family}; allowed: {sorted(allowed)}")
    return family, settings


def _require(package: str, pip_name: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise MethodError(f"{package} is not installed; install the bench extra: "
                          f"uv pip install torch==2.13.0 -e '.[bench]' (or pip install {pip_name})")


def denoiser_name(pipe: Any) -> str:
    """Return the attribute name of the pipeline's denoiser: "transformer" or "unet"."""
    return find_denoiser(pipe)[0]


def denoiser(pipe: Any):
    """Return the pipeline's denoiser module (transformer or unet)."""
    return find_denoiser(pipe)[1]


def _none(pipe: Any, steps: int, s: dict) -> Runner:
    return pipe


def _diffskip(pipe: Any, steps: int, s: dict) -> Runner:
    return DiffSkipPipeline(pipe, s["policy"], count_flops=False)


def _steps(pipe: Any, steps: int, s: dict) -> Runner:
    """Fewer steps, no caching: `steps/n=7` (the pipeline's scheduler) or `steps/n=7,scheduler=dpm++`."""
    from diffskip.plan_files import use_scheduler

    n = int(s["n"])
    if not 1 <= n <= steps:
        raise MethodError(f"steps/n={n}: allowed 1 <= n <= the benchmark's {steps} steps")
    use_scheduler(pipe, s.get("scheduler", "own"))
    return lambda *a, **kw: pipe(*a, **{**kw, "num_inference_steps": n})


def _plan(pipe: Any, steps: int, s: dict) -> Runner:
    """A tuned plan file (diffskip tune): `plan/path=plans/fashion-sd-0.35.json`."""
    fast = DiffSkipPipeline(pipe, "never", count_flops=False)
    fast.apply_plan(s["path"])
    n = fast.call_defaults.pop("num_inference_steps")
    return lambda *a, **kw: fast(*a, **{**kw, "num_inference_steps": n})


def _deepcache(pipe: Any, steps: int, s: dict) -> Runner:
    _require("DeepCache", "DeepCache==0.1.1")
    from DeepCache import DeepCacheSDHelper

    helper = DeepCacheSDHelper(pipe=pipe)
    helper.set_params(cache_interval=int(s.get("interval", 3)), cache_branch_id=int(s.get("branch", 0)))
    helper.enable()
    return pipe


def _tgate(pipe: Any, steps: int, s: dict) -> Runner:
    _require("tgate", "tgate==1.0.0")
    import tgate

    loader = tgate.TgatePixArtAlphaLoader if "PixArt" in type(pipe).__name__ else tgate.TgateSDLoader
    loader(pipe)
    gate = dict(gate_step=int(s.get("gate_step", steps // 2)), sp_interval=int(s.get("sp_interval", 5)),
                fi_interval=int(s.get("fi_interval", 1)), warm_up=int(s.get("warm_up", 2)))

    def run(*args, **kwargs):
        return pipe.tgate(*args, **gate, **kwargs)
    return run


def _with_cache_context(pipe: Any, model) -> Runner:
    """Call the pipeline inside the model's diffusers cache context and reset the hooks' state after each call.

    Pipelines like SD/PixArt neither open a context nor reset the state (CacheMixin pipelines do both): without
    the reset, step counters and cached tensors leak into the next call (wrong steps, batch-size errors).
    """
    from diffusers.hooks import HookRegistry
    from diffusers.models.cache_utils import CacheMixin

    def run(*args, **kwargs):
        try:
            with CacheMixin.cache_context(model, "cond"):
                return pipe(*args, **kwargs)
        finally:
            HookRegistry.check_if_exists_or_initialize(model).reset_stateful_hooks()
    return run


def _diffusers_config(family: str, steps: int, s: dict, model) -> Any:
    """Build the diffusers hooks config object for a built-in cache family."""
    import torch
    from diffusers import hooks

    f = {k: float(v) for k, v in s.items() if k != "mag_ratios"}
    if family == "fbc":
        return hooks.FirstBlockCacheConfig(threshold=f.get("threshold", 0.05))
    if family == "taylorseer":
        # lite=1 (default): skip the blocks, forecast proj_out. diffusers' default attention patterns
        # ("^transformer_blocks.*attn" under re.fullmatch) match no module named attn1/attn2: a silent no-op.
        return hooks.TaylorSeerCacheConfig(cache_interval=int(f.get("interval", 5)), max_order=int(f.get("order", 1)),
                                           disable_cache_before_step=int(f.get("warmup", 3)),
                                           use_lite_mode=bool(f.get("lite", 1)), taylor_factors_dtype=torch.float32)
    if family == "magcache":
        return hooks.MagCacheConfig(threshold=f.get("threshold", 0.06), max_skip_steps=int(f.get("max_skip", 3)),
                                    num_inference_steps=steps, mag_ratios=s["mag_ratios"])
    clock = _timestep_clock(model)  # PAB and FasterCache ask the caller for the current timestep
    if family == "pab":
        return hooks.PyramidAttentionBroadcastConfig(
            spatial_attention_block_skip_range=int(f.get("skip", 2)),
            spatial_attention_timestep_skip_range=(int(f.get("low", 100)), int(f.get("high", 800))),
            current_timestep_callback=clock)
    return hooks.FasterCacheConfig(spatial_attention_block_skip_range=int(f.get("skip", 2)),
                                   spatial_attention_timestep_skip_range=(-1, int(f.get("high", 681))),
                                   current_timestep_callback=clock)


def _mag_ratios(pipe: Any, steps: int, args: tuple, kwargs: dict) -> list[float]:
    """Run MagCache's own calibration mode on a copy of the denoiser and read the ratios it logs."""
    from diffusers import hooks
    from diffusers.utils import logging as dlog

    name = denoiser_name(pipe)
    model = getattr(pipe, name)
    probe = copy.deepcopy(model)
    hooks.apply_mag_cache(probe, hooks.MagCacheConfig(num_inference_steps=steps, calibrate=True))
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())  # type: ignore[method-assign]
    log = dlog.get_logger("diffusers.hooks.mag_cache")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    setattr(pipe, name, probe)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the calibration also prints the ratios
            _with_cache_context(pipe, probe)(*args, **kwargs)
    finally:
        setattr(pipe, name, model)
        log.removeHandler(handler)
        log.setLevel(level)
    found = [m for m in seen if m.startswith("MagCache Calibration Results:")]
    if not found:
        raise MethodError("MagCache calibration logged no ratios; is the denoiser supported by apply_mag_cache?")
    return [float(x) for x in found[-1].split(":", 1)[1].strip(" []").split(",")]


def _diffusers(family: str) -> Callable[[Any, int, dict], Runner]:
    def apply(pipe: Any, steps: int, s: dict) -> Runner:
        if family == "magcache" and "mag_ratios" not in s:  # calibrate lazily on the first call's inputs
            state: dict[str, Runner] = {}

            def run(*args, **kwargs):
                if "run" not in state:
                    state["run"] = apply(pipe, steps, {**s, "mag_ratios": _mag_ratios(pipe, steps, args, kwargs)})
                return state["run"](*args, **kwargs)
            return run
        from diffusers import hooks

        model = denoiser(pipe)
        config = _diffusers_config(family, steps, s, model)
        appliers = {"fbc": hooks.apply_first_block_cache, "taylorseer": hooks.apply_taylorseer_cache,
                    "magcache": hooks.apply_mag_cache, "pab": hooks.apply_pyramid_attention_broadcast,
                    "fastercache": hooks.apply_faster_cache}
        appliers[family](model, config)
        return _with_cache_context(pipe, model)
    return apply


def _timestep_clock(model) -> Callable[[], int]:
    """Record the denoiser's latest timestep (instance-level wrapper) for hooks that ask for it."""
    state = {"t": 1000}
    inner = model.forward

    def forward(*args, **kwargs):
        if "timestep" in kwargs or len(args) > 1:
            state["t"] = int(read_timestep(args, kwargs, "timestep", 1))
        return inner(*args, **kwargs)
    model.forward = forward
    return lambda: state["t"]


def _cachedit(pipe: Any, steps: int, s: dict) -> Runner:
    _require("cache_dit", "cache-dit==1.5.3")
    import cache_dit

    config = cache_dit.DBCacheConfig(
        Fn_compute_blocks=int(s.get("fn", 1)), Bn_compute_blocks=int(s.get("bn", 0)),
        residual_diff_threshold=float(s.get("threshold", 0.08)), max_warmup_steps=int(s.get("warmup", 2)),
        max_continuous_cached_steps=int(s.get("max_cached", -1)), num_inference_steps=steps)
    calib = cache_dit.TaylorSeerCalibratorConfig(taylorseer_order=int(s.get("order", 1))) \
        if s.get("taylor", "0") == "1" else None
    cache_dit.enable_cache(pipe, cache_config=config, calibrator_config=calib)
    return pipe


FAMILIES: dict[str, tuple[Callable[[Any, int, dict], Runner], tuple[str, ...]]] = {
    "none": (_none, ("seeds",)),  # none/seeds=1: the baseline on another seed set (FD spread)
    "diffskip": (_diffskip, ("policy",)),
    "steps": (_steps, ("n", "scheduler")),  # the simplest alternative: fewer steps, no caching
    "plan": (_plan, ("path",)),
    "deepcache": (_deepcache, ("interval", "branch")),
    "tgate": (_tgate, ("gate_step", "sp_interval", "fi_interval", "warm_up")),
    "fbc": (_diffusers("fbc"), ("threshold",)),
    "taylorseer": (_diffusers("taylorseer"), ("interval", "order", "warmup", "lite")),
    "magcache": (_diffusers("magcache"), ("threshold", "max_skip")),
    "pab": (_diffusers("pab"), ("skip", "low", "high")),
    "fastercache": (_diffusers("fastercache"), ("skip", "high")),
    "cachedit": (_cachedit, ("fn", "bn", "threshold", "warmup", "max_cached", "taylor", "order")),
}


def apply_method(pipe: Any, spec: str, steps: int) -> Runner:
    """Apply the method `spec` to a freshly loaded `pipe`; return the callable to generate with."""
    family, settings = parse_method(spec)
    return FAMILIES[family][0](pipe, steps, settings)
