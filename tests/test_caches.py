"""Lean caches: what a session keeps between steps (one summed residual per span, only outputs live code reads)."""
import dataclasses
from typing import ClassVar

import pytest
import torch

import diffskip
from diffskip.engine import hooked
from diffskip.errors import SessionError
from models import build, denoise, inputs


@dataclasses.dataclass(frozen=True)
class PerUnitInterval(diffskip.Interval):
    """Interval with the per-unit cache (every unit keeps its own value): the reference the lean caches match."""

    per_unit: ClassVar[bool] = True


def _run(kind, policy):
    torch.manual_seed(0)
    model = diffskip.attach(build(kind))
    with diffskip.session(model, policy, num_steps=6) as s:
        out = denoise(model, kind, b=2, steps=6)
        kept = {k: len(b.cache.values) for k, b in s.branches.items()}
    return out, s.stats, kept


@pytest.mark.parametrize("kind", ["pixart", "flux", "sd3", "unet-sd", "unet-sdxl"])
def test_lean_cache_gives_the_per_unit_result_from_a_fraction_of_the_memory(kind):
    lean, st, kept = _run(kind, diffskip.Interval(every=3))
    ref, st_ref, kept_ref = _run(kind, PerUnitInterval(every=3))
    assert (st.computed, st.reused) == (st_ref.computed, st_ref.reused) and st.reused > 0
    if kind.startswith("unet"):  # the same values reach live code; the others were never read
        assert torch.equal(lean, ref)
    else:  # one summed residual instead of one per block: equal up to the order of the additions
        assert torch.allclose(lean, ref, rtol=1e-4, atol=1e-5)
    assert kept[0] < kept_ref[0] / 2 and st.cache_bytes < st_ref.cache_bytes / 2


def test_unet_keeps_only_the_outputs_its_live_layers_read():
    torch.manual_seed(0)
    model = diffskip.attach(build("unet-sd"))
    with diffskip.session(model, "interval:every=3,forecast=0", num_steps=6) as s:
        denoise(model, "unet-sd", b=1, steps=2)
        units = len(hooked(model).units)
        assert s.reads is not None and 1 <= len(s.reads) <= 2  # the live last up layers read one or two
        assert set(s.branches[0].cache.values) == set(s.reads)
        assert len(s.branches[0].skeletons) == units - 2 - len(s.reads)  # tail=2 live; the rest keep a shape


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "4"])
def test_session_num_steps_must_be_a_positive_int(bad):
    model = diffskip.attach(build("pixart"))
    with pytest.raises(SessionError, match=f"num_steps={bad!r} is invalid; allowed"):
        with diffskip.session(model, "interval:every=2", num_steps=bad):
            pass


def test_a_run_longer_than_num_steps_is_refused():
    model = diffskip.attach(build("pixart"))
    x, kw = inputs("pixart", 1)
    with pytest.raises(SessionError, match="reached denoiser step 3 but the session was given "
                                                           "num_steps=2"):
        with torch.no_grad(), diffskip.session(model, "interval:every=2", num_steps=2):
            for t in (900.0, 600.0, 300.0, 100.0):
                model(x, timestep=torch.tensor([t]), return_dict=False, **kw)


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x, skip=None):
        return x + torch.tanh(self.lin(x if skip is None else x + skip))


class _GlueNet(torch.nn.Module):
    """Blocks 1 and 2 have glue between them (a scale); the last block (live tail) may read block 2's output."""

    def __init__(self, long_skip: bool):
        super().__init__()
        self.blocks = torch.nn.ModuleList(_Block() for _ in range(5))
        self.long_skip = long_skip

    def forward(self, x, t):
        x = self.blocks[0](x * (1 + t / 1000))
        x = self.blocks[1](x)
        x = h2 = self.blocks[2](x * 0.5)
        x = self.blocks[3](x)
        return self.blocks[4](x, skip=h2 if self.long_skip else None)


@pytest.mark.parametrize("long_skip", [False, True])
def test_spans_end_at_glue_and_a_live_long_skip_keeps_per_unit_caches(long_skip):
    adapter = diffskip.Adapter(units=("blocks",), reuse="residual", streams="x", head=1, tail=1, timestep="t")
    outs, kept = {}, {}
    for policy in (diffskip.Interval(every=2), PerUnitInterval(every=2)):
        torch.manual_seed(0)
        net = diffskip.attach(_GlueNet(long_skip), adapter)
        with torch.no_grad(), diffskip.session(net, policy, num_steps=5) as s:
            for _ in range(2):  # a long skip is found during the first run; the second runs per unit throughout
                x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
                for t in (900.0, 700.0, 500.0, 300.0, 100.0):
                    x = x - 0.1 * net(x, t)
            kept[policy.per_unit] = sorted(map(str, s.branches[0].cache.values))
        outs[policy.per_unit] = x
    assert torch.allclose(outs[False], outs[True], rtol=1e-5, atol=1e-6)
    # glue between blocks 1 and 2 splits the span; a live block reading block 2's (inside span 2-3): per unit
    assert kept[False] == (["1", "2", "3"] if long_skip else ["('span', 1)", "('span', 2)"])


def test_a_skippable_block_that_changes_its_streams_shape_is_refused_in_one_line():
    class Halve(torch.nn.Module):
        def forward(self, x):
            return x[:, : x.shape[1] // 2] * 2

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([_Block(), Halve(), _Block()])

        def forward(self, x, t):
            for blk in self.blocks:
                x = blk(x)
            return x

    adapter = diffskip.Adapter(units=("blocks",), reuse="residual", streams="x", head=1, timestep="t")
    net = diffskip.attach(Net(), adapter)
    with pytest.raises(SessionError, match="unit 1 returns a stream of another shape than it received"):
        with torch.no_grad(), diffskip.session(net, "interval:every=2", num_steps=2):
            net(torch.randn(2, 4, 8), 900.0)
