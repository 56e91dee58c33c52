"""Every supported diffusers pipeline, tiny and offline: exact when inert, cheaper when accelerated."""
import pytest
import torch
from PIL import Image

import diffskip
from diffskip.errors import SessionError
from diffskip.testing import PIPELINES, tiny_pipeline


def run(kind, pipe, steps=6, **kw):
    g = torch.Generator().manual_seed(0)
    args = dict(num_inference_steps=steps, generator=g, output_type="np")
    if kind == "dit":
        return pipe(class_labels=[1, 3], **args, **kw).images
    args.update(prompt="a red shoe", height=16, width=16)
    if kind == "pixart":
        args.update(use_resolution_binning=False, clean_caption=False)
    if kind in ("sd-img2img", "flux-img2img"):
        args.update(image=Image.new("RGB", (16, 16), (200, 10, 10)), strength=0.8)
    if kind == "sd-controlnet":
        args.update(image=Image.new("RGB", (16, 16), (255, 255, 255)))
    if kind in ("sd3", "flux", "flux-img2img"):
        args.update(max_sequence_length=16)
    args.update(kw)
    return pipe(**args).images


@pytest.mark.parametrize("kind", sorted(PIPELINES))
def test_pipeline_never_exact_interval_cheaper_detach_exact(kind):
    pipe = tiny_pipeline(kind)
    base = run(kind, pipe)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, policy="never")
    assert (run(kind, fast) == base).all() and fast.last_stats.reused == 0
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, policy=diffskip.Interval(every=3))
    out = run(kind, fast)
    st = fast.last_stats
    steps = {"sd-img2img": 4, "flux-img2img": 5}.get(kind, 6)  # int(6 * 0.8) vs Flux's own rounding
    assert st.steps == steps and st.reused > 0 and st.flops_fraction < 0.8
    assert out.shape == base.shape and (out != base).any()
    assert (run(kind, pipe) == base).all()  # the wrapped pipeline stays unaccelerated and exact
    plain = fast.detach()
    assert plain is pipe and (run(kind, pipe) == base).all()
    with pytest.raises(SessionError, match="this DiffSkipPipeline was detached; call the plain pipeline"):
        run(kind, fast)


def test_from_pipe_original_full_cost_wrapper_accelerated():
    pipe = tiny_pipeline("pixart")
    calls = []
    pipe.transformer.transformer_blocks[2].attn1.register_forward_pre_hook(lambda m, a, k: calls.append(1),
                                                                           with_kwargs=True)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=3")
    run("pixart", fast, steps=9)
    accelerated = len(calls)
    calls.clear()
    run("pixart", pipe, steps=9)
    assert accelerated == 4 and len(calls) == 9  # steps 0, 3, 6 and the final step 8
    assert fast.scheduler is pipe.scheduler and fast.transformer is pipe.transformer  # attributes fall through
    assert fast.to("cpu") is fast  # chaining keeps the wrapper


def test_uniform_on_pipeline_uses_scheduler_step_count():
    pipe = tiny_pipeline("sd")
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "uniform:speedup=2")
    run("sd", fast, steps=8)
    st = fast.last_stats
    per_sample = st.computed // 2  # CFG batch of 2
    assert abs(per_sample - 8 * st.skippable / 2) <= 1


def test_flux_true_cfg_separate_passes_have_separate_branches():
    pipe = tiny_pipeline("flux")
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2")
    run("flux", fast, negative_prompt="blurry", true_cfg_scale=2.0)
    pb = fast.last_stats.per_branch()
    assert sorted(pb) == [0, 1] and pb[0] == pb[1] == {"computed": 12, "reused": 6}  # 3 units at steps 0, 2, 4, 5


def test_composes_with_group_offloading_applied_first():
    from diffusers.hooks import apply_group_offloading

    pipe = tiny_pipeline("pixart")
    base = run("pixart", diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart"), "interval:every=2"))
    apply_group_offloading(pipe.transformer, onload_device=torch.device("cpu"), offload_type="block_level",
                           num_blocks_per_group=1)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2")
    out = run("pixart", fast)
    assert fast.last_stats.reused > 0 and (out == base).all()
    fast.detach()  # diffskip's wrappers are outermost: detach is allowed


def test_group_offloading_added_after_attach_runs_and_detaches_in_any_order():
    from diffusers.hooks import apply_group_offloading

    pipe = tiny_pipeline("pixart")
    base = run("pixart", pipe)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2")
    ref = run("pixart", fast)
    apply_group_offloading(pipe.transformer, onload_device=torch.device("cpu"), offload_type="block_level",
                           num_blocks_per_group=1)
    assert (run("pixart", fast) == ref).all() and fast.last_stats.reused > 0
    fast.detach()  # diffskip sits in the call slot, offloading in forward: no order between them
    assert (run("pixart", pipe) == base).all()


def test_composes_with_model_cpu_offload():
    pipe = tiny_pipeline("sd")
    base = run("sd", pipe)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=3")
    ref = run("sd", fast)
    fast.enable_model_cpu_offload(device="cpu")  # falls through to the wrapped pipeline
    assert (run("sd", fast) == ref).all() and fast.last_stats.reused > 0
    fast.detach()
    assert (run("sd", pipe) == base).all()
    pipe.remove_all_hooks()
    assert (run("sd", pipe) == base).all()


def test_unsupported_pipeline_error_lists_components():
    class FakePipe:
        components = {"prior": object(), "tokenizer": object()}

    with pytest.raises(diffskip.errors.UnsupportedPipelineError,
                       match=r"FakePipe has no denoiser component 'transformer or unet'; components: \['prior'"):
        diffskip.DiffSkipPipeline(FakePipe(), "never")


def test_from_pretrained_round_trip(tmp_path):
    pipe = tiny_pipeline("pixart")
    base = run("pixart", pipe)
    pipe.save_pretrained(tmp_path)
    fast = diffskip.DiffSkipPipeline.from_pretrained(str(tmp_path), policy="interval:every=3")
    fast.set_progress_bar_config(disable=True)
    assert type(fast.pipe).__name__ == "PixArtAlphaPipeline"
    never = diffskip.DiffSkipPipeline(fast.pipe, "never")
    assert (run("pixart", never) == base).all()
    run("pixart", fast)
    assert fast.last_stats.reused > 0


def test_attribute_writes_reach_the_wrapped_pipeline_and_policy_is_validated():
    from diffusers import DPMSolverMultistepScheduler

    pipe = tiny_pipeline("pixart")
    fast = diffskip.DiffSkipPipeline(pipe, "interval:every=2")
    fast.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert isinstance(pipe.scheduler, DPMSolverMultistepScheduler) and "scheduler" not in fast.__dict__
    fast.policy = "uniform:speedup=2"
    assert fast.policy == diffskip.Uniform(speedup=2) and "policy" not in pipe.__dict__
    with pytest.raises(diffskip.errors.PolicyError, match=r"head=9 \+ tail=0 exceeds the 4 units"):
        fast.policy = "interval:head=9"
    assert fast.policy == diffskip.Uniform(speedup=2)


def test_two_wrappers_of_one_pipeline_detach_independently():
    pipe = tiny_pipeline("pixart")
    base = run("pixart", pipe)
    a = diffskip.DiffSkipPipeline(pipe, "interval:every=2")
    b = diffskip.DiffSkipPipeline(pipe, "interval:every=3")
    ref_b = run("pixart", b)
    a.detach()
    assert (run("pixart", b) == ref_b).all() and b.last_stats.reused > 0
    b.detach()
    assert (run("pixart", pipe) == base).all() and "_diffskip_hooks" not in pipe.transformer.__dict__


def test_a_model_folders_default_steps_apply_when_a_call_names_none():
    from diffskip import assets
    from diffskip.cli.common import DEFAULT_STEPS
    from diffskip.loading import read_default_steps

    for name in ("fashion-sd", "fashion-pixart"):  # Python and the CLI agree on the embedded models
        assert read_default_steps(str(assets.path(name))) == DEFAULT_STEPS
    fast = diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("sd"), policy="never")
    fast.default_steps = 3
    fast("a red shoe", height=16, width=16, output_type="np")
    assert fast.last_stats.steps == 3
    fast("a red shoe", num_inference_steps=4, height=16, width=16, output_type="np")
    assert fast.last_stats.steps == 4
