"""Issue #21 item 1 and 4: `skip.start(x, scheduler)` in a user's own loop, jumps in `diffskip.tune`, `res.apply`,
and the prompt-aware (conditional) jump."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, \
    FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

import diffskip
from diffskip.analytic import GaussianSkip, GaussianStats, conditional_mean, gaussian_jump, gaussian_x0
from diffskip.analytic.frames import frames_now, from_x0, prediction_type
from diffskip.errors import DiffSkipError
from diffskip.metrics.fidelity import mean_psnr
from test_adapters import TOY, ToyNet

SHAPE = (2, 3, 4)  # latents (C, H, W) of the toy Gaussian world


def _stats(seed: int = 0) -> GaussianStats:
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(64, 24, generator=g, dtype=torch.float64) * torch.linspace(1.0, 0.1, 24, dtype=torch.float64)
    data = basis + 0.5 * torch.randn(24, generator=g, dtype=torch.float64)
    return GaussianStats.from_latents(data.reshape(64, *SHAPE), rank=6)


SCHEDULERS = {
    "ddim": lambda: DDIMScheduler(clip_sample=False),
    "dpm++": lambda: DPMSolverMultistepScheduler(algorithm_type="dpmsolver++", solver_order=2),
    "euler": lambda: EulerDiscreteScheduler(),
    "flow": lambda: FlowMatchEulerDiscreteScheduler(),
    "flow-shifted": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "unipc": lambda: UniPCMultistepScheduler(),
}


def _gaussian_model(stats: GaussianStats, scheduler):
    """The exact denoiser of the Gaussian data, in the scheduler's parameterisation."""
    def model(x_in: torch.Tensor, t) -> torch.Tensor:
        fr = frames_now(scheduler)
        i = int((fr.timesteps - float(t)).abs().argmin())
        c, a, s = fr.model_frame(i)
        x0 = gaussian_x0(stats, x_in.double() / c, (a / c, s / c))
        return from_x0(x0, x_in.double(), a, s, prediction_type(scheduler)).float()
    return model


def _sigma0(scheduler) -> float:
    return float(getattr(scheduler, "init_noise_sigma", 1.0))


def _loop(scheduler, model, n: int, skip=None) -> torch.Tensor:
    """The user's loop of the issue, changed by one line (`skip.start`)."""
    scheduler.set_timesteps(n)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0)) * _sigma0(scheduler)
    timesteps = scheduler.timesteps
    if skip is not None:
        x, timesteps = skip.start(x, scheduler)
    scale = getattr(scheduler, "scale_model_input", lambda x, t: x)  # flow matching scales nothing
    for t in timesteps:
        x = scheduler.step(model(scale(x, t), t), t, x).prev_sample
    return x


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_start_with_zero_steps_is_the_plain_run_and_a_jump_lands_on_the_tail(name):
    stats = _stats()
    sched = SCHEDULERS[name]()
    model = _gaussian_model(stats, sched)
    plain = _loop(sched, model, 20)
    assert torch.equal(_loop(sched, model, 20, GaussianSkip(stats, 0)), plain)
    sched.set_timesteps(20)
    full_ts, fr = sched.timesteps.clone(), frames_now(sched)
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(0)) * _sigma0(sched)
    jumped, ts = GaussianSkip(stats, 6).start(x, sched)
    assert torch.equal(ts, full_ts[6:]) and len(sched.timesteps) == 14
    want = gaussian_jump(stats, x.double(), (float(fr.a[0]), float(fr.s[0])), (float(fr.a[6]), float(fr.s[6])))
    assert torch.allclose(jumped.double(), want, atol=1e-5)
    # on Gaussian data the exact jump replaces steps the solver would take: the result stays close to the plain run
    out = _loop(sched, model, 20, GaussianSkip(stats, 6))
    assert mean_psnr(out, plain, peak=float(plain.max() - plain.min())) > 25


def test_start_refuses_a_scheduler_that_is_not_fresh_or_too_short():
    stats, sched = _stats(), DDIMScheduler()
    x = torch.randn(1, *SHAPE)
    with pytest.raises(ValueError, match="call scheduler.set_timesteps"):
        GaussianSkip(stats, 2).start(x, DDIMScheduler())
    sched.set_timesteps(4)
    with pytest.raises(ValueError, match="skip at most 3"):
        GaussianSkip(stats, 4).start(x, sched)
    dpm = DPMSolverMultistepScheduler()
    dpm.set_timesteps(4)
    dpm.step(torch.zeros_like(x), dpm.timesteps[0], x)
    with pytest.raises(ValueError, match="already took a step"):
        GaussianSkip(stats, 2).start(x, dpm)


def test_conditional_mean_recovers_the_mean_behind_a_gaussian_prediction():
    stats = _stats()
    x = torch.randn(5, *SHAPE, dtype=torch.float64)
    shifted = torch.randn(5, 24, dtype=torch.float64)  # each sample its own "prompt" mean
    for frame in ((0.07, 0.99), (0.6, 0.8), (0.95, 0.3)):
        x0 = torch.stack([gaussian_x0(GaussianStats(m, stats.eigvecs, stats.eigvals, stats.residual, SHAPE),
                                      x[i:i + 1], frame)[0] for i, m in enumerate(shifted)])
        assert torch.allclose(conditional_mean(stats, x0, x, frame), shifted, atol=1e-8)


@pytest.mark.parametrize("name", ["ddim", "dpm++", "euler", "flow", "unipc"])
def test_conditional_jump_runs_step_zero_then_jumps_with_the_mean_it_read(name):
    stats = _stats()
    sched = SCHEDULERS[name]()
    calls = []
    exact = _gaussian_model(stats, sched)

    def model(x, t):
        calls.append(float(t))
        return exact(x, t)

    sched.set_timesteps(12)
    full_ts = sched.timesteps.clone()
    out = _loop(sched, model, 12, GaussianSkip(stats, 5, conditional=True))
    assert calls == [float(full_ts[0])] + [float(t) for t in full_ts[5:]]  # step 0, then the tail
    assert "step" not in sched.__dict__  # the one-shot jump removed itself
    # with the exact Gaussian model the conditional mean is the fitted one: the same as the plain jump
    assert torch.allclose(out, _loop(sched, exact, 12, GaussianSkip(stats, 5)), atol=1e-4)
    assert GaussianSkip(stats, 5, conditional=True).saved_calls == 4 and GaussianSkip(stats, 5).saved_calls == 5
    with pytest.raises(ValueError, match="conditional=1"):
        GaussianSkip(stats, 5, conditional=1)


def _toy_loop(net, seed: int = 0, with_skip: bool = True):
    sched = DDIMScheduler()

    def run(num_steps, skip=None):
        sched.set_timesteps(num_steps)
        x = torch.randn(3, 3, 8, generator=torch.Generator().manual_seed(seed))
        timesteps = sched.timesteps
        if skip is not None:
            x, timesteps = skip.start(x, sched)
        with torch.no_grad():
            for t in timesteps:
                x = sched.step(net(x, float(t)), t, x).prev_sample
        return x
    if not with_skip:
        return lambda num_steps: run(num_steps)
    return run


def test_tune_with_stats_tries_jumps_in_both_forms_and_apply_runs_the_pick():
    torch.manual_seed(0)
    net = diffskip.attach(ToyNet(depth=5), TOY)
    data = torch.randn(40, 3, 8) * 0.3
    stats = GaussianStats.from_latents(data, rank=4)
    res = diffskip.tune(net, _toy_loop(net), budget=0.35, full_steps=20, stats=stats, validate=_toy_loop(net, 1))
    jumps = [t for t in res.table if t.skip]
    assert {t.conditional for t in jumps} == {False, True}
    assert any(t.policy == "never" for t in jumps) and any(t.policy != "never" for t in jumps)
    assert all(t.flops <= 0.35 + 1e-9 for t in jumps if t.policy == "never" and not t.conditional)
    assert res.flops <= 0.35 + 1e-9 and isinstance(res.skip, int) and set(res.heldout) >= {"margin_db"}
    for t in [res.trial(), *jumps[:3]]:  # apply == the loop run by hand in a session with the jump
        res.policy, res.num_steps, res.skip, res.conditional = t.policy, t.num_steps, t.skip, t.conditional
        skip = GaussianSkip(stats, t.skip, t.conditional) if t.skip else None
        with diffskip.session(net, t.policy, num_steps=t.num_steps - (skip.saved_calls if skip else 0)):
            want = _toy_loop(net)(t.num_steps, skip)
        assert torch.equal(res.apply(_toy_loop(net)), want)
    diffskip.detach(net)


def test_tune_refuses_loops_that_cannot_jump_and_apply_without_a_model():
    net = diffskip.attach(ToyNet(depth=4), TOY)
    stats = GaussianStats.from_latents(torch.randn(20, 3, 8), rank=2)
    with pytest.raises(DiffSkipError, match="takes no `skip` argument"):
        diffskip.tune(net, _toy_loop(net, with_skip=False), budget=0.5, full_steps=8, stats=stats)
    with pytest.raises(DiffSkipError, match="needs Gaussian statistics"):
        diffskip.tune(net, _toy_loop(net), budget=0.5, full_steps=8, jumps=True)
    res = diffskip.tune(net, _toy_loop(net, with_skip=False), budget=0.5, full_steps=8)  # no stats: no jumps
    assert all(t.skip == 0 for t in res.table)
    assert res.apply(_toy_loop(net, with_skip=False)).shape == (3, 3, 8)
    diffskip.detach(net)
    with pytest.raises(DiffSkipError, match="not made by diffskip.tune"):
        diffskip.tuning.TuneResult("never", 4, 0.5, 30.0, 0.5, 8).apply(_toy_loop(net))


def test_the_documented_own_loop_sample_runs_and_its_pick_fits_the_budget(capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "samples" / "tune_own_loop.py"
    spec = importlib.util.spec_from_file_location("tune_own_loop", path)
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    res = sample.main(["--steps", "8", "--budget", "0.5"])
    assert res.flops <= 0.5 + 1e-9 and any(t.skip for t in res.table)
    assert "pick: " in capsys.readouterr().out
