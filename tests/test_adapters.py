"""Every built-in adapter: three-run pattern (baseline, accelerated, detached) and exact call counts."""
import math

import pytest
import torch
from torch import nn

import diffskip
from diffskip.adapters import Adapter, registered
from diffskip.errors import UnsupportedModelError
from diffskip.engine.hooks import hooked
from models import KINDS, build, denoise


@pytest.mark.parametrize("kind", KINDS)
def test_never_and_detached_are_bitwise_equal_and_interval_reuses(kind):
    model = build(kind)
    base = denoise(model, kind)
    diffskip.attach(model)
    plain_attached = denoise(model, kind)  # attached, no session: inert
    with diffskip.session(model, diffskip.Never()) as s:
        never = denoise(model, kind)
    with diffskip.session(model, "interval:every=3,final=0") as s3:
        fast = denoise(model, kind)
    diffskip.detach(model)
    detached = denoise(model, kind)
    assert torch.equal(base, plain_attached) and torch.equal(base, never) and torch.equal(base, detached)
    assert s.stats.reused == 0 and s.stats.flops_fraction == pytest.approx(1.0)
    assert s3.stats.reused > 0 and s3.stats.computed > 0
    assert 0.0 < s3.stats.flops_fraction < 1.0
    assert not torch.equal(base, fast) and torch.isfinite(fast).all()
    assert "forward" not in model.__dict__ and all("forward" not in u.__dict__ for u in model.modules())
    print(kind, "units", s3.stats.num_units, "computed", s3.stats.computed, "reused", s3.stats.reused,
          "flops", round(s3.stats.flops_fraction, 3))


def _count_runs(units):
    """Count real executions of each unit through a hook on its first child (fires only when it computes)."""
    counts = [0] * len(units)
    for i, u in enumerate(units):
        child = next(m for m in list(u.modules())[1:] if not isinstance(m, (nn.ModuleList, nn.ModuleDict)))
        child.register_forward_pre_hook(lambda m, a, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("kind,steps", [("pixart", 7), ("unet-sd", 8), ("flux", 6), ("sd3", 9)])
def test_interval_computes_middle_span_ceil_n_over_3_times(kind, steps):
    model = diffskip.attach(build(kind))
    h = hooked(model)
    counts = _count_runs([u.module for u in h.units])
    with diffskip.session(model, diffskip.Interval(every=3, final=0)) as s:
        denoise(model, kind, steps=steps)
    head, tail = s.head, s.tail
    n = len(counts)
    assert counts[:head] == [steps] * head and counts[n - tail:] == [steps] * tail
    assert counts[head:n - tail] == [math.ceil(steps / 3)] * (n - head - tail)


class Block(nn.Module):
    def __init__(self, dim, inplace=False):
        super().__init__()
        self.lin, self.inplace, self.calls = nn.Linear(dim, dim), inplace, 0

    def forward(self, hidden_states, temb=None):
        self.calls += 1
        upd = torch.tanh(self.lin(hidden_states)) * 0.5
        if self.inplace:  # ComfyUI-Flux style: update the input in place and return it
            hidden_states.add_(upd)
            return hidden_states
        return hidden_states + upd


class ToyNet(nn.Module):
    def __init__(self, dim=8, depth=5, inplace=False):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, inplace) for _ in range(depth))

    def forward(self, x, t):
        h = x * (1 + t / 1000)
        for blk in self.blocks:
            h = blk(h)
        return h


TOY = Adapter(units=("blocks",), reuse="residual", timestep="t")  # ToyNet's adapter (attach(net, TOY))


def test_register_custom_model_in_a_few_lines():
    with registered(ToyNet, units=["blocks"], reuse="residual", timestep="t"):
        net = diffskip.attach(ToyNet())
    x = torch.randn(2, 3, 8)
    with diffskip.session(net, "interval:every=2,final=0") as s:
        for t in (900.0, 600.0, 300.0, 100.0):
            net(x, t)
    assert [b.calls for b in net.blocks] == [4, 2, 2, 2, 2]
    assert s.stats.computed == 2 * 4 * 2 and s.stats.reused == 2 * 4 * 2


@pytest.mark.parametrize("inplace", [False, True])
def test_inplace_block_residual_is_right_and_reuse_fires(inplace):
    torch.manual_seed(0)
    net = diffskip.attach(ToyNet(inplace=inplace), TOY)
    x = torch.randn(2, 3, 8)
    with torch.no_grad(), diffskip.session(net, diffskip.Interval(every=2, head=1, final=0)) as s:
        full0 = net(x.clone(), 900.0)
        skip1 = net(x.clone(), 800.0)  # blocks 1.. replay residuals cached at t=900
        res = s.branches[0].cache.values[("span", 1)][0]  # blocks 1-4 replay one summed residual
    assert not s.branches  # caches are freed when the session ends
    assert torch.count_nonzero(res) == res.numel()  # the residual is not zero
    h = x * 1.8  # head block recomputed at t=800, then the cached residual added
    h = net.blocks[0].lin(h).tanh() * 0.5 + h if not inplace else h + net.blocks[0].lin(h).tanh() * 0.5
    expect = h + res
    assert torch.allclose(skip1, expect, atol=1e-6)
    assert s.stats.reused == 2 * 4 and not torch.allclose(skip1, full0)


def test_unknown_model_error_names_modulelists_and_how_to_register():
    class Mystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList([nn.Linear(2, 2)])

    # attach() tries detection first: the one line says why it cannot, and the register() call to write
    with pytest.raises(UnsupportedModelError, match=r"Mystery: its forward has no timestep argument .*"
                                                    r"diffskip.register\(Mystery, units="):
        diffskip.attach(Mystery())


def test_adapter_units_must_exist():
    class Odd(nn.Module):
        pass

    Odd.__module__ = "tests.x"
    with registered("tests:Odd", units=("nope",), reuse="output"), \
            pytest.raises(UnsupportedModelError, match="no attribute 'nope'"):
        diffskip.attach(Odd())
