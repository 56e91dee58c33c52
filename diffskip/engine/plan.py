"""Plans: which skippable units compute at one step, decided on the host once per step and guidance branch.

A decision is True (every sample computes), False (every sample reuses) or a tuple of the batch rows that
compute. Input-independent policies (never, interval, uniform, mask) decide from the step alone, with no
device-to-host sync; drift-gated ones read the per-sample drift once per step (`drift` arrives as floats).
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from ..errors import PolicyError
from ..policies import Policy, StepInfo

__all__ = ["Decision", "Planner"]

Decision = Union[bool, tuple]  # True / False / the computing rows


def _normalise(d: Any, batch: int, policy: str) -> Decision:
    """Turn a policy's answer (bool, or one bool per sample) into a Decision."""
    if isinstance(d, torch.Tensor):
        d = d.tolist() if d.dim() else bool(d)  # a user policy deciding on the device pays this sync
    if isinstance(d, bool):
        return d
    if not isinstance(d, Sequence) or len(d) != batch:
        raise PolicyError(f"{policy}.decide returned {d!r}; allowed: a bool, or {batch} bools (one per sample).")
    rows = tuple(r for r, c in enumerate(d) if c)
    return True if len(rows) == batch else False if not rows else rows


class Planner:
    """Ask a policy for one step's plan over the skippable units and keep the per-sample reuse streaks."""

    def __init__(self, policy: Policy, num_units: int):
        self.policy = policy
        self.num_units = num_units

    def plan(self, step: int, num_steps: int | None, batch: int, drift: Sequence[float] | None,
             streak: list[int], rate: Sequence[float] | None = None) -> tuple[list[Decision], list[int]]:
        """Return the decisions per skippable unit and the updated per-sample streaks.

        The policy's `final` last steps compute every unit whatever it decides.
        """
        if len(streak) != batch:
            streak = [0] * batch
        if self.policy.final and self.policy.reuses and num_steps is None:
            raise PolicyError(f"{self.policy}: final={self.policy.final} needs the run's number of steps, which "
                              f"is unknown here; pass num_steps= to diffskip.session(), or set final=0.")
        if self.policy.final and step >= num_steps - self.policy.final:
            return [True] * self.num_units, [0] * batch
        info = StepInfo(step, num_steps, self.num_units, None if drift is None else tuple(drift), tuple(streak),
                        None if rate is None else tuple(rate))
        plan = [_normalise(self.policy.decide(info, u), batch, self.policy.name) for u in range(self.num_units)]
        computed = [False] * batch
        for d in plan:
            for r in (range(batch) if d is True else () if d is False else d):
                computed[r] = True
        return plan, [0 if c else s + 1 for c, s in zip(computed, streak)]
