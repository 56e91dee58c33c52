"""The DiffSkip Plan node: outputs typed so ComfyUI links them into KSampler, names ComfyUI knows, one-line errors."""
from __future__ import annotations

import json
import sys
import types

import pytest

import fake_comfy as fc
from diffskip import comfy as dc
from diffskip.comfy.plan import comfy_names
from diffskip.errors import DiffSkipError

SAMPLERS = ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "ddim", "uni_pc"]  # a subset of ComfyUI's
SCHEDULERS = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta"]


@pytest.fixture
def comfy_samplers(monkeypatch):
    """A stand-in for comfy.samplers: KSampler's name lists (its COMBO inputs) and sampler_object()."""
    mod = types.ModuleType("comfy.samplers")

    class KSampler:
        SAMPLERS, SCHEDULERS = list(SAMPLERS), list(SCHEDULERS)

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"sampler_name": (cls.SAMPLERS,), "scheduler": (cls.SCHEDULERS,)}}

    mod.KSampler = KSampler
    mod.sampler_object = lambda name: ("KSAMPLER", name)
    pkg = types.ModuleType("comfy")
    pkg.samplers = mod
    monkeypatch.setitem(sys.modules, "comfy", pkg)
    monkeypatch.setitem(sys.modules, "comfy.samplers", mod)
    return mod


def _plan(tmp_path, model="fashion-sd", scheduler="own", steps=6, skip=0):
    path = tmp_path / f"plan-{scheduler}.json"
    path.write_text(json.dumps({"format": "diffskip-plan/1", "policy": "interval:every=2", "num_steps": steps,
                                "scheduler": scheduler, "skip": skip, "model": model}))
    return str(path)


def _links(received, input_type) -> bool:
    """ComfyUI's validate_node_input (comfy_execution/validation.py): equal types link; lists only to equal lists."""
    if not received != input_type:
        return True
    if not isinstance(received, str) or not isinstance(input_type, str):
        return False
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in input_type.split(",")})


@pytest.mark.parametrize("model,scheduler,expect", [("fashion-sd", "own", ("ddim", "ddim_uniform")),
                                                    ("fashion-sd", "dpm++", ("dpmpp_2m", "ddim_uniform")),
                                                    ("fashion-pixart", "own", ("dpmpp_2m", "sgm_uniform"))])
def test_plan_outputs_link_into_ksampler_and_name_a_comfyui_sampler(tmp_path, comfy_samplers, model, scheduler,
                                                                     expect):
    node_cls = dc.NODE_CLASS_MAPPINGS["DiffSkipPlan"]
    ks = comfy_samplers.KSampler.INPUT_TYPES()["required"]
    types_ = dict(zip(node_cls.RETURN_NAMES, node_cls.RETURN_TYPES))
    assert _links(types_["sampler_name"], ks["sampler_name"][0]) and _links(types_["scheduler"], ks["scheduler"][0])
    assert not _links("STRING", ks["sampler_name"][0])  # what the node used to return: ComfyUI refused the link
    assert types_["steps"] == "INT" and types_["sampler"] == "SAMPLER"
    p = fc.patcher("unet")
    model_out, steps, sampler_name, sched, sampler = node_cls().apply(p, _plan(tmp_path, model, scheduler))
    assert (sampler_name, sched) == expect and sampler == ("KSAMPLER", expect[0]) and steps == 6
    assert sampler_name in ks["sampler_name"][0] and sched in ks["scheduler"][0]  # ComfyUI's value check
    assert str(dc.policy_of(model_out)) == "interval:every=2" and p.wrappers == {}
    fc.sample(model_out, steps=6)
    assert dc.last_stats(model_out).steps == 6
    with pytest.raises(DiffSkipError, match="tuned for 6 steps but the sampler runs 5"):
        fc.sample(model_out, steps=5)


def test_plan_on_a_scheduler_comfyui_lacks_fails_in_one_line(tmp_path, comfy_samplers):
    folder = tmp_path / "m"
    (folder / "scheduler").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "PNDMScheduler"}))
    node = dc.NODE_CLASS_MAPPINGS["DiffSkipPlan"]()
    with pytest.raises(DiffSkipError, match=r"PNDMScheduler .* maps to no ComfyUI sampler.*--schedulers dpm\+\+") as e:
        node.apply(fc.patcher("unet"), _plan(tmp_path, str(folder)))
    assert "\n" not in str(e.value)
    assert node.apply(fc.patcher("unet"), _plan(tmp_path, str(folder), "dpm++"))[2:4] == ("dpmpp_2m", "ddim_uniform")
    with pytest.raises(DiffSkipError, match="has no scheduler/scheduler_config.json here"):
        node.apply(fc.patcher("unet"), _plan(tmp_path, str(tmp_path / "gone")))
    comfy_samplers.KSampler.SAMPLERS.remove("ddim")
    with pytest.raises(DiffSkipError, match="lists no sampler 'ddim'"):
        dc.NODE_CLASS_MAPPINGS["DiffSkipPlan"]().apply(fc.patcher("unet"), _plan(tmp_path))


@pytest.mark.parametrize("config,expect", [
    ({"_class_name": "DDIMScheduler", "timestep_spacing": "trailing"}, ("ddim", "simple")),
    ({"_class_name": "EulerDiscreteScheduler", "timestep_spacing": "linspace"}, ("euler", "sgm_uniform")),
    ({"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": True}, ("euler", "karras")),
    ({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver++"}, None),
    ({"_class_name": "DDIMScheduler", "timestep_spacing": "bogus"}, None)])
def test_diffusers_schedulers_map_to_comfyui_names_or_refuse(config, expect):
    if expect is None:
        with pytest.raises(DiffSkipError, match="maps to no ComfyUI sampler"):
            comfy_names("own", config)
    else:
        assert comfy_names("own", config) == expect


def test_plan_node_outside_comfyui_is_typed_combo_and_refuses_to_run(tmp_path):
    assert "comfy" not in sys.modules
    node_cls = dc.NODE_CLASS_MAPPINGS["DiffSkipPlan"]
    assert node_cls.RETURN_TYPES == ("MODEL", "INT", "COMBO", "COMBO", "SAMPLER")
    with pytest.raises(DiffSkipError, match="runs inside ComfyUI"):
        node_cls().apply(fc.patcher("unet"), _plan(tmp_path))
    with pytest.raises(DiffSkipError, match="--no-jumps"):  # a jump is refused before anything else
        node_cls().apply(object(), _plan(tmp_path, skip=2))
