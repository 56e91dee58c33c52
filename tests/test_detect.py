"""Automatic adapters: block lists and streams detected on tiny diffusers denoisers that have no adapter."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import diffskip
from diffskip.adapters import Adapter, UnsupportedModelError, detect, find_adapter, registered
from diffskip.engine.hooks import hooked
from detect_models import SPECS, build, inputs, output

STEPS = (900.0, 750.0, 600.0, 450.0, 300.0, 150.0)

# What detection must find (hand-read from each class's forward in diffusers 0.42.1).
EXPECTED = {
    "WanTransformer3DModel": (("blocks",), "hidden_states", ()),
    "CogVideoXTransformer3DModel": (("transformer_blocks",), ("hidden_states", "encoder_hidden_states"), ()),
    "LTXVideoTransformer3DModel": (("transformer_blocks",), "hidden_states", ()),
    "HunyuanVideoTransformer3DModel": (("transformer_blocks", "single_transformer_blocks"),
                                       ("hidden_states", "encoder_hidden_states"), ()),
    "QwenImageTransformer2DModel": (("transformer_blocks",), ("encoder_hidden_states", "hidden_states"), ()),
    "UNet3DConditionModel": (("down_blocks", "mid_block", "up_blocks"), None, ()),
    "Flux2Transformer2DModel": (("transformer_blocks", "single_transformer_blocks"),
                                ("encoder_hidden_states", "hidden_states"),
                                (("single_transformer_blocks", "hidden_states"),)),
    "HiDreamImageTransformer2DModel": (("double_stream_blocks", "single_stream_blocks"),
                                       ("hidden_states", "encoder_hidden_states"),
                                       (("single_stream_blocks", "hidden_states"),)),
    "Lumina2Transformer2DModel": (("layers",), "hidden_states", ()),
    "ZImageTransformer2DModel": (("layers",), "x", ()),
}


RISING = ("Lumina2Transformer2DModel", "ZImageTransformer2DModel")  # explicit: detection cannot see the direction


def _engine_case(name: str):
    return name  # the engine runs every detected layout: per-unit streams, unit batches, rising timesteps


def _denoise(model: nn.Module, name: str) -> list[torch.Tensor]:
    with torch.no_grad():
        return [output(model(**inputs(name, t), return_dict=False)) for t in STEPS]


def _leaf_counter(model: nn.Module, adapter: Adapter) -> list[int]:
    """Count leaf-module executions inside the adapter's units (forward pre-hooks; a replayed unit runs none)."""
    count = [0]
    for unit, _ in diffskip.adapters.resolve_layout(model, adapter):
        for m in unit.modules():
            if not list(m.children()):
                m.register_forward_pre_hook(lambda *a: count.__setitem__(0, count[0] + 1))
    return count


@pytest.mark.parametrize("name", list(SPECS))
def test_detected_lists_and_streams(name):
    model = build(name)
    adapter = detect(model, probe=lambda: model(**inputs(name, 900.0)))
    if name in RISING:  # the explicit adapter is what detection finds, plus the timestep's direction
        assert find_adapter(model) == dataclasses.replace(adapter, rising=True)
    else:
        with pytest.raises(UnsupportedModelError):
            find_adapter(model)  # no explicit adapter: detection is what makes it run
    units, streams, per_list = EXPECTED[name]
    assert adapter.units == units
    assert (adapter.streams if adapter.reuse == "residual" else None) == streams
    assert adapter.list_streams == per_list
    assert adapter.reuse == ("output" if name.startswith("UNet") else "residual")
    assert hash(adapter) == hash(detect(model, probe=lambda: model(**inputs(name, 600.0))))  # data: same again


@pytest.mark.parametrize("name", [_engine_case(n) for n in SPECS])
def test_detected_adapter_never_is_bit_exact_and_interval_computes_less(name):
    model = build(name)
    adapter = find_adapter(model) if name in RISING else detect(model, probe=lambda: model(**inputs(name, 900.0)))
    base = _denoise(model, name)
    count = _leaf_counter(model, adapter)
    with registered(type(model), adapter):
        diffskip.attach(model)
        assert hooked(model).adapter == adapter
        with diffskip.session(model, "never") as s0:
            never = _denoise(model, name)
        full = count[0]
        with diffskip.session(model, "interval:every=2,final=0") as s2:
            fast = _denoise(model, name)
        fewer = count[0] - full
        diffskip.detach(model)
    detached = _denoise(model, name)
    assert all(torch.equal(a, b) for a, b in zip(base, never))
    assert all(torch.equal(a, b) for a, b in zip(base, detached))
    assert s0.stats.reused == 0 and s2.stats.reused > 0
    assert 0 < fewer < full and s2.stats.flops_fraction < 1.0
    assert all(torch.isfinite(x).all() for x in fast) and not all(torch.equal(a, b) for a, b in zip(base, fast))


@pytest.mark.parametrize("kind", ["unet-sd", "unet2d", "dit", "pixart", "sd3", "flux", "sana"])
def test_detection_reproduces_the_explicit_adapters(kind):
    import models

    model = models.build(kind)
    x, kw = models.inputs(kind, 2)
    arg = "sample" if kind.startswith("unet") else "hidden_states"
    ts = torch.full((2,), 0.9 if kind == "flux" else 900.0)
    found = detect(model, probe=lambda: model(**{arg: x}, timestep=ts, return_dict=False, **kw))
    explicit = find_adapter(model)
    if kind.startswith("unet"):  # these tiny UNets end in an UpBlock2D (no attention): detection keeps its one
        assert found.tail == 1 and not hasattr(model.up_blocks[-1], "attentions")  # its resnet; explicit: two
        found = dataclasses.replace(found, tail=explicit.tail)
    assert found == explicit


STATIC = ("WanTransformer3DModel", "LTXVideoTransformer3DModel", "UNet3DConditionModel", "Lumina2Transformer2DModel",
          "ZImageTransformer2DModel")  # one block list returning one tensor, or a UNet: no probe needed


@pytest.mark.parametrize("name", list(SPECS))
def test_static_detection_agrees_with_the_probe_or_refuses_in_one_line(name):
    model = build(name)
    probed = detect(model, probe=lambda: model(**inputs(name, 900.0)))
    if name in STATIC:  # the same lists and streams; the probe also learns the unbatched arguments
        assert detect(model) == dataclasses.replace(probed, unbatched=())
    else:
        with pytest.raises(UnsupportedModelError) as err:
            detect(model)
        assert "\n" not in str(err.value) and f"diffskip.register({name}, units=" in str(err.value)
