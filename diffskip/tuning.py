"""Tune a plan to a compute budget: the best fidelity to the full-step run within a FLOPs budget.

`tune` is diffskip's one search: steps x policy on your own sampling loop, and, through a `Sampler` (which
`diffskip.plan_files.tune_pipeline` builds for a DiffSkipPipeline), x scheduler x analytic jump. "Fewer steps,
no caching" is always a candidate, so on the calibration set the pick is never worse than it. The relevance
profile (per-unit skip impact, after Learning-to-Cache and RelaCtrl's relevance score) ranks units for the
`profile` policy.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .analytic import GaussianSkip
from .engine import hooks
from .engine.session import session
from .engine.stats import Stats
from .errors import DiffSkipError, short
from .metrics.fidelity import MAX_DB, psnr_samples
from .search_space import candidates, cfg_variants, check_budget, check_space, jump_candidates, live_share, \
    skippable_units

__all__ = ["tune", "relevance", "Trial", "TuneResult", "Sampler", "search", "candidates", "pick", "paired_margin",
           "check_budget", "live_share", "skippable_units"]
Loop = Callable[[int], torch.Tensor]  # your own sampling loop: run(num_steps) -> output (same seeds every call)


@dataclass
class Trial:
    """One measured candidate: policy spec, step count, scheduler, analytic jump; FLOPs and PSNR."""

    policy: str
    num_steps: int
    scheduler: str | None = None  # None: the caller's own
    skip: int = 0  # leading steps replaced by the Gaussian jump
    conditional: bool = False  # the prompt-aware jump (mean from the model's step-0 prediction)
    flops: float | None = None  # executed denoiser FLOPs relative to the full-step run
    psnr: float | None = None
    error: str | None = None
    samples: list[float] | None = field(default=None, repr=False)  # per-sample PSNR (the pick's paired test)

    def score(self, out: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> None:
        """Set `samples` and `psnr` (their mean) from an output and its full-step reference (capped at 100 dB)."""
        if out.shape != ref.shape:
            raise DiffSkipError(f"run() returned shape {tuple(out.shape)} but the full-step run {tuple(ref.shape)}; "
                                f"allowed: the same shape at every step count (seed the noise inside run()).")
        ref = ref.detach().double().cpu()
        peak = float(ref.max() - ref.min()) if peak is None else peak  # default: the reference's value range
        self.samples = psnr_samples(out, ref, peak, cap=MAX_DB)
        self.psnr = sum(self.samples) / len(self.samples)

    @property
    def fewer_steps(self) -> bool:
        """True for the plain baselines: fewer steps, no caching, no jump."""
        return self.policy == "never" and self.skip == 0

    def label(self) -> str:
        sched = f" [{self.scheduler}]" if self.scheduler else ""
        jump = f" +jump {self.skip}{' conditional' if self.conditional else ''}" if self.skip else ""
        return f"{self.num_steps} steps {self.policy}{jump}{sched}"


@dataclass
class TuneResult:
    """The chosen plan and every candidate measured (`table`); `heldout` holds the validation margins."""

    policy: str
    num_steps: int
    flops: float
    psnr: float
    budget: float
    full_steps: int
    scheduler: str | None = None
    skip: int = 0
    conditional: bool = False
    table: list[Trial] = field(default_factory=list)
    heldout: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self._model: nn.Module | None = None  # set by `tune`: what `apply` runs on (not saved)
        self._stats: Any = None

    def trial(self) -> Trial:
        """The pick as a Trial (policy, steps, scheduler, jump)."""
        return Trial(self.policy, self.num_steps, self.scheduler, self.skip, self.conditional)

    def apply(self, run: Loop) -> torch.Tensor:
        """Run the pick with your loop `run(num_steps, skip=None)`: opens the session and passes the jump."""
        if self._model is None:
            raise DiffSkipError("this TuneResult was not made by diffskip.tune on a model in this process; apply a "
                                "saved plan with DiffSkipPipeline.from_pretrained(..., plan=...) instead.")
        if self.scheduler is not None:
            raise DiffSkipError(f"the pick uses scheduler {self.scheduler!r}, which a plain loop cannot swap; use "
                                f"the pipeline the plan was tuned with (DiffSkipPipeline, plan=...).")
        return _as_sampler(self._model, run, "run", self._stats if self.skip else None).fn(self.trial())[0]

    def best_fewer_steps(self) -> Trial | None:
        """The best plain fewer-steps candidate within the budget."""
        ok = [t for t in self.table if t.fewer_steps and t.psnr is not None and t.flops <= self.budget + 1e-9]
        return max(ok, key=lambda t: t.psnr, default=None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["table"] = [{**{k: v for k, v in asdict(t).items() if k != "samples"},
                       "over_budget": t.flops is not None and t.flops > self.budget + 1e-9} for t in self.table]
        return d

    def __str__(self) -> str:
        ref = self.best_fewer_steps()
        margin = f", {self.psnr - ref.psnr:+.2f} dB over {ref.label()}" if ref else ""
        held = f"; held out: {self.heldout}" if self.heldout else ""
        pick = self.trial().label()
        return f"{pick}: FLOPs {self.flops:.3f} of {self.full_steps} steps, PSNR {self.psnr:.2f} dB{margin}{held}"


def search(measure: Callable[[Trial], Trial], trials: list[Trial], budget: float,
           done: int = 0) -> tuple[Trial, list[Trial]]:
    """Measure every trial after the first `done` (errors recorded, not raised); return the best within
    budget and all trials."""
    done, trials = list(trials[:done]), trials[done:]
    for t in trials:
        try:
            t = measure(t)
        except DiffSkipError as e:
            t.error = str(e)
        done.append(t)
    ok = [t for t in done if t.error is None and t.flops is not None and t.flops <= budget + 1e-9]
    if not ok:
        raise DiffSkipError(f"no candidate ran within budget={budget}; raise the budget. Tried: "
                            f"{[(t.label(), t.flops, t.error) for t in done][:6]}")
    return pick(ok), done


def paired_margin(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean per-sample advantage of `a` over `b` (paired) and twice its standard error (0 for one sample)."""
    d = [x - y for x, y in zip(a, b)]
    mean = sum(d) / len(d)
    if len(d) < 2:
        return mean, 0.0
    var = sum((x - mean) ** 2 for x in d) / (len(d) - 1)
    return mean, 2 * math.sqrt(var / len(d))


def pick(ok: list[Trial]) -> Trial:
    """The best mean PSNR, except that a plan beats the best fewer-steps candidate only if its per-sample
    advantage exceeds twice its standard error (paired test on the calibration samples)."""
    best = max(ok, key=lambda t: (t.psnr, -t.flops))
    fewer = max((t for t in ok if t.fewer_steps), key=lambda t: (t.psnr, -t.flops), default=None)
    if fewer is None or best.fewer_steps or best.samples is None or fewer.samples is None:
        return best
    def sure(t: Trial) -> bool:
        mean, two_se = paired_margin(t.samples, fewer.samples)
        return mean > two_se

    plans = [t for t in ok if not t.fewer_steps and t.samples is not None and sure(t)]
    return max(plans, key=lambda t: (t.psnr, -t.flops), default=fewer)


@dataclass(frozen=True)
class Sampler:
    """Runs one trial (policy, steps, scheduler, jump) and returns (output, Stats), opening its own session.

    A plain loop `run(num_steps)` needs none (the tuner opens the sessions); `diffskip.plan_files` builds one
    for a DiffSkipPipeline, whose calls open their own.
    """

    fn: Callable[[Trial], tuple[torch.Tensor, Stats]]


def _takes_skip(run: Callable) -> bool:
    try:
        params = inspect.signature(run).parameters
    except (TypeError, ValueError):
        return False
    return "skip" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _as_sampler(model: nn.Module, run: Loop | Sampler, name: str, stats: Any = None) -> Sampler:
    """Wrap a plain loop in a Sampler that opens the session of each trial (and, with `stats`, passes skip=)."""
    if isinstance(run, Sampler):
        return run
    if not callable(run):
        raise DiffSkipError(f"{name}={short(run)} is invalid; allowed: a function run(num_steps) -> tensor (your "
                            f"sampling loop) or a diffskip.tuning.Sampler.")
    if stats is not None and not _takes_skip(run):
        raise DiffSkipError(f"{name}={short(run)} takes no `skip` argument, so the tuner cannot start it from a "
                            f"Gaussian jump; allowed: run(num_steps, skip=None) calling skip.start(x, scheduler) "
                            f"(docs/tuning.md), or tune without stats=.")

    def fn(t: Trial) -> tuple[torch.Tensor, Stats]:
        if t.skip and stats is None:
            raise DiffSkipError(f"trial {t.label()} jumps but no Gaussian statistics were given; pass stats=.")
        skip = GaussianSkip(stats, t.skip, t.conditional) if t.skip else None
        saved = skip.saved_calls if skip else 0
        with session(model, t.policy, num_steps=t.num_steps - saved) as s:
            out = run(t.num_steps) if stats is None else run(t.num_steps, skip=skip)
        s.stats.skipped_steps = saved
        return out, s.stats
    return Sampler(fn)


def _measurer(sample: Sampler, ref: torch.Tensor, full: int, peak: float | None) -> Callable[[Trial], Trial]:
    def measure(t: Trial) -> Trial:
        out, stats = sample.fn(t)
        t.flops = stats.relative_to(full)
        t.score(out, ref, peak)
        return t
    return measure


def _rank(model: nn.Module, sample: Sampler, num_steps: int, reference: torch.Tensor) -> tuple[str, list[float]]:
    """Per-unit skip impact: PSNR when only that unit replays every other step; the rank, most relevant first."""
    units = skippable_units(model)
    measure, scores = _measurer(sample, reference, num_steps, None), []
    for u in range(units):
        order = ".".join(str(i) for i in [*(i for i in range(units) if i != u), u])
        scores.append(measure(Trial(f"profile:rank={order},keep={units - 1},every=2", num_steps)).psnr)
    rank = ".".join(str(u) for u in sorted(range(units), key=lambda u: scores[u]))
    return rank, scores


def relevance(model: nn.Module, run: Loop, num_steps: int,
              reference: torch.Tensor | None = None) -> tuple[str, list[float]]:
    """Rank skippable units by skip impact: PSNR when only that unit replays on every other step (lower: more
    relevant). Returns the `profile:rank=` string (most relevant first) and the PSNR per unit."""
    sample = _as_sampler(model, run, "run")
    if reference is None:
        reference = sample.fn(Trial("never", num_steps))[0]
    return _rank(model, sample, num_steps, reference)


def _heldout(res: TuneResult, sample: Sampler, full: int, peak: float | None) -> dict[str, float]:
    """Re-measure the pick and the best fewer-steps candidate on held-out inputs."""
    measure = _measurer(sample, sample.fn(Trial("never", full))[0], full, peak)
    base = res.best_fewer_steps()
    pick_ = measure(res.trial())
    fewer = measure(Trial(base.policy, base.num_steps, base.scheduler))
    return {"psnr": pick_.psnr, "fewer_steps_psnr": fewer.psnr, "margin_db": pick_.psnr - fewer.psnr}


def _jump_trials(budget: float, full: int, table: list[Trial], live: float, units: int, rank: str | None,
                 sched: str | None) -> list[Trial]:
    """Jump candidates in both forms (fitted mean; prompt-aware, one step later to pay for its model call)."""
    best = sorted((t for t in table if t.policy != "never" and t.psnr is not None and t.error is None
                   and t.skip == 0), key=lambda t: -t.psnr)[:2]
    out = []
    for p, n, k in jump_candidates(budget, full, live, units, rank,
                                   [(t.policy, t.num_steps) for t in best]):
        out.append(Trial(p, n, sched, k))
        if k + 1 < n:
            out.append(Trial(p, n, sched, k + 1, True))
    return out


def tune(model: nn.Module, run: Loop | Sampler, budget: float, full_steps: int, *,
         validate: Loop | Sampler | None = None, stats: Any = None, profile: bool = True,
         extra: list[tuple[str, int]] | None = None, schedulers: Sequence[str | None] = (None,),
         jumps: bool | None = None, cfg: bool = False, peak: float | None = None) -> TuneResult:
    """Find the plan (steps, policy, jump) with the best PSNR to `run(full_steps)` within `budget` of its FLOPs.

    `model` is an attached denoiser; `run(num_steps)` samples with your own loop (same seeds every call) and
    returns a tensor; the tuner opens the sessions. With `stats` (GaussianStats) the loop is called as
    `run(num_steps, skip=...)` and the search adds analytic jumps (`skip.start(x, scheduler)` in the loop).
    `validate` (same signature, other seeds or prompts) re-measures the pick and the best fewer-steps candidate
    on held-out inputs (`result.heldout`). With a `Sampler` for `run`, `schedulers` and `jumps` widen the
    search; `cfg` adds CFG-aware caching variants (for samplers whose sessions know the unconditional rows: a
    DiffSkipPipeline doing guidance); `peak` is the PSNR value range (default: the reference's).
    `result.apply(run)` runs the pick with your loop.
    """
    check_budget(budget, full_steps)
    jumps = check_space(not isinstance(run, Sampler), schedulers, jumps, stats)
    h = hooks.hooked(model)  # raises unless attached
    sample = _as_sampler(model, run, "run", stats)
    ref, st = sample.fn(Trial("never", full_steps))
    if st.flops_fraction is None:
        raise DiffSkipError("the full-step run measured no denoiser FLOPs: run() made no call on the attached model "
                            "(call the model you attached), or FLOPs counting is off.")
    residual = h.adapter.reuse == "residual"  # replayed outputs of UNet layers: no profile (see docs)
    rank = _rank(model, sample, full_steps, ref)[0] if profile and residual else None
    measure = _measurer(sample, ref, full_steps, peak)
    live, units = live_share(model), skippable_units(model)
    pairs = candidates(budget, full_steps, live, units, rank) + list(extra or [])
    trials = [Trial(p, n, s) for p, n in pairs for s in schedulers if p == "never" or s == schedulers[0]]
    best, table = search(measure, trials, budget)
    if jumps:  # second stage: jumps alone and before caching
        best, table = search(measure, table + _jump_trials(budget, full_steps, table, live, units, rank, schedulers[0]),
                             budget, done=len(table))
    if cfg:  # third stage: the unconditional half computed less often, on the best plans
        best, table = search(measure, table + cfg_variants(table, budget, full_steps, live), budget,
                             done=len(table))
    res = TuneResult(best.policy, best.num_steps, best.flops, best.psnr, budget, full_steps, best.scheduler,
                     best.skip, best.conditional, table)
    res._model, res._stats = model, stats
    if validate is not None:
        res.heldout = _heldout(res, _as_sampler(model, validate, "validate", stats), full_steps, peak)
    return res
