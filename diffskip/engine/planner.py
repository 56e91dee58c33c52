"""The planner: which skippable units compute at one step, decided on the host once per step and guidance branch.

A decision is True (every sample computes), False (every sample reuses) or a tuple of the batch rows that
compute. Input-independent policies (never, interval, uniform, mask) decide from the step alone, with no
device-to-host sync; drift-gated ones read the per-sample drift of the probe unit once per step. The planner's
per-branch state (this step's plan, reuse streaks, the drift probe) lives in `PlanState`.

Under context parallelism each rank's probe is a shard of the tokens. Given the ranks' process group, the
planner sums each observation's per-sample |change| and |previous| (and token counts) over the group with one
all-reduce per step before dividing, so every rank reads the drift of the full tensor and decides alike.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import torch

from ..errors import PolicyError, SessionError
from ..policies import Policy, StepInfo

__all__ = ["Decision", "Planner", "PlanState", "resolve_group", "thin"]

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


class PlanState:
    """One guidance branch's planner state: the current plan, per-sample reuse streaks and the drift probe."""

    def __init__(self) -> None:
        self.plan: list[Decision] | None = None
        self.plan_step: tuple[int, int] = (-1, -1)  # (run, step) the plan is for
        self.streak: list[int] = []  # per sample: consecutive steps that reused every skippable unit
        self.probe: torch.Tensor | None = None
        self.drift: torch.Tensor | None = None  # (B,) accumulated relative change of the probe, on the device
        self.rate_sum: torch.Tensor | None = None  # (B,) summed per-step relative change (for its running mean)
        self.rate_count = 0
        self.parts: list[torch.Tensor] = []  # (3, B) per observation not yet folded: mean |change|, |prev|, count
        self.cfg_count: dict[tuple[int, int], int] = {}  # (unit, uncond row) -> policy computes since a full step

    def observe(self, p: torch.Tensor) -> None:
        """Record the per-sample relative L1 change of the probe (TeaCache / First-Block-Cache), folded per step.

        The probe is kept in the compute dtype (no float32 copy of a half-precision run); the change is
        measured in float32.
        """
        p = p.detach()
        if self.probe is not None and self.probe.shape == p.shape:
            prev = self.probe.flatten(1).float()
            n = torch.full_like(prev[:, 0], prev.shape[1])
            self.parts.append(torch.stack([(p.flatten(1).float() - prev).abs().mean(1), prev.abs().mean(1), n]))
        self.probe = p

    def fold(self, group: Any = None) -> None:
        """Add the recorded changes to the drift; with a group, over the whole tensor (one all-reduce)."""
        if not self.parts:
            return
        parts, self.parts = torch.stack(self.parts), []  # (K, 3, B)
        if group is not None:  # a shard's means are partial: sum count-weighted means, then divide
            parts = torch.cat([parts[:, :2] * parts[:, 2:], parts[:, 2:]], 1)
            torch.distributed.all_reduce(parts, group=group)
            parts = torch.cat([parts[:, :2] / parts[:, 2:], parts[:, 2:]], 1)
        for change, prev, _ in parts.unbind(0):
            rel = change / prev.clamp_min(1e-12)
            self.drift = rel if self.drift is None else self.drift + rel
            self.rate_sum = rel if self.rate_sum is None else self.rate_sum + rel
            self.rate_count += 1

    def reset_drift(self, computed: Decision) -> None:
        """Zero the drift of the samples whose first skippable unit computes at this step."""
        if self.drift is None or computed is False:
            return
        if computed is True:
            self.drift = torch.zeros_like(self.drift)
        else:
            keep = torch.ones_like(self.drift)
            keep[list(computed)] = 0
            self.drift = self.drift * keep

    def nbytes(self) -> int:
        held = (self.probe, self.drift, self.rate_sum, *self.parts)
        return sum(t.numel() * t.element_size() for t in held if t is not None)


class Planner:
    """Ask a policy for one step's plan over the skippable units, once per (run, step) and branch."""

    def __init__(self, policy: Policy, num_units: int, group: Any = None):
        self.policy = policy
        self.num_units = num_units
        self.group = group  # the process group whose ranks hold shards of one sample's tokens (or None)

    def for_step(self, st: PlanState, run: int, step: int, num_steps: int | None, batch: int,
                 uncond: tuple[int, ...] = ()) -> list[Decision]:
        """Return this step's decisions for a branch, deciding them on its first unit call of the step.

        `uncond`: the rows of this call that are classifier-free guidance's unconditional half (see `thin`).
        """
        if st.plan is not None and st.plan_step == (run, step):
            return st.plan
        drift = rate = None
        st.fold(self.group)
        if self.policy.needs_drift and st.drift is not None:  # one host read for both
            drift, rate = torch.stack([st.drift, st.rate_sum / max(st.rate_count, 1)]).tolist()
        st.plan, st.streak = self.plan(step, num_steps, batch, drift, st.streak, rate)
        st.plan_step = (run, step)
        if st.plan:
            st.reset_drift(st.plan[0])  # by the policy's own plan: a thinned row's drift restarts as if computed
        if self.policy.cfg > 1 and uncond:
            full = step == 0 or self.policy.computes_all(step, num_steps)
            st.plan = thin(st.plan, st.cfg_count, uncond, self.policy.cfg, batch, full)
        return st.plan

    def plan(self, step: int, num_steps: int | None, batch: int, drift: Sequence[float] | None,
             streak: list[int], rate: Sequence[float] | None = None) -> tuple[list[Decision], list[int]]:
        """Return the decisions per skippable unit and the updated per-sample streaks."""
        if len(streak) != batch:
            streak = [0] * batch
        if self.policy.computes_all(step, num_steps):
            return [True] * self.num_units, [0] * batch
        info = StepInfo(step, num_steps, self.num_units, None if drift is None else tuple(drift), tuple(streak),
                        None if rate is None else tuple(rate))
        plan = [_normalise(self.policy.decide(info, u), batch, self.policy.name) for u in range(self.num_units)]
        if not self.policy.per_unit and any(d != plan[0] for d in plan):
            raise PolicyError(f"{self.policy.name} declares per_unit=False but decided {plan} at step {step}; "
                              f"allowed: one decision for every unit. Fix: set per_unit = True on the class.")
        computed = [False] * batch
        for d in plan:
            for r in (range(batch) if d is True else () if d is False else d):
                computed[r] = True
        return plan, [0 if c else s + 1 for c, s in zip(computed, streak)]


def thin(plan: list[Decision], count: dict[tuple[int, int], int], uncond: tuple[int, ...], every: int,
         batch: int, full: bool) -> list[Decision]:
    """Drop the unconditional rows from a plan except on one of every `every` of the steps it computes them.

    CFG-aware caching: `count` holds, per (unit, row), the policy's computes since the last full step (step 0,
    the final steps), which compute everything and restart it. Host-only bookkeeping: no device sync.
    """
    if full:
        count.clear()
        return plan
    out = []
    for u, d in enumerate(plan):
        rows = set(range(batch) if d is True else () if d is False else d)
        for r in uncond:
            if r in rows:
                count[u, r] = count.get((u, r), 0) + 1
                if count[u, r] % every:
                    rows.discard(r)
        out.append(True if len(rows) == batch else False if not rows else tuple(sorted(rows)))
    return out


def resolve_group(model: Any, group: Any) -> Any:
    """Return the process group whose ranks shard the model's tokens: `group`, or diffusers' parallel config's."""
    if group is None:
        cfg = getattr(model, "_parallel_config", None)  # set by diffusers' enable_parallelism()
        cp = getattr(cfg, "context_parallel_config", None)
        mesh = getattr(cp, "_flattened_mesh", None)
        return None if mesh is None else mesh.get_group()
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise SessionError(f"group={group!r} was given but torch.distributed is not initialized; allowed: a process "
                           f"group of an initialized job, or None. Fix: call torch.distributed.init_process_group().")
    if not isinstance(group, torch.distributed.ProcessGroup):
        raise SessionError(f"group={group!r} is not a torch.distributed.ProcessGroup; allowed: a ProcessGroup "
                           f"(e.g. torch.distributed.new_group(...)) or None. Fix: pass the ranks' process group.")
    return group
