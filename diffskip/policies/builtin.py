"""The built-in policies: never, interval (DeepCache), uniform, profile, threshold (First-Block-Cache), mask."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Sequence

from ..errors import PolicyError, short
from .base import Policy, StepInfo, _check, _knob, register_policy

__all__ = ["Never", "Interval", "Uniform", "Profile", "Threshold", "Mask"]


@register_policy("never")
@dataclass(frozen=True)
class Never(Policy):
    """Always compute every unit (the exact baseline)."""

    per_unit: ClassVar[bool] = False

    reuses: ClassVar[bool] = False

    def decide(self, info: StepInfo, unit: int) -> bool:
        return True


@register_policy("interval")
@dataclass(frozen=True)
class Interval(Policy):
    """Compute every `every`-th step inside [start, end), reuse in between (DeepCache, Ma et al. 2023)."""

    per_unit: ClassVar[bool] = False

    every: int = _knob(3, 1, 1000, "compute every N-th step, reuse the cache in between")
    start: int = _knob(0, 0, 10000, "first step of the caching window (steps before it compute)")
    end: int | None = _knob(None, 1, 10000, "step where the caching window ends (none: the last step)")

    def check(self) -> None:
        _check(isinstance(self.every, int) and self.every >= 1, self.name, "every", self.every, "an int >= 1")
        _check(isinstance(self.start, int) and self.start >= 0, self.name, "start", self.start, "an int >= 0")
        _check(self.end is None or (isinstance(self.end, int) and self.end > self.start), self.name, "end",
               self.end, f"None or an int > start ({self.start})")

    def decide(self, info: StepInfo, unit: int) -> bool:
        s = info.step
        outside = s < self.start or (self.end is not None and s >= self.end)
        return outside or (s - self.start) % self.every == 0


@register_policy("uniform")
@dataclass(frozen=True)
class Uniform(Policy):
    """Compute 1/speedup of all skippable unit-steps, spread evenly over the steps (Unified Layer Skipping).

    Step 0 and the `final` steps compute every unit; the remaining budget R becomes R // U complete refresh
    steps plus one partial step for the remainder, spaced evenly (Bresenham) over the steps in between, so the
    total is exact.
    Refreshes are step-synchronous: a per-unit staggered phase measured 22.3 dB vs 37.6 dB PSNR against the
    exact output on the embedded fashion-sd model at speedup 2 (docs/engine_fashion.md). The plan depends
    only on (step, unit, num_steps), never on the input, so batching changes nothing. Needs `num_steps`.
    """

    speedup: float = _knob(2.0, 1.0, 100.0, "target speed-up over the skippable units (1 = compute all)")

    def check(self) -> None:
        _check(isinstance(self.speedup, (int, float)) and self.speedup >= 1.0, self.name, "speedup",
               self.speedup, "a number >= 1.0")

    def budget(self, num_steps: int, num_units: int) -> int:
        """Return how many skippable unit computations a run of `num_steps` executes (final steps included)."""
        total = num_steps * num_units
        fixed = (1 + min(self.final, num_steps - 1)) * num_units  # step 0 and the final steps
        return min(total, max(fixed, round(total / self.speedup)))

    def decide(self, info: StepInfo, unit: int) -> bool:
        n, u_count, s = info.num_steps, info.num_units, info.step
        if n is None:
            raise PolicyError("uniform needs the number of steps of the run; it is known when the pipeline "
                              "is wrapped with DiffSkipPipeline, or pass num_steps= to diffskip.session().")
        m = n - min(self.final, n - 1)  # steps 1..m-1 share the budget; step 0 and the final steps compute
        if s == 0 or s >= m:
            return True
        fixed = (1 + n - m) * u_count
        full, partial = divmod(self.budget(n, u_count) - fixed, u_count)
        events = full + (partial > 0)
        j = s - 1  # position among the m - 1 steps between step 0 and the final steps
        e = (j + 1) * events // (m - 1)
        if e == j * events // (m - 1):
            return False
        return not partial or e < events or unit < partial  # the last refresh is the partial one


@register_policy("profile")
@dataclass(frozen=True)
class Profile(Policy):
    """Reuse the least relevant units first, by measured skip impact (Learning-to-Cache; RelaCtrl relevance).

    `rank` lists the skippable units, most relevant first (`diffskip.relevance` measures it; empty: depth
    order). Between full refreshes every `every` steps, only the `keep` most relevant units compute.
    """

    rank: str = _knob("", tip="skippable units, most relevant first, dot-separated, e.g. '3.0.2.1' "
                              "(diffskip.relevance measures it; empty: depth order)")
    keep: int = _knob(1, 0, 1000, "most relevant units that compute at every step")
    every: int = _knob(0, 0, 1000, "compute every unit every N-th step (0: only step 0 and the final steps)")

    def check(self) -> None:
        parts = self.rank.split(".") if isinstance(self.rank, str) and self.rank else []
        ok = isinstance(self.rank, str) and all(p.isascii() and p.isdigit() for p in parts) and \
            len(set(parts)) == len(parts)
        _check(ok, self.name, "rank", self.rank, "distinct unit indices separated by dots, e.g. '3.0.2.1'")
        object.__setattr__(self, "_order", tuple(int(p) for p in parts))
        for f in ("keep", "every"):
            v = getattr(self, f)
            _check(isinstance(v, int) and not isinstance(v, bool) and v >= 0, self.name, f, v, "an int >= 0")

    def check_units(self, num_units: int) -> None:
        _check(not self._order or sorted(self._order) == list(range(num_units)), self.name, "rank", self.rank,
               f"empty or each of this model's {num_units} skippable units 0..{num_units - 1} once")

    def decide(self, info: StepInfo, unit: int) -> bool:
        s = info.step
        if s == 0 or (self.every and s % self.every == 0):
            return True
        order = self._order or tuple(range(info.num_units))
        return order.index(unit) < self.keep


@register_policy("threshold")
@dataclass(frozen=True)
class Threshold(Policy):
    """Compute a sample when its probe's accumulated relative change is large (First-Block-Cache, TeaCache).

    The probe is the first unit's output (UNets) or residual (DiTs). `target` (default) normalises the drift
    by its mean per-step change so far and computes once it reaches 1/target - 1/2 (the overshoot past a
    level averages half a step): about `target` of the steps compute, on any model. `threshold` instead
    gates the raw drift (scale depends on the model). Decided per sample: in a batch, the samples that
    drifted recompute and the others reuse. `max_streak` caps reuse.
    """

    per_unit: ClassVar[bool] = False

    needs_drift: ClassVar[bool] = True
    target: float | None = _knob(0.5, 0.01, 1.0, "fraction of steps that compute: recompute once the drift "
                                                 "reaches 1/target - 1/2 times its mean per-step change")
    threshold: float | None = _knob(None, 0.0, 10.0, "absolute gate on the raw accumulated drift instead "
                                                     "of target (its scale depends on the model)")
    warmup: int = _knob(1, 1, 10000, "leading steps that always compute")
    max_streak: int = _knob(0, 0, 10000, "most consecutive reused steps (0: no limit)")

    def check(self) -> None:
        if self.threshold is not None and self.target == 0.5:  # threshold= alone: the absolute gate
            object.__setattr__(self, "target", None)
        _check((self.target is None) != (self.threshold is None), self.name, "target", self.target,
               "exactly one of target= (fraction of steps, default 0.5) and threshold= (absolute drift)")
        for f in ("target", "threshold"):
            v = getattr(self, f)
            _check(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0), self.name,
                   f, v, "a number >= 0")
        _check(isinstance(self.warmup, int) and self.warmup >= 1, self.name, "warmup", self.warmup, "an int >= 1")
        _check(isinstance(self.max_streak, int) and self.max_streak >= 0, self.name, "max_streak",
               self.max_streak, "an int >= 0 (0 = unlimited)")
        _check(self.head != 0, self.name, "head", self.head, "None or an int >= 1 (the first unit is the probe)")

    def decide(self, info: StepInfo, unit: int) -> bool | Sequence[bool]:
        if info.step < self.warmup or info.drift is None:
            return True
        if self.threshold is not None:
            over = [d > self.threshold for d in info.drift]
        else:
            rate = info.rate or (0.0,) * len(info.drift)
            level = 1 / self.target - 0.5  # renewal correction: the overshoot past the level averages half a step
            over = [d >= r * level * (1 - 1e-9) for d, r in zip(info.drift, rate)]
        return [o or (self.max_streak > 0 and k >= self.max_streak) for o, k in zip(over, info.streak)]


@register_policy("mask")
@dataclass(frozen=True)
class Mask(Policy):
    """Follow an explicit per-step plan: '1' computes, '0' reuses (step masks).

    With `cycle=0` (the spec default) the mask has one character per step and a run of another length is
    refused before its first unit runs; `cycle=1` repeats the pattern over any number of steps (the ComfyUI
    node's default, `steps=1,cycle=1`, computes every step at any step count).
    """

    per_unit: ClassVar[bool] = False

    steps: str = _knob("1", tip="one character per step: 1 computes, 0 reuses")
    cycle: int = dataclasses.field(default=0, metadata={
        "range": (0, 1), "node_default": 1,
        "tooltip": "0: one character per step (a run of another length is refused); 1: repeat the pattern"})

    def check(self) -> None:
        _check(isinstance(self.steps, str) and len(self.steps) > 0 and set(self.steps) <= {"0", "1"},
               self.name, "steps", self.steps, "a non-empty string of 0/1, one character per step")
        _check(self.cycle in (0, 1) and isinstance(self.cycle, int), self.name, "cycle", self.cycle,
               "0 (one character per step) or 1 (repeat the pattern)")

    def check_steps(self, num_steps: int) -> None:
        """Raise PolicyError unless this mask fits a run of `num_steps` steps (any count when cycling)."""
        if not self.cycle and len(self.steps) != num_steps:
            raise PolicyError(f"mask: steps={short(self.steps)} has {len(self.steps)} characters but the run has "
                              f"{num_steps} steps; allowed: one character per step. Fix: give {num_steps} characters, "
                              f"or add cycle=1 to repeat the pattern.")

    def decide(self, info: StepInfo, unit: int) -> bool:
        if self.cycle:
            return self.steps[info.step % len(self.steps)] == "1"
        if info.num_steps is not None:
            self.check_steps(info.num_steps)
        if info.step >= len(self.steps):
            raise PolicyError(f"mask: steps={short(self.steps)} covers {len(self.steps)} steps but the run reached "
                              f"step {info.step}; give one character per denoiser step, or add cycle=1.")
        return self.steps[info.step] == "1"
