"""What a run computed and reused, per step and guidance branch, and the FLOPs it actually executed."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class CallRecord:
    """One denoiser call: unit evaluations counted per sample (a batch of 4 computing one unit counts 4)."""

    step: int
    branch: int
    timestep: float
    computed: int = 0  # skippable unit evaluations that ran
    reused: int = 0  # skippable unit evaluations replayed from the cache
    live: int = 0  # head/tail unit evaluations (always run)
    flops_run: float | None = None  # measured FLOPs executed in this call
    flops_full: float | None = None  # measured FLOPs of the same call with every unit computed
    rows_computed: list[int] | None = None  # per batch row: skippable unit evaluations that ran


@dataclass
class Stats:
    """Totals and per-call records of one run; `flops_fraction` is executed / full denoiser FLOPs."""

    num_units: int
    skippable: int
    calls: list[CallRecord] = field(default_factory=list)
    skipped_steps: int = 0  # leading steps replaced by the analytic Gaussian jump (no denoiser call)
    cache_bytes: int = 0  # peak bytes the session's caches held during the run (freed when it ends)

    def add(self, rec: CallRecord) -> None:
        self.calls.append(rec)

    @property
    def steps(self) -> int:
        return len({c.step for c in self.calls})

    @property
    def computed(self) -> int:
        return sum(c.computed for c in self.calls)

    @property
    def reused(self) -> int:
        return sum(c.reused for c in self.calls)

    @property
    def flops_fraction(self) -> float | None:
        """Executed / full denoiser FLOPs over the run (None if any call's FLOPs were not measured)."""
        if not self.calls or any(c.flops_full is None for c in self.calls):
            return None
        return sum(c.flops_run for c in self.calls) / sum(c.flops_full for c in self.calls)

    def relative_to(self, full_steps: int) -> float | None:
        """Executed denoiser FLOPs relative to a full run of `full_steps` steps with nothing skipped.

        Compares runs with different step counts directly (e.g. 25 steps with caching against 50 plain steps);
        steps replaced by an analytic jump cost nothing. None where FLOPs were not measured.
        """
        if not isinstance(full_steps, int) or full_steps < 1:
            raise ValueError(f"full_steps={full_steps!r} is invalid; allowed: an int >= 1 (the reference run's steps).")
        if self.flops_fraction is None:
            return None
        per_step = sum(c.flops_full for c in self.calls) / self.steps
        return sum(c.flops_run for c in self.calls) / (per_step * full_steps)

    def per_branch(self) -> dict[int, dict[str, int]]:
        """Computed / reused skippable unit evaluations per guidance branch."""
        out: dict[int, dict[str, int]] = {}
        for c in self.calls:
            d = out.setdefault(c.branch, {"computed": 0, "reused": 0})
            d["computed"] += c.computed
            d["reused"] += c.reused
        return out

    def per_row(self, branch: int = 0) -> list[int]:
        """Skippable unit evaluations that ran per batch row of a guidance branch, summed over the run."""
        out: list[int] = []
        for c in self.calls:
            if c.branch == branch and c.rows_computed is not None:
                out = [a + b for a, b in zip(out, c.rows_computed)] if out else list(c.rows_computed)
        return out

    def to_dict(self) -> dict:
        """Return a JSON-ready summary with per-call records."""
        return {"steps": self.steps, "units": self.num_units, "skippable_units": self.skippable,
                "computed": self.computed, "reused": self.reused, "flops_fraction": self.flops_fraction,
                "per_branch": self.per_branch(), "skipped_steps": self.skipped_steps,
                "cache_bytes": self.cache_bytes, "calls": [asdict(c) for c in self.calls]}

    def __str__(self) -> str:
        f = self.flops_fraction
        frac = "n/a" if f is None else f"{f:.3f}"
        skip = f"skipped_steps={self.skipped_steps} " if self.skipped_steps else ""
        return (f"{skip}steps={self.steps} calls={len(self.calls)} computed={self.computed} reused={self.reused} "
                f"(skippable units {self.skippable} of {self.num_units}) denoiser_flops_fraction={frac} "
                f"cache_mb={self.cache_bytes / 2**20:.1f}")
