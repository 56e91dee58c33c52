"""Issue #12: final steps computed, a threshold that transfers, the relevance profile policy."""
from __future__ import annotations

import pytest
import torch

import diffskip
from diffskip.engine.plan import Planner
from diffskip.errors import PolicyError
from diffskip.policies import StepInfo
from test_adapters import ToyNet


def _attach(depth: int):
    diffskip.register(ToyNet, units=["blocks"], reuse="residual", timestep="t")
    torch.manual_seed(0)
    return diffskip.attach(ToyNet(depth=depth))


def _steps_computed(spec: str, n: int, units: int = 4) -> list[bool]:
    planner = Planner(diffskip.parse(spec), units)
    return [planner.plan(s, n, 1, None, [0])[0][0] is True for s in range(n)]


@pytest.mark.parametrize("spec", ["interval:every=3", "interval:every=4,start=2,end=7", "uniform:speedup=4",
                                  "profile:keep=0", "mask:steps=1000000000"])
def test_every_policy_computes_the_final_steps_by_default(spec):
    assert _steps_computed(spec, 10)[-1] is True
    assert _steps_computed(spec + ",final=3", 10)[-3:] == [True] * 3
    assert diffskip.parse(spec).final == 1


def test_final_zero_keeps_the_old_plan_and_final_needs_the_step_count():
    assert _steps_computed("interval:every=3,final=0", 8) == [True, False, False, True, False, False, True, False]
    net = _attach(3)
    with pytest.raises(PolicyError, match=r"final=1 .* pass num_steps=N to diffskip.session\(\), or set final=0"):
        with diffskip.session(net, "interval:every=3"):
            pass
    with diffskip.session(net, "never"):  # nothing reused: no step count needed
        pass
    diffskip.detach(net)


def test_final_threshold_drift_run_recomputes_the_last_step():
    net = _attach(4)
    x = torch.randn(1, 3, 8)
    with torch.no_grad(), diffskip.session(net, "threshold:threshold=10.0", num_steps=5) as s:
        for t in (900.0, 800.0, 700.0, 600.0, 500.0):
            net(x, t)
    assert [c.computed for c in s.stats.calls] == [s.num_units, 0, 0, 0, s.num_units]
    diffskip.detach(net)


def test_threshold_target_normalises_the_drift_so_the_fraction_does_not_depend_on_its_scale():
    p = diffskip.Threshold(target=0.25, final=0)
    for scale in (1e-4, 1.0, 1e3):  # the same relative pattern at any drift scale: compute every 4th step
        acc, out = 0.0, []
        for s in range(1, 13):
            acc += scale
            c = p.decide(StepInfo(s, 13, 1, (acc,), (0,), (scale,)), 0)[0]
            out.append(c)
            acc = 0.0 if c else acc
        assert out == [False, False, False, True] * 3
    assert str(p) == "threshold:target=0.25,final=0" and str(diffskip.parse("threshold:threshold=0.1")) == \
        "threshold:threshold=0.1"
    with pytest.raises(PolicyError, match="exactly one of target="):
        diffskip.parse("threshold:target=0.3,threshold=0.1")


def test_threshold_target_runs_about_that_fraction_of_steps_on_a_model():
    net = _attach(4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 8, generator=g)
    fractions = []
    for target in (0.25, 0.5):
        with torch.no_grad(), diffskip.session(net, f"threshold:target={target},final=0", num_steps=40) as s:
            for k in range(40):
                x = x + 0.1 * torch.randn(1, 3, 8, generator=g)  # steady change
                net(x, 1000.0 - k)
        fractions.append(sum(c.computed > 0 for c in s.stats.calls[1:]) / 39)
    assert abs(fractions[0] - 0.25) < 0.1 and abs(fractions[1] - 0.5) < 0.1
    diffskip.detach(net)


def test_profile_keeps_the_most_relevant_units_and_checks_its_rank_against_the_model():
    p = diffskip.parse("profile:rank=2.0.1,keep=1,every=3,final=0")
    rows = [[p.decide(StepInfo(s, 6, 3, None, (0,)), u) for u in range(3)] for s in range(6)]
    assert rows == [[True] * 3, [False, False, True], [False, False, True], [True] * 3, [False, False, True],
                    [False, False, True]]
    net = _attach(4)  # 3 skippable units behind the live first block
    with pytest.raises(PolicyError, match=r"rank='2.0' is invalid; allowed: empty or each of this model's 3"):
        with diffskip.session(net, "profile:rank=2.0", num_steps=4):
            pass
    diffskip.detach(net)
    for bad in ("profile:rank=1.1", "profile:rank=a.b", "profile:keep=-1"):
        with pytest.raises(PolicyError):
            diffskip.parse(bad)
