"""The policy base: StepInfo, the Policy dataclass (shared fields, ranges, printing) and the registry."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Sequence

from ..errors import PolicyError, short

__all__ = ["Policy", "StepInfo", "POLICIES", "register_policy", "PolicyError", "SHARED", "FINAL", "FORECAST"]

POLICIES: dict[str, type[Policy]] = {}
SHARED = ("head", "tail", "forecast", "final", "cfg", "tokens")  # fields every policy has
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

    `cfg=N` (CFG-aware caching): the unconditional rows or call of classifier-free guidance compute their
    skippable units on one of every N of the steps where the policy computes them, replaying their own cache
    otherwise; step 0 and the `final` steps compute everything. The session must know which rows are
    unconditional (`diffskip.session(..., uncond=...)`; DiffSkipPipeline sets it).
    `tokens` > 0: in a step where a DiT block (or span of blocks) would replay, recompute that fraction of its
    tokens, those whose input changed most since they last computed, and replay the rest (token-wise caching
    after ToCa, Zou et al. 2024); see docs/policies.md, "Token-level partial compute".
    """

    name: ClassVar[str] = "policy"
    needs_drift: ClassVar[bool] = False  # the session measures the probe unit's drift for it
    reuses: ClassVar[bool] = True  # False: the session keeps no cache at all
    per_unit: ClassVar[bool] = True  # False: every skippable unit gets the same decision at a step (the session
    # then caches a span's summed residual, or only the outputs live units read: lean caches)
    head: int | None = _knob(None, 0, 64, "leading units that always compute (none: the adapter's default)")
    tail: int | None = _knob(None, 0, 64, "trailing units that always compute (none: the adapter's default)")
    forecast: int = _knob(FORECAST, 0, 2, "0: replay a skipped unit's cached value; "
                          "1: extrapolate it from its last two computes (first-order Taylor, TaylorSeer); "
                          "2: from its last three (second order)")
    final: int = _knob(FINAL, 0, 10000, "last steps that always compute every unit (needs the step count)")
    cfg: int = _knob(1, 1, 100, "the unconditional half of classifier-free guidance computes its skippable units "
                     "on one of every N of the steps where the policy computes them (1: off)")
    tokens: float = _knob(0.0, 0.0, 1.0, "fraction of tokens recomputed in a step where a block would replay; "
                          "0: plain replay, 1.0: every token computes (equal to computing the block)")

    def __post_init__(self) -> None:
        for f in ("head", "tail"):
            v = getattr(self, f)
            _check(v is None or (isinstance(v, int) and v >= 0), self.name, f, v, "None or an int >= 0")
        _check(self.forecast in (0, 1, 2) and isinstance(self.forecast, int), self.name, "forecast", self.forecast,
               "0 (reuse as is), 1 (first-order Taylor forecast, TaylorSeer) or 2 (second order)")
        _check(isinstance(self.final, int) and not isinstance(self.final, bool) and self.final >= 0, self.name,
               "final", self.final, "an int >= 0 (last steps that compute fully)")
        _check(isinstance(self.cfg, int) and not isinstance(self.cfg, bool) and self.cfg >= 1 and
               (self.cfg == 1 or self.reuses), self.name, "cfg", self.cfg,
               "an int >= 1 (1: off); > 1 needs a policy that caches (interval:every=1,cfg=N thins only the "
               "unconditional half)")
        _check(self.cfg == 1 or not self.tokens, self.name, "tokens", self.tokens,
               "0 with cfg > 1 (token-level recompute does not compose with the CFG difference cache yet)")
        self.check()
        _in_range(self)

    def check(self) -> None:
        """Validate the policy's own fields (raise PolicyError naming the value); the ranges are checked after."""

    def check_units(self, num_units: int) -> None:
        """Validate against the model's skippable unit count, at attach / session start (raise PolicyError)."""

    def decide(self, info: StepInfo, unit: int) -> bool | Sequence[bool]:
        """Return True where skippable `unit` computes at this step (or one bool per sample), on the host."""
        raise NotImplementedError

    def computes_all(self, step: int, num_steps: int | None) -> bool:
        """Return True when every unit computes at `step` whatever `decide` says: the `final` last steps."""
        if not (self.final and self.reuses):
            return False
        if num_steps is None:
            raise PolicyError(f"{self}: final={self.final} computes the last steps fully, which needs the run's "
                              f"step count; pass num_steps= to diffskip.session(), or set final=0.")
        return step >= num_steps - self.final

    def __str__(self) -> str:
        own = [f for f in dataclasses.fields(self) if f.name not in SHARED]
        shared = [f for f in dataclasses.fields(self) if f.name in SHARED]
        parts = [f"{f.name}={_fmt(getattr(self, f.name))}" for f in own + shared
                 if (getattr(self, f.name) != f.default and not (getattr(self, f.name) is None and f in own))
                 or (own and f is own[0] and getattr(self, f.name) is not None)]  # the main knob is always shown
        # an own field set to None over a non-None default is implied by another field (threshold= over target=)
        return self.name + (":" + ",".join(parts) if parts else "")


def _fmt(v) -> str:
    return "none" if v is None else str(v)
