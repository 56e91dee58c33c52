"""Plan files: validated where they enter (file or dict), and applied only to the denoiser they were tuned on."""
import json

import pytest
import torch

import diffskip
from diffskip.fingerprint import fingerprint
from diffskip.plan_files import load_plan, save_plan
from diffskip.testing import tiny_pipeline
from diffskip.tuning import TuneResult


def _tiny_sd(seed: int = 0):
    return diffskip.DiffSkipPipeline(tiny_pipeline("sd", seed=seed), "never")


@pytest.mark.parametrize("content,match", [("{", "cannot be read"), ('{"format": "x"}', "not a diffskip plan"),
                                           ('{"format": "diffskip-plan/1", "policy": "interval:every=0"}', "every=0"),
                                           ('{"format": "diffskip-plan/1", "policy": "never", "num_steps": 0}',
                                            "num_steps=0"),
                                           ('{"format": "diffskip-plan/1", "policy": "never", "num_steps": true}',
                                            "num_steps=True"),
                                           ('{"format": "diffskip-plan/1", "policy": "never", "num_steps": 4, '
                                            '"skip": false}', "skip=False"),
                                           ('{"format": "diffskip-plan/1", "num_steps": 4}', "policy=None"),
                                           ('{"format": "diffskip-plan/1", "policy": "never", "num_steps": 4, '
                                            '"skip": 2, "conditional": "yes"}', "conditional='yes' is invalid"),
                                           ('{"format": "diffskip-plan/1", "policy": "never", "num_steps": 4, '
                                            '"denoiser": {"shapes": "ab", "values": [NaN]}}', "denoiser=")])
def test_bad_plan_files_fail_with_the_reason(tmp_path, content, match):
    p = tmp_path / "p.json"
    p.write_text(content)
    with pytest.raises(diffskip.errors.DiffSkipError, match=match):
        load_plan(p)


def _plan(tmp_path, denoiser, name="plan.json"):
    return save_plan(TuneResult("interval:every=2", 4, 0.5, 30.0, 0.5, 8), tmp_path / name, denoiser, model="tiny-sd")


def test_a_plan_runs_only_on_the_denoiser_it_was_tuned_on_unless_forced(tmp_path):
    plan = _plan(tmp_path, _tiny_sd().denoiser)
    same = _tiny_sd()
    same.apply_plan(plan)
    assert str(same.policy) == "interval:every=2" and same.call_defaults["num_inference_steps"] == 4
    for dtype in (torch.float16, torch.bfloat16):  # the same weights in another dtype
        _tiny_sd().to(dtype=dtype).apply_plan(plan)
    other = _tiny_sd(seed=1)  # same architecture, other weights
    with pytest.raises(diffskip.errors.DiffSkipError, match=r"tuned on another denoiser \(model 'tiny-sd'\) than this "
                       r"UNet2DConditionModel: \d+ of \d+ sampled weights differ .* pass force=True"):
        other.apply_plan(plan)
    assert str(other.policy) == "never" and "num_inference_steps" not in other.call_defaults  # left as it was
    pixart = diffskip.DiffSkipPipeline(tiny_pipeline("pixart"), "never")
    with pytest.raises(diffskip.errors.DiffSkipError, match="parameter names or shapes differ"):
        pixart.apply_plan(plan)
    other.apply_plan(plan, force=True)
    assert str(other.policy) == "interval:every=2"
    data = json.loads(plan.read_text())
    del data["denoiser"]
    with pytest.raises(diffskip.errors.DiffSkipError, match="records no denoiser fingerprint"):
        same.apply_plan(data)
    same.apply_plan(data, force=True)
    folder = tmp_path / "other"
    tiny_pipeline("sd", seed=1).save_pretrained(folder)
    with pytest.raises(diffskip.errors.DiffSkipError, match="sampled weights differ"):
        diffskip.DiffSkipPipeline.from_pretrained(str(folder), plan=str(plan))
    with pytest.raises(diffskip.errors.DiffSkipError, match="force='yes' is invalid"):
        diffskip.DiffSkipPipeline.from_pretrained(str(folder), plan=str(plan), force="yes")
    loaded = diffskip.DiffSkipPipeline.from_pretrained(str(folder), plan=str(plan), force=True)
    assert loaded.call_defaults["num_inference_steps"] == 4


def test_apply_plan_validates_a_dict_like_a_file(tmp_path):
    fast = _tiny_sd()
    good = json.loads(_plan(tmp_path, fast.denoiser).read_text())
    for key, value, match in (("num_steps", True, "num_steps=True"), ("num_steps", 0, "num_steps=0"),
                              ("policy", "interval:every=0", "every=0"), ("scheduler", "euler", "scheduler='euler'"),
                              ("format", "x", "not a diffskip plan")):
        with pytest.raises(diffskip.errors.DiffSkipError, match=match):
            fast.apply_plan({**good, key: value})
        assert str(fast.policy) == "never" and "num_inference_steps" not in fast.call_defaults
    with pytest.raises(diffskip.errors.DiffSkipError, match="plan=3 is invalid"):
        fast.apply_plan(3)


def test_the_fingerprint_survives_compile_wrapping_and_float8_storage(tmp_path):
    fast = _tiny_sd()
    plan = _plan(tmp_path, fast.denoiser)
    assert fingerprint(torch.compile(fast.denoiser)) == fingerprint(fast.denoiser)  # no `_orig_mod.` in names
    cast = _tiny_sd()
    cast.denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert fingerprint(cast.denoiser)["values"] != fingerprint(fast.denoiser)["values"]
    cast.apply_plan(plan)  # within float8's rounding step
    assert str(cast.policy) == "interval:every=2"


def test_a_plan_with_a_conditional_jump_applies_it(tmp_path):
    from diffskip.analytic import GaussianStats

    fast = _tiny_sd()
    stats = GaussianStats.from_latents(torch.randn(40, 4, 8, 8, generator=torch.Generator().manual_seed(0)), 8)
    stats.save(tmp_path / "diffskip_gaussian")  # the model folder's statistics, as from_pretrained finds them
    fast.source = str(tmp_path)
    res = TuneResult("never", 6, 0.5, 30.0, 0.5, 8, skip=3, conditional=True)
    path = save_plan(res, tmp_path / "plan.json", fast.denoiser, model="tiny-sd")
    assert load_plan(path)["conditional"] is True
    fast.apply_plan(path)
    assert fast.skip.conditional and fast.skip.steps == 3 and fast.skip.saved_calls == 2
    fast(["a cat"], height=16, width=16, generator=[torch.Generator().manual_seed(0)], output_type="latent")
    assert fast.last_stats.steps == 4 and fast.last_stats.skipped_steps == 2  # step 0, then steps 3..5
