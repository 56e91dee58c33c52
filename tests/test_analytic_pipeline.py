"""GaussianSkip inside DiffSkipPipeline on tiny offline pipelines: jumped start, remaining steps, composition."""
import copy

import diffusers as d
import pytest
import torch

import diffskip
from diffskip.analytic import GaussianSkip, GaussianStats, StatsShapeError, gaussian_jump
from diffskip.analytic.fit import calibrate, guided_trajectory
from diffskip.analytic.pipe import UnsupportedSkipError
from diffskip.analytic.frames import UnsupportedSchedulerError, frames
from diffskip.testing import tiny_pipeline

G = 2.0  # guidance scale: every test runs classifier-free guidance


@pytest.fixture(scope="module")
def stats():
    g = torch.Generator().manual_seed(0)
    return GaussianStats.from_latents(torch.randn(300, 4, 8, 8, generator=g) * 0.7 + 0.2, rank=16)


@pytest.fixture(scope="module")
def sd():
    return tiny_pipeline("sd")


def call(pipe, steps=6, seed=0, **kw):
    extra = {"max_sequence_length": 16} if "3" in type(getattr(pipe, "pipe", pipe)).__name__ else {}
    return pipe("a red shoe", num_inference_steps=steps, generator=torch.Generator().manual_seed(seed), height=16,
                width=16, guidance_scale=G, output_type="latent", **extra, **kw).images


def record_calls(model):
    calls = []

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        calls.append((x.detach().clone(), float(torch.as_tensor(t).flatten()[0])))

    return calls, model.register_forward_pre_hook(hook, with_kwargs=True)


def test_skip_none_and_zero_are_bit_identical(sd, stats):
    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    base = call(sd)
    for skip in (None, GaussianSkip(stats, 0)):
        fast = diffskip.DiffSkipPipeline(sd, skip=skip)
        assert torch.equal(call(fast), base) and fast.last_stats.skipped_steps == 0
        fast.detach()


CASES = [("sd", d.DDIMScheduler), ("sd", d.EulerDiscreteScheduler), ("sd", d.DPMSolverMultistepScheduler),
         ("sd", d.UniPCMultistepScheduler), ("sd3", d.FlowMatchEulerDiscreteScheduler)]


@pytest.mark.parametrize("kind,sched", CASES, ids=[c[1].__name__ for c in CASES])
def test_jump_hands_over_latents_and_remaining_steps(kind, sched, sd, stats):
    pipe = sd if kind == "sd" else tiny_pipeline(kind)
    pipe.scheduler = sched.from_config(pipe.scheduler.config)
    n, k = 6, 2
    base = call(pipe, n)
    model = getattr(pipe, "unet", None) or pipe.transformer
    calls, handle = record_calls(model)
    fast = diffskip.DiffSkipPipeline(pipe, skip=GaussianSkip(stats, k))
    out = call(fast, n)
    handle.remove()
    fr = frames(pipe.scheduler, n)
    assert len(calls) == n - k and fast.last_stats.steps == n - k and fast.last_stats.skipped_steps == k
    assert calls[0][1] == pytest.approx(float(fr.timesteps[k]), rel=1e-6)
    full = copy.deepcopy(pipe.scheduler)
    full.set_timesteps(n)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = noise * float(getattr(full, "init_noise_sigma", 1.0))  # FlowMatch has none
    want = gaussian_jump(stats, noise.double(), (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k])))
    want = want * fr.model_frame(k)[0]  # what scale_model_input hands the denoiser
    got = calls[0][0][:1].double()  # CFG batch: [uncond, cond] share the latents
    assert float((got - want).norm() / want.norm()) < 1e-5
    assert out.shape == base.shape and not torch.equal(out, base)
    assert "set_timesteps" not in pipe.scheduler.__dict__  # the instance wrapper is gone after the call
    assert torch.equal(call(pipe, n), base)  # and the wrapped pipeline runs its full schedule again
    fast.detach()


@pytest.mark.parametrize("sched", [d.DPMSolverMultistepScheduler, d.UniPCMultistepScheduler])
def test_multistep_history_starts_empty_at_the_jump(sched, sd, stats):
    sd.scheduler = sched.from_config(sd.scheduler.config)
    n, k = 8, 3
    out = call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, k)), n)
    # independent reference: diffusers' img2img way (full schedule, set_begin_index) from the same jumped latents
    s = copy.deepcopy(sd.scheduler)
    s.set_timesteps(n)
    fr = frames(sd.scheduler, n)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * float(s.init_noise_sigma)
    x = gaussian_jump(stats, noise.double(), (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k])))
    x = x.float()
    s.set_begin_index(k)
    pos, neg = sd.encode_prompt("a red shoe", "cpu", 1, True)
    emb = torch.cat([neg, pos])
    with torch.no_grad():
        for t in s.timesteps[k:]:
            e = sd.unet(s.scale_model_input(torch.cat([x, x]), t), t, encoder_hidden_states=emb).sample
            u, c = e.chunk(2)
            x = s.step(u + G * (c - u), t, x).prev_sample
    assert float((out - x).abs().max()) < 1e-4 * float(x.abs().max())


def test_skip_and_policy_compose_with_stats_reporting_both(sd, stats):
    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    fast = diffskip.DiffSkipPipeline(sd, "interval:every=2", skip=GaussianSkip(stats, 2))
    call(fast, 8)
    st = fast.last_stats
    assert st.skipped_steps == 2 and st.steps == 6 and st.reused > 0 and st.computed > 0
    assert st.to_dict()["skipped_steps"] == 2 and "skipped_steps=2" in str(st)
    assert "skip=gaussian:steps=2" in repr(fast)
    fast.detach()


def test_clear_errors(sd, stats):
    with pytest.raises(UnsupportedSkipError, match="DiTPipeline.*latents"):
        diffskip.DiffSkipPipeline(tiny_pipeline("dit"), skip=GaussianSkip(stats, 2))(class_labels=[1],
                                                                                    num_inference_steps=4)
    with pytest.raises(UnsupportedSkipError, match="StableDiffusionImg2ImgPipeline.*latents"):
        diffskip.DiffSkipPipeline(tiny_pipeline("sd-img2img"), skip=GaussianSkip(stats, 2))("a", image=None)
    small = GaussianStats.from_latents(torch.randn(50, 4, 4, 4), rank=4)
    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    with pytest.raises(StatsShapeError, match=r"\(4, 4, 4\)"):
        call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(small, 2)))
    with pytest.raises(ValueError, match="skip at most 5"):
        call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, 6)))
    sd.scheduler = d.HeunDiscreteScheduler.from_config(sd.scheduler.config)
    with pytest.raises(UnsupportedSchedulerError, match="HeunDiscreteScheduler"):
        call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, 2)))
    with pytest.raises(TypeError, match="GaussianSkip"):
        diffskip.DiffSkipPipeline(sd, skip="gaussian")
    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)


def test_calibration_compares_against_the_guided_prediction(sd, stats):
    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    n = 6
    traj = guided_trajectory(sd, ["a red shoe", "a bag"], n, guidance_scale=3.0, height=16, width=16)
    fr = frames(sd.scheduler, n)
    for i in range(n - 1):  # deterministic DDIM step with the recorded guided eps reproduces the next latents
        (x, eps), (x_next, _) = traj[i], traj[i + 1]
        x0 = (x - fr.s[i] * eps) / fr.a[i]
        assert torch.allclose(fr.a[i + 1] * x0 + fr.s[i + 1] * eps, x_next, atol=1e-4)
    cal1 = calibrate(sd, stats, ["a red shoe", "a bag"], n, 1.0, threshold=0.5, height=16, width=16)
    cal3 = calibrate(sd, stats, ["a red shoe", "a bag"], n, 3.0, threshold=0.5, height=16, width=16)
    unc = calibrate(sd, stats, ["a red shoe", "a bag"], n, 3.0, threshold=0.5, branch="uncond", height=16, width=16)
    assert len(cal3.explained_variance) == n and cal3.explained_variance != cal1.explained_variance
    assert unc.explained_variance != cal3.explained_variance and unc.trajectory_ev == cal3.trajectory_ev
    assert cal3.trajectory_ev[0] == pytest.approx(1.0)  # a jump of zero steps is the identity
    assert 0 <= cal3.steps < n and cal3.skip(stats).steps == cal3.steps
    with pytest.raises(ValueError, match="branch"):
        calibrate(sd, stats, ["a"], n, 3.0, branch="negative", height=16, width=16)


def test_fit_from_samples_uses_the_pipelines_final_latents(sd):
    from diffskip.analytic.fit import fit_from_samples

    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    prompts = ["a red shoe", "a bag", "a coat", "a dress"]
    st = fit_from_samples(sd, prompts, rank=3, steps=3, batch_size=2, guidance_scale=G, height=16, width=16)
    lat = torch.cat([sd(prompts[i:i + 2], num_inference_steps=3, generator=torch.Generator().manual_seed(i),
                        guidance_scale=G, height=16, width=16, output_type="latent").images for i in (0, 2)])
    assert st.meta["source"] == "samples" and st.meta["n_samples"] == 4 and st.rank == 3
    assert torch.allclose(st.mean, lat.double().flatten(1).mean(0), atol=1e-6)


def test_conditional_jump_reads_the_guided_step_zero_prediction_then_jumps(sd, stats):
    from diffskip.analytic import conditional_mean
    from diffskip.analytic.frames import to_x0

    sd.scheduler = d.DDIMScheduler.from_config(sd.scheduler.config)
    n, k = 8, 3
    calls, handle = record_calls(sd.unet)
    fast = diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, k, conditional=True))
    out = call(fast, n)
    handle.remove()
    fr = frames(sd.scheduler, n)
    assert [c[1] for c in calls] == pytest.approx([float(fr.timesteps[0])] + [float(t) for t in fr.timesteps[k:]])
    assert fast.last_stats.skipped_steps == k - 1 and fast.last_stats.steps == n - k + 1
    assert "step" not in sd.scheduler.__dict__ and "set_timesteps" not in sd.scheduler.__dict__
    # independent reference: the guided prediction at step 0 -> per-sample mean -> closed-form jump -> DDIM tail
    s = copy.deepcopy(sd.scheduler)
    s.set_timesteps(n)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pos, neg = sd.encode_prompt("a red shoe", "cpu", 1, True)
    emb = torch.cat([neg, pos])

    def guided(x, t):
        u, c = sd.unet(torch.cat([x, x]), t, encoder_hidden_states=emb).sample.chunk(2)
        return u + G * (c - u)

    with torch.no_grad():
        src, dst = (float(fr.a[0]), float(fr.s[0])), (float(fr.a[k]), float(fr.s[k]))
        x0 = to_x0(guided(x, s.timesteps[0]).double(), x.double(), *src, "epsilon")
        mean = conditional_mean(stats, x0, x.double(), src)
        x = gaussian_jump(stats, x.double(), src, dst, mean=mean).float()
        for t in s.timesteps[k:]:
            x = s.step(guided(x, t), t, x).prev_sample
    assert float((out - x).abs().max()) < 1e-4 * float(x.abs().max())
    plain = call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, k)), n)
    assert not torch.allclose(out, plain)  # the mean it read is not the fitted one
    with pytest.raises(ValueError, match="skip at most 7"):
        call(diffskip.DiffSkipPipeline(sd, skip=GaussianSkip(stats, 8, conditional=True)), n)
    fast.detach()
