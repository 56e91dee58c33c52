"""ComfyUI nodes on a faithful fake ModelPatcher and stand-ins shaped like ComfyUI's denoisers."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import typing
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import diffskip
from diffskip.errors import UnsupportedModelError
import fake_comfy as fc
import fake_comfy_models as fcm
from diffskip import comfy as dc
from diffskip.comfy.nodes import NONE, node_defaults
from diffskip.policies import POLICIES

ROOT = Path(__file__).resolve().parents[1]


_node = fc.node


def test_one_node_per_policy_with_inputs_generated_from_the_dataclass():
    expected = {f"DiffSkip{c.__name__}" for c in POLICIES.values()} | {"DiffSkipReport", "DiffSkipPlan"}
    assert set(dc.NODE_CLASS_MAPPINGS) == expected
    assert set(dc.NODE_DISPLAY_NAME_MAPPINGS) == set(dc.NODE_CLASS_MAPPINGS)
    for cls in POLICIES.values():
        spec = dc.NODE_CLASS_MAPPINGS[f"DiffSkip{cls.__name__}"].INPUT_TYPES()["required"]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert list(spec)[0] == "model" and set(spec) - {"model"} == set(fields)
        for name, (kind, opts) in list(spec.items())[1:]:
            f = fields[name]
            default = node_defaults(cls)[name]  # the dataclass's, or the node's own (Mask, Profile)
            assert opts["default"] == (NONE if default is None else default)
            assert opts["tooltip"].startswith(f.metadata["tooltip"])
            lo, hi = f.metadata["range"]
            if kind != "STRING":
                optional = type(None) in typing.get_args(typing.get_type_hints(cls)[name])
                assert opts["max"] == hi and opts["min"] == (NONE if optional else lo)
    interval = dc.NODE_CLASS_MAPPINGS["DiffSkipInterval"].INPUT_TYPES()["required"]
    assert interval["every"] == ("INT", {"default": 3, "tooltip": interval["every"][1]["tooltip"], "min": 1,
                                         "max": 1000, "step": 1})
    assert interval["end"][1]["default"] == -1  # None in the dataclass


@pytest.mark.parametrize("kind,units,skippable", [("unet", 15, 14), ("flux", 6, 5), ("pixart", 4, 3),
                                                      ("sd3", 4, 3)])
def test_policy_node_patches_a_clone_only_and_counts_exactly(kind, units, skippable):
    p = fc.patcher(kind)
    base = fc.sample(p)
    fast = _node("DiffSkipInterval", p, every=3)
    assert p.wrappers == {} and fast.wrappers["outer_sample"]["diffskip"]  # the input model is untouched
    assert "forward" not in p.model.diffusion_model.__dict__  # nothing attached before sampling
    out = fc.sample(fast)
    st = dc.last_stats(fast)
    # 6 steps, CFG batch 2, compute at steps 0 and 3 and the final step 5
    assert (st.steps, st.num_units, st.skippable) == (6, units, skippable)
    assert (st.computed, st.reused) == (3 * skippable * 2, 3 * skippable * 2)
    assert st.flops_fraction < 0.8
    assert not torch.equal(out, base) and (out - base).abs().max() < base.abs().max()
    assert torch.equal(fc.sample(p), base)  # the unpatched clone still runs at full cost, bit-exact
    assert dc.last_stats(p) is None


def test_comfy_unet_units_are_the_layers_comfy_calls_and_the_shallow_path_stays_live():
    p = fc.patcher("unet")
    dm = p.model.diffusion_model
    calls = {}
    for name, mod in dm.named_modules():
        if isinstance(mod, (fcm.ResBlock, fcm.SpatialTransformer, fcm.Downsample, fcm.Upsample)):
            inner = next(mod.children())  # runs only when the layer really computes
            inner.register_forward_hook(lambda m, a, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
    fc.sample(_node("DiffSkipInterval", p, every=3))
    assert calls["output_blocks.3.0"] == calls["output_blocks.3.1"] == 6  # last output block: every step
    assert calls["input_blocks.1.0"] == 6  # the head layer (drift probe)
    assert calls["middle_block.1"] == calls["output_blocks.0.0"] == calls["input_blocks.3.1"] == 3  # 0, 3, 5


def test_inplace_flux_blocks_give_the_same_result_as_out_of_place_ones():
    outs = {}
    for kind in ("flux", "flux-outofplace"):
        p = fc.patcher(kind)
        outs[kind] = (fc.sample(p), fc.sample(_node("DiffSkipInterval", p, every=2)))
    assert torch.allclose(outs["flux"][0], outs["flux-outofplace"][0], atol=1e-6)
    assert torch.allclose(outs["flux"][1], outs["flux-outofplace"][1], atol=1e-5)  # residuals not zeroed
    assert (outs["flux"][1] - outs["flux"][0]).abs().max() > 1e-4  # and reuse did fire


def test_sd3_positional_joint_blocks_take_per_sample_threshold_decisions():
    p = fc.patcher("sd3")
    base = fc.sample(p, steps=8, batch=2)
    fast = _node("DiffSkipThreshold", p, threshold=0.5)
    out = fc.sample(fast, steps=8, batch=2)
    per_call = [c.computed for c in dc.last_stats(fast).calls]
    assert per_call[0] == 3 * 4 and any(0 < n < 3 * 4 for n in per_call)  # some rows recompute, others reuse
    assert torch.isfinite(out).all() and not torch.equal(out, base)


def test_chained_nodes_compose_with_other_wrappers_and_the_later_policy_wins():
    p = fc.patcher("unet")
    first = _node("DiffSkipInterval", p, every=2)
    seen = []

    def foreign(executor, *args, **kwargs):  # another node pack's OUTER_SAMPLE wrapper
        seen.append(len(args[3]) - 1)
        return executor(*args, **kwargs)

    mid = first.clone()
    mid.add_wrapper_with_key("outer_sample", "other-pack", foreign)
    second = _node("DiffSkipUniform", mid, speedup=3.0)
    fc.sample(second)
    assert seen == [6]  # the foreign wrapper ran
    st2 = dc.last_stats(second)
    assert str(dc.policy_of(second)) == "uniform:speedup=3.0"
    assert st2.computed == diffskip.Uniform(speedup=3.0).budget(6, 14) * 2
    fc.sample(first)  # the earlier clone keeps its own policy
    assert (dc.last_stats(first).computed, dc.last_stats(first).reused) == (4 * 14 * 2, 2 * 14 * 2)  # 0, 2, 4, 5


def test_legacy_unet_function_wrapper_fallback_matches_and_chains():
    base = fc.patcher("unet")
    expect = fc.sample(_node("DiffSkipInterval", base, every=3))
    p = fc.patcher("unet", legacy=True)
    seen = []

    def older(apply_model, params):  # a wrapper another node set before ours
        seen.append(params["cond_or_uncond"])
        return apply_model(params["input"], params["timestep"], **params["c"])

    p.set_model_unet_function_wrapper(older)
    fast = _node("DiffSkipInterval", p, every=3)
    out = fc.sample(fast)
    assert torch.allclose(out, expect, atol=1e-6) and len(seen) == 6
    st = dc.last_stats(fast)
    assert (st.computed, st.reused) == (3 * 14 * 2, 3 * 14 * 2)  # steps 0, 3 and the final step 5
    fc.sample(fast)  # a second run: the step clock starts a new run by itself
    assert dc.last_stats(fast).steps == 6


def test_report_node_reads_the_last_run():
    p = fc.patcher("pixart")
    fast = _node("DiffSkipMask", p, steps="101011")
    node = dc.NODE_CLASS_MAPPINGS["DiffSkipReport"]()
    latent = {"samples": torch.zeros(1)}
    assert "no sampling run yet" in node.report(fast, latent)["result"][1]
    fc.sample(fast)
    res = node.report(fast, latent)
    assert res["result"][0] is latent and res["ui"]["text"][0] == res["result"][1]
    assert "policy mask:steps=101011" in res["result"][1] and "computed=24 reused=12" in res["result"][1]
    assert "no diffskip policy" in node.report(p, latent)["result"][1]


def test_bad_values_and_unsupported_models_raise_at_the_node():
    with pytest.raises(ValueError, match="every=0 is invalid"):
        _node("DiffSkipInterval", fc.patcher("unet"), every=0)
    p = fc.patcher("unet")
    p.model.diffusion_model = torch.nn.Linear(2, 2)
    with pytest.raises(UnsupportedModelError, match="no diffskip adapter for torch:Linear"):
        _node("DiffSkipNever", p)


SHIM = textwrap.dedent("""
    import importlib.util, json, sys
    out = {}
    for name in sys.argv[2:]:  # ComfyUI: import the folder's __init__.py under the folder's name
        spec = importlib.util.spec_from_file_location(name, sys.argv[1] + "/__init__.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        out[name] = sorted(mod.NODE_CLASS_MAPPINGS)
    import diffskip
    out["diffskip_file"] = diffskip.__file__
    out["has_pipeline"] = hasattr(diffskip, "DiffSkipPipeline")
    import diffskip.comfy
    out["same_nodes"] = mod.NODE_CLASS_MAPPINGS is diffskip.comfy.NODE_CLASS_MAPPINGS
    print(json.dumps(out))
""")


@pytest.mark.parametrize("installed", [True, False])
def test_root_shim_loads_like_comfyui_under_any_folder_name_without_shadowing_diffskip(tmp_path, installed):
    cmd = [sys.executable, "-c", SHIM, str(ROOT), "diffskip", "diffskip-main"]
    env = dict(os.environ)
    if not installed:  # no site processing: the editable install's finder is gone, site-packages stays importable
        site = next(p for p in sys.path if p.endswith("site-packages"))
        cmd.insert(1, "-S")
        env["PYTHONPATH"] = site
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["diffskip"] == out["diffskip-main"] == sorted(dc.NODE_CLASS_MAPPINGS)
    assert out["diffskip_file"] == str(ROOT / "diffskip" / "__init__.py")
    assert out["has_pipeline"] and out["same_nodes"]


def test_profile_node_defaults_run_interval_every_2s_schedule_and_say_what_is_risky():
    spec = dc.NODE_CLASS_MAPPINGS["DiffSkipProfile"].INPUT_TYPES()["required"]
    assert spec["every"][1]["default"] == 2 and spec["keep"][1]["default"] == 0
    assert "Risky: 0" in spec["every"][1]["tooltip"]
    p = fc.patcher("unet")
    prof, inter = _node("DiffSkipProfile", p), _node("DiffSkipInterval", p, every=2)
    assert torch.equal(fc.sample(prof, steps=10), fc.sample(inter, steps=10))
    a, b = dc.last_stats(prof), dc.last_stats(inter)
    assert (a.computed, a.reused) == (b.computed, b.reused) and a.reused < a.computed  # about half, never 85%


def test_a_policy_registered_later_is_a_node_without_a_reload():
    @diffskip.register_policy("odd_steps_late")
    @dataclasses.dataclass(frozen=True)
    class OddStepsLate(diffskip.Policy):
        """Reuse on odd steps (a policy registered after diffskip.comfy was imported)."""

        def decide(self, info, unit):
            return info.step % 2 == 0

    try:
        assert "DiffSkipOddStepsLate" in dc.NODE_CLASS_MAPPINGS
        assert dc.NODE_DISPLAY_NAME_MAPPINGS["DiffSkipOddStepsLate"] == "DiffSkip OddStepsLate (cache)"
        fast = _node("DiffSkipOddStepsLate", fc.patcher("pixart"))
        fc.sample(fast)
        assert str(dc.policy_of(fast)) == "odd_steps_late" and dc.last_stats(fast).reused == 2 * 3 * 2  # steps 1, 3
    finally:
        POLICIES.pop("odd_steps_late")
    assert "DiffSkipOddStepsLate" not in dc.NODE_CLASS_MAPPINGS and len(dc.NODE_CLASS_MAPPINGS) == len(POLICIES) + 2


def _nodes_table() -> str:
    """The node table of docs/comfyui.md, generated from the node classes."""
    rows = ["| node | class | what it does |", "|---|---|---|"]
    for key, cls in dc.NODE_CLASS_MAPPINGS.items():
        rows.append(f"| {dc.NODE_DISPLAY_NAME_MAPPINGS[key]} | `{key}` | {cls.DESCRIPTION} |")
    return "\n".join(rows)


def test_docs_name_exactly_the_nodes_that_exist():
    text = (ROOT / "docs" / "comfyui.md").read_text(encoding="utf-8")
    begin, end = "<!-- nodes: generated by tests/test_comfy.py::_nodes_table -->\n", "\n<!-- /nodes -->"
    assert begin in text and end in text
    table = text[text.index(begin) + len(begin):text.index(end)]
    assert table == _nodes_table(), "replace the table in docs/comfyui.md with:\n" + _nodes_table()
    stems = {name.split(" (")[0] for name in dc.NODE_DISPLAY_NAME_MAPPINGS.values()}
    assert set(re.findall(r"DiffSkip [A-Z][A-Za-z]+", text)) == stems  # no node named in prose that does not exist


@pytest.mark.parametrize("legacy", [False, True])
def test_cfg_aware_caching_reads_comfyui_cond_or_uncond(legacy):
    from diffskip.comfy import last_stats

    p = fc.patcher("unet", legacy=legacy)
    one = _node("DiffSkipInterval", p, every=2, cfg=1)
    two = _node("DiffSkipInterval", p, every=2, cfg=2)
    a, b = fc.sample(one, steps=8), fc.sample(two, steps=8)
    s1, s2 = last_stats(one), last_stats(two)
    assert s2.computed < s1.computed and not torch.equal(a, b)
    rows = s2.per_row(0)  # ComfyUI batches [cond, uncond] (cond_or_uncond [0, 1]): the second row is thinned
    assert rows[1] < rows[0] == s1.per_row(0)[0]


def test_cond_or_uncond_maps_to_the_session_uncond_forms():
    from diffskip.comfy.patch import CondOrUncond

    rows = CondOrUncond()
    cases = [([0, 1], 2, 1, "second-half"), ([1, 0], 4, 1, "half"), ([0], 1, 1, None), ([1], 1, 2, 1),
             ([1], 1, 1, 0), ([0, 1, 1], 3, 1, None), (None, 2, 1, None)]
    for order, batch, calls, want in cases:
        rows.last = order
        assert rows(batch, calls) == want, order
