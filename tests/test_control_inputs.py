"""Control inputs of DiffSkipPipeline calls: the scale and the condition images are validated where they enter."""
import pytest
import torch

import diffskip
from diffskip.control.models import RelaCtrlModel
from diffskip.control.pipe import CONTROL_SCALE, check_control_scale
from diffskip.testing import tiny_pipeline


def _fast():
    torch.manual_seed(0)
    model = RelaCtrlModel(dim=24, num_layers=4, positions=[0, 1, 2, 3], groups=[1, 2, 3, 6], seed=0)
    for layer in [*model.proj_in, *model.proj_out]:
        torch.nn.init.normal_(layer.weight, std=0.3)
    return diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart"), control=model)


def _run(fast, prompt, seeds=(0, 1, 2), **kw):
    gens = [torch.Generator().manual_seed(s) for s in seeds[:1 if isinstance(prompt, str) else len(prompt)]]
    return fast(prompt, num_inference_steps=2, generator=gens, output_type="np", height=16, width=16,
                use_resolution_binning=False, clean_caption=False, **kw).images


@pytest.mark.parametrize("scale", [float("nan"), float("inf"), -float("inf"), -1e30, 1e30, -0.5, 10.5, True, "1"])
def test_a_control_scale_outside_the_stated_range_is_refused_before_the_run(scale):
    fast = _fast()
    with pytest.raises(diffskip.errors.SessionError, match=r"control_scale=.* is invalid; allowed: a finite number in"):
        _run(fast, "a shoe", control_image=torch.rand(1, 3, 16, 16), control_scale=scale)
    assert fast.last_stats is None  # nothing ran
    assert check_control_scale(CONTROL_SCALE[1]) == CONTROL_SCALE[1] and check_control_scale(0) == 0.0


def test_condition_images_are_one_for_all_prompts_or_one_per_prompt():
    fast = _fast()
    a, b = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)), torch.zeros(1, 3, 16, 16)
    with pytest.raises(diffskip.errors.SessionError, match="2 condition images for 1 prompts; allowed: one"):
        _run(fast, "a shoe", control_image=torch.cat([a, b]))
    with pytest.raises(diffskip.errors.SessionError, match="3 condition images for 2 prompts"):
        _run(fast, ["a shoe", "a bag"], control_image=torch.cat([a, b, a]))
    pair = _run(fast, ["a shoe", "a bag"], control_image=torch.cat([a, b]))  # one per prompt, in order
    first, second = _run(fast, ["a shoe"], control_image=a), _run(fast, "a bag", seeds=(1,), control_image=b)
    assert abs(pair[0] - first[0]).max() < 1e-4 and abs(pair[1] - second[0]).max() < 1e-4
    shared = _run(fast, ["a shoe", "a bag"], control_image=a)  # one for all
    assert abs(shared[0] - first[0]).max() < 1e-4 and abs(shared[1] - pair[1]).max() > 1e-3


def test_a_branch_on_another_base_is_refused_from_python_before_loading():
    from diffskip.errors import DiffSkipError

    with pytest.raises(DiffSkipError, match="control branch 'fashion-pixart-relactrl-edges' was trained for base "
                                            "model 'fashion-pixart', not 'fashion-sd'"):
        diffskip.DiffSkipPipeline.from_pretrained("fashion-sd", control="fashion-pixart-relactrl-edges")
