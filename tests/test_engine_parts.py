"""Each engine part on its own: clock, planner, unit cache and forecasters, residual streams, FLOP meter."""
import inspect

import pytest
import torch

import diffskip
from diffskip.engine.cache import Streams, UnitCache
from diffskip.engine.clock import Clock, read_timestep
from diffskip.engine.flops import FlopMeter
from diffskip.engine.planner import Planner, PlanState
from diffskip.engine.stats import CallRecord
from diffskip.errors import PolicyError


def test_clock_steps_branches_and_runs():
    c = Clock()
    seen = [(c.tick(t), c.run, c.step, c.branch) for t in (900.0, 900.0, 800.0, 800.0, 700.0, 950.0, 500.0)]
    assert seen == [(True, 0, 0, 0), (False, 0, 0, 1), (False, 0, 1, 0), (False, 0, 1, 1), (False, 0, 2, 0),
                    (True, 1, 0, 0), (False, 1, 1, 0)]
    assert read_timestep((None, torch.tensor([7.0, 7.0])), {}, "t", 1) == 7.0
    assert read_timestep((), {"t": 3}, "t", None) == 3.0
    with pytest.raises(TypeError, match="without its 't' argument"):
        read_timestep((), {}, "t", None)


def test_planner_decisions_and_streaks():
    p = Planner(diffskip.Threshold(threshold=0.1, warmup=1), num_units=2)
    plan, streak = p.plan(0, 5, 3, None, [])
    assert plan == [True, True] and streak == [0, 0, 0]
    plan, streak = p.plan(1, 5, 3, [0.5, 0.0, 0.2], streak)
    assert plan == [(0, 2), (0, 2)] and streak == [0, 1, 0]
    plan, streak = p.plan(2, 5, 3, [0.0, 0.0, 0.0], streak)
    assert plan == [False, False] and streak == [1, 2, 1]
    assert Planner(diffskip.Interval(every=2), 3).plan(1, 5, 2, None, [])[0] == [False] * 3


def test_planner_rejects_a_policy_answer_of_the_wrong_length():
    class Bad(diffskip.Interval):
        def decide(self, info, unit):
            return [True]

    with pytest.raises(PolicyError, match=r"allowed: a bool, or 2 bools"):
        Planner(Bad(), 1).plan(0, 4, 2, None, [])


def test_unit_cache_forecast_is_exact_on_linear_change_and_per_row():
    c = UnitCache(forecast=1)
    c.store(0, torch.tensor([[1.0], [10.0]]), step=0)
    assert torch.equal(c.replay(0, 1), torch.tensor([[1.0], [10.0]]))  # one compute: slope 0
    c.store(0, torch.tensor([[3.0], [14.0]]), step=2)  # slopes 1 and 2 per step
    assert torch.allclose(c.replay(0, 5), torch.tensor([[6.0], [20.0]]))
    c.store_rows(0, torch.tensor([[24.0]]), rows=(1,), step=6)  # row 1 computed, row 0 kept
    assert c.forecaster.at[0] == [2, 6] and torch.allclose(c.replay(0, 7), torch.tensor([[8.0], [26.5]]))
    plain = UnitCache(forecast=0)
    plain.store(0, c.values[0], step=6)
    assert torch.equal(plain.replay(0, 7), c.values[0]) and plain.nbytes() == c.values[0].numel() * 4


def test_branch_cache_second_order_forecast_is_exact_on_quadratic_change_with_uneven_gaps():
    def v(t):  # two rows, each quadratic in the step
        return torch.tensor([[1.0 + 2 * t + 0.5 * t * t], [-3.0 * t + 0.25 * t * t]], dtype=torch.float64)

    c, first = UnitCache(forecast=2), UnitCache(forecast=1)
    for t in (0, 1, 4):
        c.store(0, v(t), step=t)
        first.store(0, v(t), step=t)
    assert torch.allclose(c.replay(0, 6), v(6)) and torch.allclose(c.replay(0, 5), v(5))
    assert not torch.allclose(first.replay(0, 6), v(6))  # first order misses the curvature
    c.store(0, v(8), step=8, rows=(1,))  # per-row computes: back to first order for this unit
    first.store(0, v(8), step=8, rows=(1,))
    assert 0 not in c.forecaster.curv and torch.allclose(c.replay(0, 9), first.replay(0, 9))


def test_plan_state_drift_accumulates_and_resets_per_sample():
    c = PlanState()
    c.observe(torch.ones(2, 4))
    c.observe(torch.tensor([[2.0] * 4, [1.0] * 4]))
    c.observe(torch.tensor([[3.0] * 4, [1.0] * 4]))
    assert c.drift is None and len(c.parts) == 2  # recorded on the device; folded once per step by the planner
    c.fold()
    assert torch.allclose(c.drift, torch.tensor([1.0 + 0.5, 0.0])) and c.rate_count == 2 and not c.parts
    c.reset_drift((0,))
    assert torch.equal(c.drift, torch.zeros(2))


def test_streams_take_residuals_on_a_cloned_input_and_replay_them():
    def block(hidden_states):
        hidden_states += 1.0  # in place, as some blocks do
        return hidden_states

    sig = inspect.signature(block)
    s = Streams("hidden_states")
    x = torch.zeros(2, 3)
    out, res = s.compute(lambda b: block(*b.args, **b.kwargs), sig.bind(x))
    assert torch.equal(res[0], torch.ones(2, 3))  # not zero although the input changed in place
    assert torch.equal(s.replay(sig.bind(torch.full((2, 3), 5.0)), res), torch.full((2, 3), 6.0))


def test_flop_meter_counts_rows_and_scales_unit_flops():
    class U:
        index = 1

        def inner(self, x):
            return x @ x

        eager = inner

    table = {}
    m = FlopMeter(table)
    x = torch.ones(4, 8, 8)
    nxt = lambda a, k: U().inner(*a, **k)  # noqa: E731
    m.call(lambda: m.run(U(), nxt, (x,), {}, 4), (x,), {}, may_measure=True)
    total, per_unit = table[m.key]
    assert total == per_unit[1] == 2 * 4 * 8 * 8 * 8
    m.call(lambda: m.run(U(), nxt, (x[:1],), {}, 1), (x,), {}, may_measure=True)  # a known key: no measuring
    rec = CallRecord(0, 0, 1.0)
    m.account(rec, 4, range(0, 2))
    assert (rec.computed, rec.reused, rec.flops_run, rec.flops_full) == (1, 7, total / 4, total)


def test_stats_relative_to_a_reference_step_count():
    from diffskip.engine.stats import Stats

    st = Stats(num_units=4, skippable=3)
    for step in range(5):  # 5 steps, two guidance passes each, the odd steps at 40% of a full call
        for branch in range(2):
            st.add(CallRecord(step, branch, 900.0 - step, flops_run=40.0 if step % 2 else 100.0, flops_full=100.0))
    assert st.flops_fraction == pytest.approx((3 * 200 + 2 * 80) / 1000)
    assert st.relative_to(5) == pytest.approx(st.flops_fraction)
    assert st.relative_to(10) == pytest.approx(760 / 2000)  # against twice the steps, uncached
    with pytest.raises(ValueError, match="full_steps=0 is invalid"):
        st.relative_to(0)
