"""Tuned plans for pipelines: search policy x steps x scheduler x analytic jump, save and load as JSON.

A plan file is what `DiffSkipPipeline.tune(...)` / `diffskip tune` write and what the pipeline
(`plan=`), `diffskip generate --plan` and the ComfyUI "DiffSkip Plan" node load.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from .engine import hooks
from .errors import AssetError, DiffSkipError, short
from .policies import parse
from .tuning import (TuneResult, Trial, _check_budget, candidates, live_share, relevance, search,
                   skippable_units)

__all__ = ["SCHEDULERS", "load_plan", "save_plan", "use_scheduler", "tune_pipeline"]
FORMAT = "diffskip-plan/1"
SCHEDULERS = ("own", "dpm++")  # the pipeline's scheduler; DPM-Solver++ (2nd order multistep)


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


def save_plan(result: TuneResult, path: str | Path, model: str | None = None) -> Path:
    """Write a tuning result as a plan file (JSON) and return its path."""
    data = {"format": FORMAT, "model": model, **result.to_dict()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def load_plan(path: str | Path) -> dict[str, Any]:
    """Read and validate a plan file; return {policy, num_steps, scheduler, skip, ...}."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise AssetError(f"plan file {short(str(path))} cannot be read ({type(e).__name__}: {short(str(e))}); "
                         f"allowed: a JSON file written by `diffskip tune` or DiffSkipPipeline.tune(save=...).")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AssetError(f"{path}: not a diffskip plan (format {short(data.get('format') if isinstance(data, dict) else data)}"
                         f"); allowed: format {FORMAT!r}, written by `diffskip tune`.")
    parse(data["policy"])  # a bad policy fails here, not at the first step
    n, skip, sched = data.get("num_steps"), data.get("skip", 0), data.get("scheduler")
    if not isinstance(n, int) or n < 1 or not isinstance(skip, int) or not 0 <= skip < n:
        raise AssetError(f"{path}: num_steps={short(n)}, skip={short(skip)} are invalid; allowed: "
                         f"num_steps >= 1 and 0 <= skip < num_steps.")
    if sched not in (None, *SCHEDULERS):
        raise AssetError(f"{path}: scheduler={short(sched)} is invalid; allowed: {list(SCHEDULERS)}.")
    return data


@contextlib.contextmanager
def _trying(fast: Any) -> Iterator[None]:
    """Restore the wrapper's policy, jump and the pipeline's scheduler after the search."""
    saved = (fast.policy, fast.skip, fast.pipe.scheduler)
    try:
        yield
    finally:
        fast.policy, fast.skip = saved[0], saved[1]
        fast.pipe.scheduler = saved[2]


def _images(fast: Any, base: Any, prompts: list[str], seed: int, t: Trial, call: dict) -> torch.Tensor:
    """Generate `prompts` (seeded per prompt) with one trial's scheduler, policy and jump; images in [0, 1]."""
    from .analytic import GaussianSkip

    fast.pipe.scheduler = base
    use_scheduler(fast.pipe, t.scheduler)
    fast.policy = t.policy
    fast.skip = GaussianSkip(fast.gaussian_stats(), t.skip) if t.skip else None
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    return fast(prompts, num_inference_steps=t.num_steps, generator=gens, output_type="pt", **call).images


def tune_pipeline(fast: Any, prompts: list[str], budget: float, num_inference_steps: int,
                  heldout: list[str] | None = None, seed: int = 0, schedulers=SCHEDULERS, jumps: bool = True,
                  profile: bool = True, **call) -> TuneResult:
    """Search plans for a DiffSkipPipeline (see DiffSkipPipeline.tune); returns the TuneResult."""
    full = num_inference_steps
    _check_budget(budget, full)
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise DiffSkipError(f"prompts={short(prompts)} is invalid; allowed: a non-empty list of strings.")
    bad = [s for s in schedulers if s not in SCHEDULERS]
    if bad:
        raise DiffSkipError(f"schedulers {bad} are unknown; allowed: {list(SCHEDULERS)}.")
    base = fast.pipe.scheduler
    with _trying(fast):
        ref = _images(fast, base, prompts, seed, Trial("never", full), call)
        residual = hooks.hooked(fast.denoiser).adapter.reuse == "residual"
        rank = _relevance(fast, prompts, seed, full, ref, call) if profile and residual else None
        pairs = candidates(budget, full, live_share(fast.denoiser), skippable_units(fast.denoiser), rank)
        trials = [Trial(p, n, s) for p, n in pairs for s in schedulers if p == "never" or s == schedulers[0]]

        def measure(t: Trial, images=prompts, target=ref, offset=0) -> Trial:
            out = _images(fast, base, images, seed + offset, t, call)
            t.flops = fast.last_stats.relative_to(full)
            t.score(out, target, peak=1.0)
            return t

        best, table = search(measure, trials, budget)
        if jumps and fast.gaussian_stats(required=False) is not None:  # second stage: jumps on the best plans
            best, table = search(measure, table + _jump_trials(budget, full, table, schedulers[0]), budget,
                                 done=len(table))
        res = TuneResult(best.policy, best.num_steps, best.flops, best.psnr, budget, full, best.scheduler,
                         best.skip, table)
        if heldout:
            held_ref = _images(fast, base, heldout, seed + 10_000, Trial("never", full), call)
            plain = res.best_fewer_steps()
            pick = measure(Trial(best.policy, best.num_steps, best.scheduler, best.skip), heldout, held_ref, 10_000)
            fewer = measure(Trial(plain.policy, plain.num_steps, plain.scheduler), heldout, held_ref, 10_000)
            res.heldout = {"psnr": pick.psnr, "fewer_steps_psnr": fewer.psnr, "margin_db": pick.psnr - fewer.psnr,
                           "prompts": len(heldout)}
    return res


def _relevance(fast, prompts, seed, full, ref, call) -> str:
    """Per-unit skip impact on the pipeline's own scheduler (diffskip.relevance through the wrapper)."""
    def run(n: int) -> torch.Tensor:
        return fast.pipe(prompts, num_inference_steps=n, output_type="pt", **call,
                         generator=[torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]).images
    return relevance(fast.denoiser, run, full, ref)[0]


def _jump_trials(budget: float, full: int, measured: list[Trial], sched: str) -> list[Trial]:
    """Analytic jump candidates: jump 20% / 35% of n steps and run the rest plain, and a 20% jump before the
    two best caching plans measured (cheaper than planned: the jump's steps cost nothing)."""
    out = []
    for frac in (0.2, 0.35):
        n = max(2, round(budget * full / (1 - frac)))
        k = round(frac * n)
        if 0 < k < n and n <= full:
            out.append(Trial("never", n, sched, k))
    cached = sorted((t for t in measured if t.policy != "never" and t.psnr is not None and t.error is None),
                    key=lambda t: -t.psnr)[:2]
    out += [Trial(t.policy, t.num_steps, t.scheduler, round(0.2 * t.num_steps)) for t in cached
            if round(0.2 * t.num_steps)]
    return out
