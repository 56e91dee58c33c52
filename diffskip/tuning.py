"""Tune a plan to a compute budget: the best fidelity to the full-step run within a FLOPs budget.

The search covers steps x policy (x scheduler and analytic jump, for pipelines: `diffskip.plans`). "Fewer
steps, no caching" is always a candidate, so on the calibration set the pick is never worse than it. The
relevance profile (per-unit skip impact, after Learning-to-Cache and RelaCtrl's relevance score) ranks units
for the `profile` policy.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from .engine import hooks
from .engine.session import resolve_span, session
from .errors import DiffSkipError
from .policies import FINAL, parse

__all__ = ["tune", "relevance", "psnr", "Trial", "TuneResult", "search", "candidates", "pick"]
MAX_DB = 100.0  # PSNR of identical outputs


def psnr(x: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> float:
    """Mean over samples (dim 0) of the per-sample PSNR in dB of `x` against `ref` (capped at 100 dB);
    `peak` defaults to the reference's value range (1.0 for images in [0, 1])."""
    db = psnr_samples(x, ref, peak)
    return sum(db) / len(db)


def psnr_samples(x: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> list[float]:
    """Per-sample PSNR in dB of `x` against `ref` along dim 0 (capped at 100 dB)."""
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    if x.shape != ref.shape:
        raise DiffSkipError(f"run() returned shape {tuple(x.shape)} but the full-step run {tuple(ref.shape)}; "
                            f"allowed: the same shape at every step count (seed the noise inside run()).")
    peak = float(ref.max() - ref.min()) if peak is None else peak
    mse = ((x - ref) ** 2).reshape(len(x), -1).mean(1)
    return [MAX_DB if m == 0 else min(MAX_DB, 10 * math.log10(peak * peak / float(m))) for m in mse]


@dataclass
class Trial:
    """One measured candidate: policy spec, step count, scheduler, analytic jump; FLOPs and PSNR."""

    policy: str
    num_steps: int
    scheduler: str | None = None  # None: the caller's own
    skip: int = 0  # leading steps replaced by the Gaussian jump
    flops: float | None = None  # executed denoiser FLOPs relative to the full-step run
    psnr: float | None = None
    error: str | None = None
    samples: list[float] | None = field(default=None, repr=False)  # per-sample PSNR (the pick's paired test)

    def score(self, out: torch.Tensor, ref: torch.Tensor, peak: float | None = None) -> None:
        """Set `samples` and `psnr` (their mean) from an output and its full-step reference."""
        self.samples = psnr_samples(out, ref, peak)
        self.psnr = sum(self.samples) / len(self.samples)

    @property
    def fewer_steps(self) -> bool:
        """True for the plain baselines: fewer steps, no caching, no jump."""
        return self.policy == "never" and self.skip == 0

    def label(self) -> str:
        sched = f" [{self.scheduler}]" if self.scheduler else ""
        jump = f" +jump {self.skip}" if self.skip else ""
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
    table: list[Trial] = field(default_factory=list)
    heldout: dict[str, float] | None = None

    def best_fewer_steps(self) -> Trial | None:
        """The best plain fewer-steps candidate within the budget."""
        ok = [t for t in self.table if t.fewer_steps and t.psnr is not None and t.flops <= self.budget + 1e-9]
        return max(ok, key=lambda t: t.psnr, default=None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["table"] = [{k: v for k, v in asdict(t).items() if k != "samples"} for t in self.table]
        return d

    def __str__(self) -> str:
        ref = self.best_fewer_steps()
        margin = f", {self.psnr - ref.psnr:+.2f} dB over {ref.label()}" if ref else ""
        held = f"; held out: {self.heldout}" if self.heldout else ""
        pick = Trial(self.policy, self.num_steps, self.scheduler, self.skip).label()
        return f"{pick}: FLOPs {self.flops:.3f} of {self.full_steps} steps, PSNR {self.psnr:.2f} dB{margin}{held}"


def _check_budget(budget: float, full_steps: int) -> None:
    if not isinstance(budget, (int, float)) or not (0 < budget <= 1) or math.isnan(budget):
        raise DiffSkipError(f"budget={budget!r} is invalid; allowed: a FLOPs fraction in (0, 1] of the full-step "
                            f"run, e.g. budget=0.35.")
    if not isinstance(full_steps, int) or full_steps < 2:
        raise DiffSkipError(f"full_steps={full_steps!r} is invalid; allowed: an int >= 2 (the reference's steps).")
    if int(budget * full_steps) < 1:
        raise DiffSkipError(f"budget={budget} of {full_steps} steps leaves less than one step; raise the budget.")


def live_share(model: nn.Module) -> float:
    """Share of a full denoiser call's FLOPs in the units that always compute (measured, default head/tail)."""
    h = hooks.hooked(model)
    if not h.flops:
        raise DiffSkipError("no FLOPs measured on this model yet; run it once in a session with count_flops=True.")
    total, per_unit = next(iter(h.flops.values()))
    head, tail = resolve_span(parse("interval"), h.adapter, len(h.units), type(h.model).__name__)
    skippable = sum(v for i, v in per_unit.items() if head <= i < len(h.units) - tail)
    return max(0.0, min(1.0, 1 - skippable / total))


def skippable_units(model: nn.Module) -> int:
    """Skippable units of an attached model under the adapter's default head/tail."""
    h = hooks.hooked(model)
    return len(h.units) - sum(resolve_span(parse("profile"), h.adapter, len(h.units), type(h.model).__name__))


def candidates(budget: float, full_steps: int, live: float, num_units: int, rank: str | None = None,
               final: int = FINAL) -> list[tuple[str, int]]:
    """Return (policy spec, steps) pairs near the budget: fewer steps, then caching at a few step counts."""
    steps_budget = budget * full_steps
    fewer = max(1, int(steps_budget + 1e-9))
    out = [("never", fewer)]
    counts = sorted({min(full_steps, max(fewer + 1, round(steps_budget / p))) for p in (0.85, 0.7, 0.55, 0.45)}
                    | {full_steps})
    for n in counts:
        if n <= fewer:
            continue
        p = steps_budget / n  # per-step FLOPs fraction allowed
        c = (p - live) / (1 - live)  # share of the skippable unit-steps that may compute
        if c <= 0:
            continue
        c_between = (c * n - 1 - final) / max(1, n - 1 - final)  # between step 0 and the final steps
        if c_between <= 0:
            continue
        out.append((f"uniform:speedup={round(1 / c * 0.98, 3)},forecast=1", n))
        every = math.ceil(1 / c_between)
        for k in sorted({max(2, every - 1), max(2, every)}):  # the budget filter keeps what fits
            out.append((f"interval:every={k},forecast=1", n))
        out.append((f"threshold:target={round(min(1.0, max(0.01, c_between * 0.9)), 3)},forecast=1", n))
        if rank is not None:
            keep = int(c_between * num_units)
            out.append((f"profile:rank={rank},keep={keep},forecast=1", n))
    return out


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


def relevance(model: nn.Module, run: Callable[[int], torch.Tensor], num_steps: int,
              reference: torch.Tensor | None = None) -> tuple[str, list[float]]:
    """Rank skippable units by skip impact: PSNR when only that unit replays on every other step (lower: more
    relevant). Returns the `profile:rank=` string (most relevant first) and the PSNR per unit."""
    if reference is None:
        with session(model, "never", num_steps=num_steps):
            reference = run(num_steps)
    units = skippable_units(model)
    scores = []
    for u in range(units):
        order = ".".join(str(i) for i in [*(i for i in range(units) if i != u), u])
        with session(model, f"profile:rank={order},keep={units - 1},every=2", num_steps=num_steps):
            scores.append(psnr(run(num_steps), reference))
    rank = ".".join(str(u) for u in sorted(range(units), key=lambda u: scores[u]))
    return rank, scores


def tune(model: nn.Module, run: Callable[[int], torch.Tensor], budget: float, full_steps: int, *,
         validate: Callable[[int], torch.Tensor] | None = None, profile: bool = True,
         extra: list[tuple[str, int]] | None = None) -> TuneResult:
    """Find the plan (policy, steps) with the best PSNR to `run(full_steps)` within `budget` of its FLOPs.

    `model` is an attached denoiser; `run(num_steps)` samples with your own loop (same seeds every call) and
    returns a tensor; the tuner opens the sessions. `validate` (same signature, other seeds or prompts)
    re-measures the pick and the best fewer-steps candidate on held-out inputs (`result.heldout`).
    """
    _check_budget(budget, full_steps)
    hooks.hooked(model)  # raises unless attached
    with session(model, "never", num_steps=full_steps) as s:
        ref = run(full_steps)
    if s.stats.flops_fraction is None:
        raise DiffSkipError("run() made no denoiser call on the attached model; call the model you attached.")
    residual = hooks.hooked(model).adapter.reuse == "residual"  # replayed outputs of UNet layers: see docs
    rank = relevance(model, run, full_steps, ref)[0] if profile and residual else None

    def measure(t: Trial, fn=run, target=ref) -> Trial:
        with session(model, t.policy, num_steps=t.num_steps) as s:
            out = fn(t.num_steps)
        t.flops = s.stats.relative_to(full_steps)
        t.score(out, target)
        return t

    pairs = candidates(budget, full_steps, live_share(model), skippable_units(model), rank) + list(extra or [])
    best, table = search(measure, [Trial(p, n) for p, n in pairs], budget)
    res = TuneResult(best.policy, best.num_steps, best.flops, best.psnr, budget, full_steps, table=table)
    if validate is not None:
        with session(model, "never", num_steps=full_steps):
            held_ref = validate(full_steps)
        base = res.best_fewer_steps()
        pick = measure(Trial(best.policy, best.num_steps), validate, held_ref)
        fewer = measure(Trial(base.policy, base.num_steps), validate, held_ref)
        res.heldout = {"psnr": pick.psnr, "fewer_steps_psnr": fewer.psnr, "margin_db": pick.psnr - fewer.psnr}
    return res
