"""Policy dataclasses: decision tables, spec-string round trips and errors that name the bad value."""
import pytest

import diffskip
from diffskip.policies import POLICIES, PolicyError, StepInfo


def info(step, n=10, units=4, drift=None, streak=None):
    return StepInfo(step, n, units, drift, (0, 0) if streak is None else streak)


@pytest.mark.parametrize("spec", ["never", "interval:every=3", "interval:every=2,start=1,end=8",
                                  "uniform:speedup=2.5", "uniform:speedup=2.0",
                                  "threshold:threshold=0.05,warmup=2,max_streak=3",
                                  "mask:steps=1101", "interval:every=4,head=2,tail=1", "threshold:threshold=0.1"])
def test_spec_round_trip(spec):
    p = diffskip.parse(spec)
    assert str(p) == spec and diffskip.parse(str(p)) == p and hash(p) == hash(diffskip.parse(spec))


def test_interval_table():
    p = diffskip.Interval(every=3, start=2, end=8)
    assert [p.decide(info(s), 0) for s in range(10)] == [1, 1, 1, 0, 0, 1, 0, 0, 1, 1]


@pytest.mark.parametrize("final", [0, 1, 2])
def test_uniform_budget_is_exact_and_step_synchronous(final):
    p = diffskip.Uniform(speedup=2, final=final)
    for n, u in [(10, 4), (7, 3), (25, 5), (4, 1), (9, 2)]:
        table = [[p.decide(info(s, n, u), k) for k in range(u)] for s in range(n)]
        fixed = (1 + min(final, n - 1)) * u
        assert sum(map(sum, table)) == p.budget(n, u) == max(fixed, round(n * u / 2))
        assert all(all(row) for row in table[n - final:])  # the final steps compute every unit
        partial = [row for row in table if 0 < sum(row) < u]
        assert len(partial) <= 1 and all(row == sorted(row, reverse=True) for row in partial)
        assert sum(any(row) for row in table) >= n / 2  # refreshes spread over at least half of the steps
        refresh = [s for s, row in enumerate(table[:n - final]) if any(row)]
        gaps = [b - a for a, b in zip(refresh, refresh[1:])]
        assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spaced before the final steps


def test_threshold_per_sample_and_max_streak():
    p = diffskip.Threshold(threshold=0.1, warmup=2, max_streak=3)
    assert p.decide(info(1, drift=(0.0, 0.0)), 0) is True
    assert p.decide(info(4, drift=(0.2, 0.05), streak=(0, 3)), 0) == [True, True]
    assert p.decide(info(4, drift=(0.2, 0.05), streak=(0, 1)), 0) == [True, False]


@pytest.mark.parametrize("spec,match", [
    ("interval:every=0", r"every=0 is invalid; allowed: an int >= 1"),
    ("interval:every=x", r"every='x' is not a valid int"),
    ("interval:evry=2",
     r"bad option 'evry=2'; allowed keys: \['cfg', 'end', 'every', 'final', 'forecast', 'head', 'start', 'tail', "
     r"'tokens'\]"),
    ("fastest",
     r"unknown policy 'fastest'; allowed: \['interval', 'mask', 'never', 'profile', 'threshold', 'uniform'\]"),
    ("uniform:speedup=0.5", r"speedup=0.5 is invalid; allowed: a number >= 1.0"),
    ("threshold:threshold=-1", r"threshold=-1.0 is invalid"),
    ("threshold:head=0", r"head=0 is invalid"),
    ("mask:steps=10x", r"steps='10x' is invalid"),
    ("interval:every=3,start=5,end=2", r"end=2 is invalid; allowed: None or an int > start \(5\)"),
    ("", r"not a non-empty string"),
])
def test_bad_specs_raise_with_value_and_allowed(spec, match):
    with pytest.raises(PolicyError, match=match):
        diffskip.parse(spec)


def test_mask_past_its_end_raises_and_uniform_needs_steps():
    with pytest.raises(PolicyError, match="has 2 characters but the run has 10 steps"):
        diffskip.Mask(steps="10").decide(info(0), 0)  # a known step count: refused at step 0
    with pytest.raises(PolicyError, match="covers 2 steps but the run reached step 2"):
        diffskip.Mask(steps="10").decide(info(2, n=None), 0)
    with pytest.raises(PolicyError, match="needs the number of steps"):
        diffskip.Uniform().decide(info(3, n=None), 0)


def test_registry_lists_all_policies():
    assert sorted(POLICIES) == ["interval", "mask", "never", "profile", "threshold", "uniform"]
