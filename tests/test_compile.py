"""torch.compile under a session: compiled units stay compiled and exact, a compiled whole denoiser stays right,
and the plans of input-independent policies read nothing back from the device."""
import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.utils import counters
from torch.utils._python_dispatch import TorchDispatchMode

import diffskip
from diffskip.engine.hooks import hooked
from diffskip.testing import tiny_pipeline
from test_adapters import TOY, ToyNet


def run(kind, pipe, steps=6):
    kw = dict(prompt="a red shoe", height=16, width=16, num_inference_steps=steps, output_type="np",
              generator=torch.Generator().manual_seed(0))
    if kind == "pixart":
        kw.update(use_resolution_binning=False, clean_caption=False)
    return pipe(**kw).images


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    counters.clear()
    yield
    dynamo.reset()


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
@pytest.mark.parametrize("kind", ["pixart", "sd"])
def test_units_compiled_fullgraph_run_exact_with_no_breaks_or_late_recompiles(kind, backend):
    fast = diffskip.DiffSkipPipeline(tiny_pipeline(kind), "interval:every=2")
    ref = run(kind, fast)
    units = hooked(fast.denoiser).units
    for u in units:
        u.module.compile(fullgraph=True, backend=backend)
    graphs = []  # graphs compiled so far, before each denoiser call (one call a step: batched CFG)
    fast.denoiser.register_forward_pre_hook(lambda m, a: graphs.append(counters["stats"]["unique_graphs"]))
    out = run(kind, fast)
    assert abs(out - ref).max() <= 1e-5 and fast.last_stats.reused == run_reused(kind)
    assert not counters["graph_break"]  # fullgraph=True would have raised on one; none recorded either
    assert counters["stats"]["unique_graphs"] > 0  # the units really ran compiled
    assert len(graphs) == 6 and graphs[3:] == [counters["stats"]["unique_graphs"]] * 3  # none after step 2
    again = run(kind, fast)
    assert abs(again - ref).max() <= 1e-5 and counters["stats"]["unique_graphs"] == graphs[-1]


def run_reused(kind):
    """Skippable unit evaluations reused by interval:every=2 over 6 steps of the tiny pipelines (batch 2: CFG):
    steps 1 and 3 (step 5 is the final step, which computes)."""
    return {"pixart": 2 * 2 * 3, "sd": 2 * 2 * 20}[kind]


def test_compile_repeated_blocks_keeps_running_compiled_under_a_session():
    pipe = tiny_pipeline("pixart")
    fast = diffskip.DiffSkipPipeline(pipe, "interval:every=2")
    ref = run("pixart", fast)
    pipe.transformer._repeated_blocks = ["BasicTransformerBlock"]  # empty on PixArt in diffusers 0.42
    pipe.transformer.compile_repeated_blocks(fullgraph=True, backend="eager")  # after attach: re-armed
    out = run("pixart", fast)
    assert abs(out - ref).max() <= 1e-5 and counters["stats"]["unique_graphs"] > 0
    assert not counters["graph_break"]


@pytest.mark.parametrize("kind", ["pixart", "sd"])
def test_whole_compiled_denoiser_breaks_at_units_and_stays_right(kind):
    fast = diffskip.DiffSkipPipeline(tiny_pipeline(kind), "interval:every=2")
    ref = run(kind, fast)
    fast.denoiser.compile(backend="eager")  # in place, after attach
    out = run(kind, fast)
    assert abs(out - ref).max() <= 1e-5 and fast.last_stats.reused == run_reused(kind)
    assert counters["stats"]["unique_graphs"] > 0


@pytest.mark.parametrize("in_place", [True, False])
def test_whole_compiled_toy_denoiser_stays_exact_and_counts(in_place):
    net = diffskip.attach(ToyNet(depth=4), TOY)
    x = torch.randn(2, 3, 8)
    with torch.no_grad(), diffskip.session(net, "interval:every=2,final=0") as s:
        expected = [net(x, t) for t in (900.0, 800.0, 700.0)]
    if in_place:
        net.compile(backend="eager")  # compiled inside diffskip's slot; breaks where each block is called
        compiled = net
    else:
        compiled = torch.compile(net, backend="eager")  # a wrapper: diffskip's slot runs it eagerly
    with torch.no_grad(), diffskip.session(net, "interval:every=2,final=0") as s2:
        got = [compiled(x, t) for t in (900.0, 800.0, 700.0)]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))
    assert s2.stats.computed == s.stats.computed and s2.stats.reused == s.stats.reused > 0
    if not in_place:
        assert counters["stats"]["unique_graphs"] == 0  # the wrapper's call ran eagerly inside diffskip's slot


class HostReads(TorchDispatchMode):
    """Count device-to-host reads (.item(), bool(tensor), .tolist() all dispatch _local_scalar_dense)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("spec,per_step", [("interval:every=2", 0), ("uniform:speedup=2", 0), ("mask:steps=101101", 0),
                                           ("never", 0), ("threshold:threshold=0.05", 1)])
def test_plans_read_the_device_at_most_once_per_step(spec, per_step):
    net = diffskip.attach(ToyNet(depth=5), TOY)
    x = torch.randn(4, 3, 8)
    reads = []
    with torch.no_grad(), diffskip.session(net, spec, num_steps=6, count_flops=False) as s:
        for k, t in enumerate((900.0, 800.0, 700.0, 600.0, 500.0, 400.0)):  # timesteps as Python floats
            with HostReads() as mode:
                net(x * (1 + k / 10), t)
            reads.append(mode.count)
    # (a drift-gated plan reads its drift with one .tolist() a step: a copy on GPUs, a plain read on CPU)
    assert max(reads) <= per_step and s.stats.steps == 6


def test_a_unit_compiled_after_attach_runs_compiled_before_any_session():
    torch.manual_seed(0)
    net = diffskip.attach(ToyNet(depth=3), TOY)
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        ref = net(x, 500.0)
        net.blocks[1].compile(fullgraph=True, backend="eager")  # after attach, no session yet
        out = net(x, 500.0)
    assert torch.equal(out, ref) and counters["stats"]["unique_graphs"] >= 1
