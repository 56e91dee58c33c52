"""Session behaviour: per-sample Threshold, guidance branches, Uniform budget and batch independence, FLOPs."""
import dataclasses

import pytest
import torch

import diffskip
from models import build, denoise, inputs, stacked_inputs
from diffskip.adapters import Adapter
from test_adapters import TOY, ToyNet


def _toy(depth=5):
    torch.manual_seed(0)
    return diffskip.attach(ToyNet(depth=depth), TOY)


def test_threshold_recomputes_only_the_fast_changing_sample():
    net = _toy()
    seen = []
    net.blocks[2].lin.register_forward_pre_hook(lambda m, a: seen.append(a[0].shape[0]))
    g = torch.Generator().manual_seed(1)
    slow = torch.randn(1, 3, 8, generator=g)
    pol = diffskip.Threshold(threshold=0.05, warmup=1, final=0)
    with torch.no_grad(), diffskip.session(net, pol) as s:
        outs = []
        for k, t in enumerate((900.0, 899.0, 898.0, 897.0, 896.0)):  # the slow row barely moves
            fast = torch.randn(1, 3, 8, generator=g)  # a new sample every step: large drift
            x = torch.cat([fast, slow * (1 + 1e-4 * k)])
            outs.append((x, net(x, t)))
    # step 0: both rows computed; later steps: only the fast row runs the skippable blocks
    assert seen == [2, 1, 1, 1, 1]
    assert [c.computed for c in s.stats.calls] == [2 * 4] + [1 * 4] * 4
    assert [c.reused for c in s.stats.calls] == [0] + [1 * 4] * 4
    x, out = outs[-1]
    diffskip.detach(net)
    ref = net(x, 896.0)
    assert torch.allclose(out[0], ref[0], atol=1e-6)  # the recomputed sample is exact
    assert not torch.equal(out[1], ref[1]) and torch.allclose(out[1], ref[1], atol=1e-2)  # reused: close


def test_separate_guidance_passes_keep_separate_caches():
    model = diffskip.attach(build("pixart"))
    x, kw = inputs("pixart", 1)
    uncond = dict(kw, encoder_hidden_states=torch.zeros_like(kw["encoder_hidden_states"]))
    with torch.no_grad(), diffskip.session(model, "interval:every=2,final=0") as s:
        for t in (900.0, 700.0, 500.0):
            ts = torch.tensor([t])
            model(x, timestep=ts, return_dict=False, **kw)  # cond pass
            model(x, timestep=ts, return_dict=False, **uncond)  # uncond pass, same timestep
        assert sorted(s.branches) == [0, 1] and s.step == 2
        c0, c1 = s.branches[0].cache.values, s.branches[1].cache.values
    assert c0.keys() == c1.keys() == {("span", 1)}  # interval: one summed residual for blocks 1-3, per pass
    assert all(not torch.allclose(c0[i][0], c1[i][0]) for i in c0)
    assert s.stats.per_branch() == {0: {"computed": 6, "reused": 3}, 1: {"computed": 6, "reused": 3}}


def test_batched_cfg_2b_decides_rows_independently():
    net = _toy()
    x = torch.randn(4, 3, 8)  # a CFG batch 2B: rows 0-1 uncond, 2-3 cond
    with torch.no_grad(), diffskip.session(net, "threshold:threshold=0.5,final=0") as s:
        for t in (900.0, 800.0):
            net(x, t)
        assert s.branches[0].plan.drift.shape == (4,)
    assert s.stats.calls[1].reused == 4 * 4


def test_uniform_half_compute_spread_and_batch_independent():
    model = diffskip.attach(build("pixart"))
    steps = 10
    with diffskip.session(model, diffskip.Uniform(speedup=2), num_steps=steps) as s1:
        one = denoise(model, "pixart", b=1, steps=steps)
    with diffskip.session(model, diffskip.Uniform(speedup=2), num_steps=steps) as s4:
        four = denoise(model, "pixart", steps=steps, xkw=stacked_inputs("pixart", [0, 1, 2, 3]))
    skippable = steps * s1.num_units
    assert abs(s1.stats.computed - skippable / 2) <= 1
    assert sum(c.computed > 0 for c in s1.stats.calls) >= steps / 2  # spread over the steps
    assert [c.computed * 4 for c in s1.stats.calls] == [c.computed for c in s4.stats.calls]
    assert torch.allclose(one[0], four[0], atol=1e-5)  # sample 0 is the same input in both batches


def test_flops_fraction_counts_executed_units():
    model = diffskip.attach(build("pixart"))
    with diffskip.session(model, "interval:every=3,final=0") as s:
        denoise(model, "pixart", b=2, steps=6)
    full = s.stats.calls[0].flops_full
    run = [c.flops_run for c in s.stats.calls]
    assert run[0] == full and run[3] == full  # computed steps
    assert run[1] == run[2] < full  # head block + embeddings + output layers only
    per_block = (full - run[1]) / 3
    assert per_block > 0 and s.stats.flops_fraction == pytest.approx((2 * full + 4 * run[1]) / (6 * full))


def test_new_run_is_detected_from_a_larger_timestep():
    net = _toy()
    with diffskip.session(net, "interval:every=2,final=0") as s:
        for t in (900.0, 500.0, 100.0, 900.0, 500.0):
            net(torch.randn(1, 3, 8), t)
    assert len(s.history) == 1 and s.history[0].steps == 3 and s.stats.steps == 2


def test_sessions_do_not_nest_and_need_attach():
    net = _toy()
    with diffskip.session(net, "never"):
        with pytest.raises(RuntimeError, match="already running a diffskip session"):
            with diffskip.session(net, "never"):
                pass
    with pytest.raises(RuntimeError, match="not attached"):
        with diffskip.session(ToyNet(), "never"):
            pass


def test_head_plus_tail_larger_than_units_raises():
    net = _toy(depth=3)
    with pytest.raises(ValueError, match=r"head=2 \+ tail=2 exceeds the 3 units"):
        with diffskip.session(net, "interval:head=2,tail=2,final=0"):
            pass


@pytest.mark.parametrize("kind", ["unet-sd", "unet-sdxl", "flux", "sd3", "sana"])
def test_threshold_sub_batch_on_real_adapters(kind):
    """Mixed rows run as a sub-batch (tuple outputs, unbatched rotary embeddings) and stay exact for them."""
    model = diffskip.attach(build(kind))
    x, kw = stacked_inputs(kind, [0, 1])
    name = "sample" if kind.startswith("unet") else "hidden_states"
    g = torch.Generator().manual_seed(5)
    with torch.no_grad(), diffskip.session(model, "threshold:threshold=0.02,final=0") as s:
        for t in (900.0, 899.99, 899.98):
            x = torch.cat([torch.randn(x[:1].shape, generator=g), x[1:]])  # row 0 changes, row 1 does not
            tt = torch.tensor([t / 1000 if kind == "flux" else t] * 2)
            out = model(**{name: x}, timestep=tt, return_dict=False, **kw)[0]
    u = s.num_units
    assert [(c.computed, c.reused) for c in s.stats.calls] == [(2 * u, 0), (u, u), (u, u)]
    diffskip.detach(model)
    with torch.no_grad():
        ref = model(**{name: x}, timestep=tt, return_dict=False, **kw)[0]
    assert torch.allclose(out[0], ref[0], atol=1e-4)


class DriftBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 8)

    def forward(self, x, tt):
        return x + self.lin(tt)  # (B, 8): the residual is linear in the timestep


class DriftNet(torch.nn.Module):
    """Blocks whose residual is exactly linear in the timestep: a first-order forecast is exact."""

    def __init__(self, depth=4):
        super().__init__()
        self.blocks = torch.nn.ModuleList(DriftBlock() for _ in range(depth))

    def forward(self, x, t):
        tt = torch.full((x.shape[0], 1), float(t) / 1000)
        for blk in self.blocks:
            x = blk(x, tt)
        return x


@pytest.mark.parametrize("mode", ["interval:every=3", "threshold:threshold=0.3,max_streak=2"])
def test_forecast_extrapolates_exactly_where_the_cached_value_is_linear_in_the_step(mode):
    torch.manual_seed(0)
    net = diffskip.attach(DriftNet(), Adapter(units=("blocks",), reuse="residual", streams="x", timestep="t"))
    x, ts = torch.randn(2, 8), [900.0 - 100 * k for k in range(8)]
    with torch.no_grad():
        with diffskip.session(net, mode + ",forecast=0,final=0") as plain:
            reuse = [net(x, t) for t in ts]
        with diffskip.session(net, mode + ",forecast=1,final=0") as fc:
            forecast = [net(x, t) for t in ts]
        with diffskip.session(net, mode + ",forecast=2,final=0"):
            second = [net(x, t) for t in ts]  # zero curvature: the same as first order
        diffskip.detach(net)
        exact = [net(x, t) for t in ts]
    assert plain.stats.reused == fc.stats.reused > 0  # same plan, different replay
    last_two = [c.step for c in fc.stats.calls if c.computed][:2]
    after = [k for k in range(len(ts)) if k > last_two[1]]
    assert all(torch.allclose(forecast[k], exact[k], atol=1e-5) for k in after)
    assert all(torch.allclose(second[k], exact[k], atol=1e-5) for k in after)
    assert any(not torch.allclose(reuse[k], exact[k], atol=1e-3) for k in after)
    assert str(diffskip.parse(mode + ",forecast=0")).endswith("forecast=0")  # 1 is the default
    with pytest.raises(ValueError, match=r"forecast=3 is invalid; allowed: 0 \(reuse as is\), 1 .* or 2"):
        diffskip.parse("interval:every=2,forecast=3")


@dataclasses.dataclass(frozen=True)
class _RowPlan(diffskip.Policy):
    """Per-sample plan for the test: row r computes at the steps in `plans[r]`."""

    plans: tuple = ((0, 1, 2, 5), (0, 3, 4, 7))

    def decide(self, info, unit):
        return torch.tensor([info.step in p for p in self.plans])


@pytest.mark.parametrize("reuse", ["output", "residual"])
def test_forecast_with_per_sample_plans_extrapolates_from_computed_values_only(reuse):
    # regression: in output mode the replayed rows' forecast was stored as their cache, so the next step
    # extrapolated the forecast again and the error compounded (threshold+forecast at 50 steps: 14 dB)
    torch.manual_seed(0)
    net = diffskip.attach(DriftNet(), Adapter(units=("blocks",), reuse=reuse, streams="x", timestep="t"))
    x, ts = torch.randn(2, 8), [900.0 - 100 * k for k in range(9)]
    with torch.no_grad():
        with diffskip.session(net, _RowPlan(head=0, tail=0, forecast=1, final=0)) as s:
            forecast = [net(x, t) for t in ts]
        diffskip.detach(net)
        exact = [net(x, t) for t in ts]
    assert [c.computed for c in s.stats.calls] == [8, 4, 4, 4, 4, 4, 0, 4, 0]
    # row 0 has two computes from step 1 on, row 1 from step 3 on: from there the linear forecast is exact
    assert all(torch.allclose(forecast[k][0], exact[k][0], atol=1e-5) for k in range(2, 9))
    assert all(torch.allclose(forecast[k][1], exact[k][1], atol=1e-5) for k in range(4, 9))
    assert not torch.allclose(forecast[2][1], exact[2][1], atol=1e-3)  # one compute only: replayed as is
