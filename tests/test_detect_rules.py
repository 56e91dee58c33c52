"""Detection rules on toy models: stream order, None outputs, unchanged arguments, refiners, refusals, registry."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import diffskip
from diffskip.adapters import Adapter, UnsupportedModelError, describe, detect, find_adapter, registered
from diffskip.adapters.base import resolve_layout


class Joint(nn.Module):
    """A joint-attention block: (hidden, encoder, rotary) -> (encoder, hidden); the last may return None first."""

    def __init__(self, last: bool = False):
        super().__init__()
        self.lin, self.last = nn.Linear(4, 4), last

    def forward(self, hidden_states, encoder_hidden_states, rotary):
        h = hidden_states + torch.tanh(self.lin(hidden_states)) * rotary.mean()
        return (None if self.last else encoder_hidden_states * 0.5), h


class Single(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x, mask=None) -> torch.Tensor:
        return x + torch.tanh(self.lin(x))


class JointNet(nn.Module):
    def __init__(self, depth: int = 3):
        super().__init__()
        self.transformer_blocks = nn.ModuleList(Joint(last=i == depth - 1) for i in range(depth))
        self.single_transformer_blocks = nn.ModuleList(Single() for _ in range(2))
        self.noise_refiner = nn.ModuleList(Single() for _ in range(2))
        self.unused_blocks = nn.ModuleList(Single() for _ in range(2))

    def forward(self, hidden_states, timestep, encoder_hidden_states):
        for blk in self.noise_refiner:
            hidden_states = blk(hidden_states)
        rotary = torch.ones(7, 2)  # no batch dimension
        for blk in self.transformer_blocks:
            enc, hidden_states = blk(hidden_states, encoder_hidden_states, rotary)
            encoder_hidden_states = enc if enc is not None else encoder_hidden_states
        for blk in self.single_transformer_blocks:
            hidden_states = blk(hidden_states, mask=None)
        return hidden_states * (timestep / 1000)


def _call(net, b=2):
    return net(torch.randn(b, 5, 4), 900.0, torch.randn(b, 3, 4))


def test_probe_finds_lists_in_order_streams_none_outputs_and_unbatched_arguments():
    net = JointNet()
    adapter = detect(net, probe=lambda: _call(net))
    assert adapter.units == ("transformer_blocks", "single_transformer_blocks")  # refiner and unused lists left out
    assert adapter.streams == ("encoder_hidden_states", "hidden_states")
    assert adapter.list_streams == (("single_transformer_blocks", "x"),)
    assert adapter.unbatched == ("rotary",) and adapter.timestep == "timestep"
    specs = [spec for _, spec in resolve_layout(net, adapter)]
    assert specs == [("encoder_hidden_states", "hidden_states")] * 3 + ["x"] * 2


def test_one_block_list_is_matched_by_shape():
    net = JointNet(depth=1)
    adapter = detect(net, probe=lambda: _call(net))
    assert adapter.streams == (None, "hidden_states")  # the one block returns None for the encoder stream


def test_equal_shapes_without_a_chain_are_refused_with_the_register_call():
    net = JointNet(depth=1)
    with pytest.raises(UnsupportedModelError) as err:
        detect(net, probe=lambda: net(torch.randn(2, 3, 4), 900.0, torch.randn(2, 3, 4)))
    msg = str(err.value)
    assert "\n" not in msg and "['encoder_hidden_states', 'hidden_states']" in msg
    assert "diffskip.register(JointNet, units=('transformer_blocks',), reuse='residual'" in msg


def test_static_detection_only_when_unambiguous():
    net = JointNet()
    with pytest.raises(UnsupportedModelError, match=r"need a probing call.*diffskip\.register\(JointNet"):
        detect(net)

    class OneList(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = nn.ModuleList(Single() for _ in range(3))

        def forward(self, x, t):
            for layer in self.layers:
                x = layer(x)
            return x

    assert detect(OneList()) == Adapter(units=("layers",), reuse="residual", streams="x", timestep="t")


def test_no_timestep_argument_is_refused():
    class NoClock(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Single() for _ in range(2))

        def forward(self, x, cond):
            return x

    with pytest.raises(UnsupportedModelError, match=r"no timestep argument.*'x', 'cond'"):
        detect(NoClock())


def test_a_list_run_twice_is_refused():
    class Twice(JointNet):
        def forward(self, hidden_states, timestep, encoder_hidden_states):
            for blk in [*self.single_transformer_blocks, *self.single_transformer_blocks]:
                hidden_states = blk(hidden_states)
            return hidden_states

    net = Twice()
    with pytest.raises(UnsupportedModelError, match=r"single_transformer_blocks ran \[2, 2\] times"):
        detect(net, probe=lambda: _call(net))


def test_hooks_are_removed_and_a_detected_model_runs_under_attach():
    net = JointNet()
    adapter = detect(net, probe=lambda: _call(net))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in net.modules())
    with registered(JointNet, Adapter(units=("transformer_blocks",), reuse="residual",
                                      streams=adapter.streams, unbatched=adapter.unbatched)):
        diffskip.attach(net)
        with diffskip.session(net, "interval:every=2,final=0") as s:
            for t in (900.0, 600.0, 300.0):
                net(torch.randn(2, 5, 4), t, torch.randn(2, 3, 4))
        diffskip.detach(net)
    assert s.stats.reused > 0


def test_registered_restores_the_registry_and_explicit_wins():
    net = JointNet()
    with pytest.raises(UnsupportedModelError):
        find_adapter(net)
    assert describe(net, probe=lambda: _call(net))["source"] == "automatic"
    detected = detect(net, probe=lambda: _call(net))
    assert describe(net, detected)["lists"] == ["transformer_blocks", "single_transformer_blocks"]
    assert describe(net, detected)["source"] == "automatic"
    mine = Adapter(units=("single_transformer_blocks",), reuse="residual", streams="x")
    with registered(JointNet, mine) as got:
        assert got is mine and find_adapter(net) is mine
        info = describe(net)
        assert describe(net, detected)["source"] == "automatic"  # not the registered one
        assert info == {"source": "explicit", "lists": ["single_transformer_blocks"], "reuse": "residual",
                        "streams": {"single_transformer_blocks": "x"}, "units": 2, "timestep": "timestep"}
        with registered(JointNet, units=["transformer_blocks"], reuse="output"):
            assert find_adapter(net).reuse == "output"
        assert find_adapter(net) is mine  # the outer registration is back
    with pytest.raises(UnsupportedModelError):
        find_adapter(net)


def test_list_streams_validation_and_nested_paths():
    with pytest.raises(ValueError, match=r"list_streams names \['blocks'\].*units=\('layers',\)"):
        Adapter(units=("layers",), reuse="residual", list_streams={"blocks": "x"})
    a = Adapter(units=("a", "b"), reuse="residual", streams=["x", None], list_streams={"b": ["y"]})
    assert a.streams == ("x", None) and a.list_streams == (("b", ("y",)),) and hash(a) == hash(a)

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Module()
            self.inner.blocks = nn.ModuleList(Single() for _ in range(3))

    layout = resolve_layout(Outer(), Adapter(units=("inner.blocks",), reuse="residual", streams="x"))
    assert [spec for _, spec in layout] == ["x"] * 3 and all(isinstance(u, Single) for u, _ in layout)


def test_describe_a_builtin_adapter_is_explicit():
    from models import build

    info = describe(build("flux"))
    assert info["source"] == "explicit" and info["reuse"] == "residual"
    assert info["streams"] == {p: ["encoder_hidden_states", "hidden_states"]
                               for p in ("transformer_blocks", "single_transformer_blocks")}


class Widen(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], -1)


def test_lists_run_twice_or_without_a_stream_are_left_out_not_refused():
    class Mixed(JointNet):
        def __init__(self):
            super().__init__()
            self.text_blocks = nn.ModuleList(Widen() for _ in range(2))

        def forward(self, hidden_states, timestep, encoder_hidden_states):
            for blk in self.text_blocks:  # outputs that continue no input of theirs (they widen)
                encoder_hidden_states = blk(encoder_hidden_states)[..., :4]
            rotary = torch.ones(7, 2)
            for blk in self.transformer_blocks:
                enc, hidden_states = blk(hidden_states, encoder_hidden_states, rotary)
                encoder_hidden_states = enc if enc is not None else encoder_hidden_states
            for _ in range(2):  # a sub-network run twice per call: not a chain of steps to cache
                for blk in self.unused_blocks:
                    hidden_states = blk(hidden_states)
            return hidden_states

    net = Mixed()
    adapter = detect(net, probe=lambda: _call(net))
    assert adapter.units == ("transformer_blocks",)
    net.transformer_blocks = nn.ModuleList()
    with pytest.raises(UnsupportedModelError, match=r"unused_blocks ran \[2, 2\] times in one call, not once each "
                                                    r"in order; the outputs of text_blocks's blocks match none"):
        detect(net, probe=lambda: _call(net))


def test_nested_lists_only_when_the_model_has_no_top_level_list():
    class Wrapped(nn.Module):
        def __init__(self, top: bool):
            super().__init__()
            self.embed = nn.Module()
            self.embed.layers = nn.ModuleList(Single() for _ in range(2))  # an embedding MLP, nested
            if top:
                self.blocks = nn.ModuleList(Single() for _ in range(2))

        def forward(self, x, t):
            for m in [*self.embed.layers, *getattr(self, "blocks", [])]:
                x = m(x)
            return x

    run = lambda net: detect(net, probe=lambda: net(torch.randn(2, 3, 4), 1.0))  # noqa: E731
    assert run(Wrapped(top=True)).units == ("blocks",)
    assert run(Wrapped(top=False)).units == ("embed.layers",)


def test_blocks_compiled_with_fullgraph_are_probed_eagerly_and_stay_compiled():
    net = JointNet()
    blocks = [*net.transformer_blocks, *net.single_transformer_blocks]
    for b in blocks:
        b.compile(fullgraph=True, backend="eager")  # tracing the recording hooks would be refused
    compiled = [b.__dict__["_compiled_call_impl"] for b in blocks]
    adapter = detect(net, probe=lambda: _call(net))
    assert adapter.units == ("transformer_blocks", "single_transformer_blocks")
    assert [b.__dict__["_compiled_call_impl"] for b in blocks] == compiled


def test_adapter_fields_given_as_lists_are_stored_as_tuples():
    a = Adapter(units=["a"], reuse="output", unbatched=["r"], layers=[["resnets", "attentions"]])
    assert (a.units, a.unbatched, a.layers) == (("a",), ("r",), (("resnets", "attentions"),)) and hash(a)
