"""Plan files: read, validate and write tuned plans (JSON); apply one to a DiffSkipPipeline; tune one for it.

A plan file is what `DiffSkipPipeline.tune(...)` / `diffskip tune` write and what the pipeline (`plan=`),
`diffskip generate --plan` and the ComfyUI "DiffSkip Plan" node load. The search itself is `diffskip.tuning.tune`;
`tune_pipeline` only builds the pipeline's `run` (scheduler, policy and jump per trial) and calls it.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import math
import numbers
from pathlib import Path
from typing import Any, Iterator

import torch

from .errors import AssetError, DiffSkipError, short
from .fingerprint import check_fingerprint, fingerprint
from .policies import parse
from .tuning import Sampler, Trial, TuneResult, check_budget, tune

__all__ = ["FORMAT", "SCHEDULERS", "load_plan", "check_plan", "save_plan", "apply_plan", "use_scheduler",
           "tune_pipeline"]
FORMAT = "diffskip-plan/1"
SCHEDULERS = ("own", "dpm++")  # the pipeline's scheduler; DPM-Solver++ (2nd order multistep)
HELDOUT_SEED = 10_000  # held-out prompts are seeded apart from the calibration prompts


def use_scheduler(pipe: Any, name: str | None) -> None:
    """Swap the pipeline's scheduler for `name` ('own'/None keeps it; 'dpm++': DPM-Solver++ from its config)."""
    if name in (None, "own"):
        return
    if name != "dpm++":
        raise DiffSkipError(f"scheduler {short(name)} is unknown; allowed: {list(SCHEDULERS)}.")
    from diffusers import DPMSolverMultistepScheduler

    cfg = {k: v for k, v in pipe.scheduler.config.items() if not k.startswith("_")}
    cfg.update(algorithm_type="dpmsolver++", solver_order=2)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(cfg)


def save_plan(result: TuneResult, path: str | Path, denoiser: torch.nn.Module, model: str | None = None) -> Path:
    """Write a tuning result as a plan file (JSON) with the fingerprint of the denoiser it was tuned on."""
    data = {"format": FORMAT, "model": model, "denoiser": fingerprint(denoiser), **result.to_dict()}
    check_plan(data, "the plan to save")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read and validate a plan file; return {policy, num_steps, scheduler, skip, denoiser, ...}."""
    if not isinstance(path, (str, Path)):
        raise AssetError(f"plan={short(path)} is invalid; allowed: the path of a plan file, or its dict.")
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AssetError(f"plan file {short(str(path))} cannot be read ({type(e).__name__}: {short(str(e))}); "
                         f"allowed: a JSON file written by `diffskip tune` or DiffSkipPipeline.tune(save=...).")
    return check_plan(data, str(path))


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_plan(data: Any, where: str = "plan") -> dict[str, Any]:
    """Validate a plan's structure (as `load_plan` does for a file) and return it; `where` names it in errors."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else data
        raise AssetError(f"{where}: not a diffskip plan (format {short(got)}); allowed: format {FORMAT!r}, written "
                         f"by `diffskip tune`.")
    policy = data.get("policy")
    if not isinstance(policy, str):
        raise AssetError(f"{where}: policy={short(policy)} is invalid; allowed: a policy spec string.")
    parse(policy)  # a bad policy fails here, not at the first step
    n, skip, sched = data.get("num_steps"), data.get("skip", 0), data.get("scheduler")
    if not _int(n) or n < 1 or not _int(skip) or not 0 <= skip < n:
        raise AssetError(f"{where}: num_steps={short(n)}, skip={short(skip)} are invalid; allowed: ints with "
                         f"num_steps >= 1 and 0 <= skip < num_steps.")
    if not isinstance(data.get("conditional", False), bool):
        raise AssetError(f"{where}: conditional={short(data['conditional'])} is invalid; allowed: true (the "
                         f"prompt-aware jump) or false.")
    if sched not in (None, *SCHEDULERS):
        raise AssetError(f"{where}: scheduler={short(sched)} is invalid; allowed: {list(SCHEDULERS)}.")
    fp = data.get("denoiser")
    if fp is not None and not (isinstance(fp, dict) and isinstance(fp.get("shapes"), str)
                               and isinstance(fp.get("values"), list)
                               and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                                       for v in fp["values"])):
        raise AssetError(f"{where}: denoiser={short(fp)} is invalid; allowed: the fingerprint `diffskip tune` "
                         f"writes ({{'shapes': str, 'values': [numbers]}}); re-tune to write it again.")
    return data


def apply_plan(fast: Any, plan: str | Path | dict, force: bool = False) -> None:
    """Use a tuned plan on a DiffSkipPipeline: policy, step count, scheduler and analytic jump.

    The plan must have been tuned on this denoiser (its fingerprint, `docs/tuning.md`) unless `force`.
    """
    if not isinstance(force, bool):
        raise DiffSkipError(f"force={short(force)} is invalid; allowed: True or False.")
    data = check_plan(plan, "plan") if isinstance(plan, dict) else load_plan(plan)
    where = "plan" if isinstance(plan, dict) else str(plan)
    check_fingerprint(data, fast.denoiser, force, where)
    from .analytic import GaussianSkip

    skip = GaussianSkip(fast.gaussian_stats(), data["skip"], data.get("conditional", False)) \
        if data.get("skip") else None
    fast.policy = data["policy"]  # checked against the model first: a refusal leaves the pipeline as it was
    fast.skip = skip
    use_scheduler(fast.pipe, data.get("scheduler"))
    fast.call_defaults["num_inference_steps"] = data["num_steps"]


@contextlib.contextmanager
def _trying(fast: Any) -> Iterator[None]:
    """Restore the wrapper's policy, jump and the pipeline's scheduler after the search."""
    saved = (fast.policy, fast.skip, fast.pipe.scheduler)
    try:
        yield
    finally:
        fast.policy, fast.skip = saved[0], saved[1]
        fast.pipe.scheduler = saved[2]


def _sampler(fast: Any, base: Any, prompts: list[str], seed: int, call: dict) -> Sampler:
    """The pipeline's `run`: generate `prompts` (seeded per prompt) with a trial's scheduler, policy and jump;
    images (or video frames) in [0, 1] and the call's stats."""
    from .analytic import GaussianSkip

    def run(t: Trial):
        fast.pipe.scheduler = base
        use_scheduler(fast.pipe, t.scheduler)
        fast.policy = t.policy
        fast.skip = GaussianSkip(fast.gaussian_stats(), t.skip, t.conditional) if t.skip else None
        gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
        out = fast(prompts, num_inference_steps=t.num_steps, generator=gens, output_type="pt", **call)
        return (out.frames if hasattr(out, "frames") else out.images), fast.last_stats  # video: (B, F, C, H, W)
    return Sampler(run)


def _prompts(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value \
            or not all(isinstance(p, str) for p in value):
        raise DiffSkipError(f"{name}={short(value)} is invalid; allowed: a non-empty list of strings, e.g. "
                            f"{name}=['a photo of a coat'].")
    return list(value)


def _full_steps(fast: Any, num_inference_steps: Any) -> int:
    from .loading import default_steps

    n = num_inference_steps
    if n is None:
        n = fast.call_defaults.get("num_inference_steps") or default_steps(fast)
    if not _int(n) or n < 2:
        raise DiffSkipError(f"num_inference_steps={short(n)} is invalid; allowed: an int >= 2 (the full-step run "
                            f"the plan is measured against), or None for the pipeline's default.")
    return n


def _check_options(seed: Any, schedulers: Any, jumps: Any, profile: Any) -> tuple[str, ...]:
    if not _int(seed):
        raise DiffSkipError(f"seed={short(seed)} is invalid; allowed: an int.")
    if isinstance(schedulers, str) or not isinstance(schedulers, (list, tuple)) or not schedulers \
            or set(schedulers) - set(SCHEDULERS):
        raise DiffSkipError(f"schedulers={short(schedulers)} is invalid; allowed: a non-empty list drawn from "
                            f"{list(SCHEDULERS)}.")
    for name, flag in (("jumps", jumps), ("profile", profile)):
        if not isinstance(flag, bool):
            raise DiffSkipError(f"{name}={short(flag)} is invalid; allowed: True or False.")
    return tuple(schedulers)


def _guided(fast: Any, call: dict) -> bool:
    """True when the pipeline's calls run classifier-free guidance (guidance_scale > 1, given or its default)."""
    param = inspect.signature(fast.pipe.__call__).parameters.get("guidance_scale")
    scale = call.get("guidance_scale", None if param is None else param.default)
    return isinstance(scale, (int, float)) and scale > 1


def tune_pipeline(fast: Any, prompts: list[str], budget: float, num_inference_steps: int | None = None,
                  heldout: list[str] | None = None, seed: int = 0, schedulers=SCHEDULERS, jumps: bool = True,
                  profile: bool = True, **call) -> TuneResult:
    """Tune a plan for a DiffSkipPipeline (see DiffSkipPipeline.tune): build its `run` and call diffskip.tune."""
    prompts = _prompts(prompts, "prompts")
    heldout = None if heldout is None else _prompts(heldout, "heldout")
    full = _full_steps(fast, num_inference_steps)
    check_budget(budget, full)
    schedulers = _check_options(seed, schedulers, jumps, profile)
    call = {**{k: v for k, v in fast.call_defaults.items() if k != "num_inference_steps"}, **call}
    base = fast.pipe.scheduler
    with _trying(fast):
        validate = None if heldout is None else _sampler(fast, base, heldout, seed + HELDOUT_SEED, call)
        res = tune(fast.denoiser, _sampler(fast, base, prompts, seed, call), budget, full, validate=validate,
                   profile=profile, schedulers=schedulers, peak=1.0,
                   jumps=jumps and fast.gaussian_stats(required=False) is not None,
                   cfg=_guided(fast, call))
    if res.heldout is not None:
        res.heldout["prompts"] = len(heldout)
    return res
