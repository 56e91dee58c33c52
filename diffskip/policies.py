"""Policies: which cacheable units a denoiser step computes, as frozen, validated dataclasses.

A policy is a pure decision function of (step, unit, drift, streak) on the host; all state lives in the
session, so policies hash, print, serialise to one spec string (`str(policy)`) and parse back
(`parse(spec)`). `register_policy` adds a user's own policy to the spec syntax and the ComfyUI nodes.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

from .errors import PolicyError, short

__all__ = ["Policy", "Never", "Interval", "Uniform", "Profile", "Threshold", "Mask", "StepInfo", "parse", "POLICIES",
           "register_policy", "PolicyError"]

POLICIES: dict[str, type[Policy]] = {}
SHARED = ("head", "tail", "forecast", "final")  # fields every policy has
FINAL = 1  # default final= (measured: docs/policies.md, "Final steps")
FORECAST = 1  # default forecast= (measured: docs/policies.md, "Defaults")
MAX_SPEC = 1000  # characters; a longer spec is refused before parsing


@dataclass(frozen=True)
class StepInfo:
    """What a policy may look at when it decides one denoiser call."""

    step: int  # 0-based index of the denoiser step in the run
    num_steps: int | None  # steps in the run, where the pipeline or caller says
    num_units: int  # skippable units (between the always-computed head and tail)
    drift: tuple[float, ...] | None  # per sample: accumulated relative change of the probe since its last compute
    streak: tuple[int, ...]  # per sample: consecutive steps on which it reused every skippable unit
    rate: tuple[float, ...] | None = None  # per sample: mean per-step relative change of the probe so far


def _knob(default, lo: float | None = None, hi: float | None = None, tip: str = ""):
    """Declare a policy field with the range and tooltip that ComfyUI node inputs are generated from."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi), "tooltip": tip})


def register_policy(name: str) -> Callable[[type], type]:
    """Register a Policy dataclass under `name`: it then parses from specs and appears as a ComfyUI node."""
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise PolicyError(f"register_policy({short(name)}): allowed: a lowercase identifier like 'my_policy'.")

    def wrap(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, Policy) and dataclasses.is_dataclass(cls)):
            raise PolicyError(f"register_policy({name!r}) decorates {cls!r}; allowed: a @dataclass(frozen=True) "
                              f"subclass of diffskip.Policy (put @register_policy above @dataclass).")
        if name in POLICIES and POLICIES[name].__qualname__ != cls.__qualname__:
            raise PolicyError(f"policy name {name!r} is taken by {POLICIES[name].__qualname__}; pick another name.")
        cls.name = name
        POLICIES[name] = cls
        return cls

    return wrap


def _check(ok: bool, policy: str, field: str, value, allowed: str) -> None:
    if not ok:
        raise PolicyError(f"{policy}: {field}={short(value)} is invalid; allowed: {allowed}. "
                          f"Fix the value, e.g. parse('{policy}:{field}=...').")


def _in_range(policy: Policy) -> None:
    """Check every numeric field against its declared range (the ComfyUI widget range): finite and bounded."""
    for f in dataclasses.fields(policy):
        v = getattr(policy, f.name)
        lo, hi = f.metadata.get("range", (None, None))
        if v is None or isinstance(v, str) or (lo is None and hi is None):
            continue
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and \
            (lo is None or v >= lo) and (hi is None or v <= hi)
        _check(ok, policy.name, f.name, v, f"a finite number in [{_fmt(lo)}, {_fmt(hi)}]")


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Base of all policies; `head`/`tail` override how many leading/trailing units always compute.

    `forecast=1` replays a skipped unit's cached value extrapolated to the current step from its last two
    computations (first-order Taylor in the step index, after TaylorSeer, Liu et al. 2025) instead of as is.

    `None` keeps the adapter's default (UNets: first down block and last up block live, DeepCache-style;
    DiTs: first block live, First-Block-Cache-style).

    `final` last steps compute every unit whatever the policy says: a replayed last step leaves visible noise
    (8.6-11.4 dB lost on a held-out model, issue #12). It needs the run's step count.
    """

    name: ClassVar[str] = "policy"
    needs_drift: ClassVar[bool] = False  # the session measures the probe unit's drift for it
    reuses: ClassVar[bool] = True  # False: the session keeps no cache at all
    head: int | None = _knob(None, 0, 64, "leading units that always compute (none: the adapter's default)")
    tail: int | None = _knob(None, 0, 64, "trailing units that always compute (none: the adapter's default)")
    forecast: int = _knob(FORECAST, 0, 1, "0: replay a skipped unit's cached value; 1: extrapolate it from its last two "
                                   "computes (first-order Taylor, TaylorSeer)")
    final: int = _knob(FINAL, 0, 10000, "last steps that always compute every unit (needs the step count)")

    def __post_init__(self) -> None:
        for f in ("head", "tail"):
            v = getattr(self, f)
            _check(v is None or (isinstance(v, int) and v >= 0), self.name, f, v, "None or an int >= 0")
        _check(self.forecast in (0, 1) and isinstance(self.forecast, int), self.name, "forecast", self.forecast,
               "0 (reuse as is) or 1 (first-order Taylor forecast, TaylorSeer)")
        _check(isinstance(self.final, int) and not isinstance(self.final, bool) and self.final >= 0, self.name,
               "final", self.final, "an int >= 0 (last steps that compute fully)")
        self.check()
        _in_range(self)

    def check(self) -> None:
        """Validate the policy's own fields (raise PolicyError naming the value); the ranges are checked after."""

    def check_units(self, num_units: int) -> None:
        """Validate against the model's skippable unit count, at attach / session start (raise PolicyError)."""

    def decide(self, info: StepInfo, unit: int) -> bool | Sequence[bool]:
        """Return True where skippable `unit` computes at this step (or one bool per sample), on the host."""
        raise NotImplementedError

    def __str__(self) -> str:
        own = [f for f in dataclasses.fields(self) if f.name not in SHARED]
        shared = [f for f in dataclasses.fields(self) if f.name in SHARED]
        parts = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in own + shared
                 if (getattr(self, f.name) != f.default and not (getattr(self, f.name) is None and f in own))
                 or (own and f is own[0] and getattr(self, f.name) is not None)]  # the main knob is always shown
        # an own field set to None over a non-None default is implied by another field (threshold= over target=)
        return self.name + (":" + ",".join(parts) if parts else "")


@register_policy("never")
@dataclass(frozen=True)
class Never(Policy):
    """Always compute every unit (the exact baseline)."""

    reuses: ClassVar[bool] = False

    def decide(self, info: StepInfo, unit: int) -> bool:
        return True


@register_policy("interval")
@dataclass(frozen=True)
class Interval(Policy):
    """Compute every `every`-th step inside [start, end), reuse in between (DeepCache, Ma et al. 2023)."""

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
    level averages half a step): about `target` of the steps compute, on any model. `threshold` instead gates the raw drift (scale depends on the model). Decided per
    sample: in a batch, the samples that drifted recompute and the others reuse. `max_streak` caps reuse.
    """

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


def _fmt(v) -> str:
    return "none" if v is None else str(v)


def _convert(policy: str, field: dataclasses.Field, hint, raw: str):
    if raw.lower() == "none" and type(None) in typing.get_args(hint):
        return None
    base = next((t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)), str)
    try:
        if base in (int, float) and not raw.isascii():  # int() would take full-width or Arabic-Indic digits
            raise ValueError(raw)
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        return raw
    except ValueError:
        raise PolicyError(f"{policy}: {field.name}={short(raw)} is not a valid {base.__name__} (ASCII digits); "
                          f"write e.g. {policy}:{field.name}={_fmt(field.default)}.") from None


def parse(spec: str | Policy) -> Policy:
    """Parse a spec string like 'interval:every=3,start=2' (or pass a Policy through)."""
    if isinstance(spec, Policy):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"policy spec {short(spec)} is not a non-empty string; allowed names: {sorted(POLICIES)}.")
    if len(spec) > MAX_SPEC:
        raise PolicyError(f"policy spec {short(spec)} is too long; allowed: at most {MAX_SPEC} characters.")
    name, _, rest = spec.strip().partition(":")
    cls = POLICIES.get(name.strip().lower())
    if cls is None:
        raise PolicyError(f"unknown policy {short(name)}; allowed: {sorted(POLICIES)} (e.g. 'interval:every=3').")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, raw = item.partition("=")
        key = key.strip()
        if key not in fields or not eq:
            raise PolicyError(f"{cls.name}: bad option {short(item)}; allowed keys: {sorted(fields)} as key=value.")
        if key in kwargs:
            raise PolicyError(f"{cls.name}: {key}= given twice in {short(spec)}; allowed: each key once.")
        kwargs[key] = _convert(cls.name, fields[key], hints[key], raw.strip())
    return cls(**kwargs)
