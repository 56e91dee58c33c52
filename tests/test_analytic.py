"""Gaussian closed-form jump vs a fine numerical probability-flow ODE solve; statistics fit, save and load."""
import math

import pytest
import torch

from diffskip.analytic import GaussianSkip, GaussianStats, gaussian_jump, gaussian_x0
from diffskip.analytic.fit import Calibration, fit_from_images
from diffskip.analytic.frames import from_x0, to_x0


def stats(d=12, r=4, residual=0.03, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    lam = torch.tensor([4.0, 1.5, 0.6, 0.2], dtype=torch.float64)[:r]
    return GaussianStats(torch.randn(d, generator=g, dtype=torch.float64), q[:, :r], lam, residual, (3, 2, 2))


def vp(t):  # continuous VP (linear beta 0.1 -> 20): (a, s, da/dt, ds/dt)
    b0, b1 = 0.1, 20.0
    a = math.exp(-0.5 * (b0 * t + 0.5 * (b1 - b0) * t * t))
    da = -0.5 * (b0 + (b1 - b0) * t) * a
    s = math.sqrt(1 - a * a)
    return a, s, da, -a * da / s


FAMILIES = {  # name: (frame and derivatives at time u, u_start, u_end, prediction type)
    "vp-eps": (vp, 1.0, 0.25, "epsilon"),
    "vp-v": (vp, 1.0, 0.25, "v_prediction"),
    "flow": (lambda u: (1 - u, u, -1.0, 1.0), 1.0, 0.3, "flow"),
    # EDM / VE in log-sigma time u: sigma = exp(u), from sigma 80 to 0.5
    "edm": (lambda u: (1.0, math.exp(u), 0.0, math.exp(u)), math.log(80.0), math.log(0.5), "sample"),
}


def ode_solve(st, x, frame, u0, u1, ptype, n=400):  # RK4 error here: < 1e-9 relative
    """RK4 on the DDIM form dx/du = a'(u) x0_hat + s'(u) eps_hat, x0_hat read from the prediction."""

    def f(u, x):
        a, s, da, ds = frame(u)
        pred = from_x0(gaussian_x0(st, x, (a, s)), x, a, s, ptype)  # the exact Gaussian model's output
        x0 = to_x0(pred, x, a, s, ptype)
        return da * x0 + ds * (x - a * x0) / s

    h = (u1 - u0) / n
    for i in range(n):
        u = u0 + i * h
        k1 = f(u, x)
        k2 = f(u + h / 2, x + h / 2 * k1)
        k3 = f(u + h / 2, x + h / 2 * k2)
        k4 = f(u + h, x + h * k3)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_jump_equals_numerical_ode_solve(name):
    frame, u0, u1, ptype = FAMILIES[name]
    st = stats()
    a0, s0 = frame(u0)[:2]
    x = torch.randn(3, 3, 2, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * s0
    x = x + a0 * st.mean.reshape(3, 2, 2)
    ref = ode_solve(st, x, frame, u0, u1, ptype)
    jump = gaussian_jump(st, x, frame(u0)[:2], frame(u1)[:2])
    rel = float((jump - ref).norm() / ref.norm())
    assert rel < 1e-6, (name, rel)
    assert float((jump - x).norm() / x.norm()) > 0.1  # the jump moves the latents


def test_jump_maps_marginal_covariance():
    st = stats(d=12, r=4, residual=0.05)
    n, src, dst = 200_000, (0.1, 0.99), (0.8, 0.6)
    g = torch.Generator().manual_seed(0)
    x0 = st.mean + (torch.randn(n, 4, generator=g, dtype=torch.float64) * st.eigvals.sqrt()) @ st.eigvecs.T
    x0 = x0 + 0.05**0.5 * (torch.randn(n, 12, generator=g, dtype=torch.float64) @ (torch.eye(12, dtype=torch.float64)
                                                                                      - st.eigvecs @ st.eigvecs.T))
    xt = src[0] * x0 + src[1] * torch.randn(n, 12, generator=g, dtype=torch.float64)
    out = gaussian_jump(st, xt.reshape(n, 3, 2, 2), src, dst).reshape(n, 12)
    want = dst[0] ** 2 * (st.eigvecs * st.eigvals) @ st.eigvecs.T + dst[0] ** 2 * 0.05 * (
        torch.eye(12, dtype=torch.float64) - st.eigvecs @ st.eigvecs.T) + dst[1] ** 2 * torch.eye(12)
    assert float((torch.cov(out.T) - want).abs().max()) < 0.03
    assert float((out.mean(0) - dst[0] * st.mean).abs().max()) < 0.01


def test_fit_recovers_low_rank_plus_residual_and_round_trips(tmp_path):
    st = stats(d=12, r=4, residual=0.02)
    g = torch.Generator().manual_seed(0)
    n = 100_000
    x = st.mean + (torch.randn(n, 4, generator=g, dtype=torch.float64) * st.eigvals.sqrt()) @ st.eigvecs.T
    x = x + 0.02**0.5 * (torch.randn(n, 12, generator=g, dtype=torch.float64) @ (torch.eye(12, dtype=torch.float64)
                                                                                 - st.eigvecs @ st.eigvecs.T))
    fit = GaussianStats.from_latents(x.reshape(n, 3, 2, 2), rank=4, meta={"source": "synthetic"})
    assert torch.allclose(fit.eigvals, st.eigvals, rtol=0.03)
    assert abs(fit.residual - 0.02) < 1e-3 and fit.shape == (3, 2, 2) and fit.meta["n_samples"] == n
    assert float((fit.eigvecs.T @ st.eigvecs).abs().diagonal().min()) > 0.99
    fit.save(tmp_path / "g")
    back = GaussianStats.load(tmp_path / "g.safetensors")
    assert back.shape == fit.shape and back.residual == fit.residual and back.meta == fit.meta
    assert back.mean.dtype == torch.float64 and torch.allclose(back.eigvecs, fit.eigvecs, atol=1e-6)
    assert GaussianSkip(tmp_path / "g", 3).stats.rank == 4


def test_invalid_stats_and_skip_raise():
    st = stats()
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        GaussianSkip(st, -1)
    with pytest.raises(ValueError, match="inconsistent"):
        GaussianStats(st.mean[:5], st.eigvecs, st.eigvals, 0.0, (3, 2, 2))
    with pytest.raises(ValueError, match="shape"):
        gaussian_jump(st, torch.zeros(1, 3, 4, 4), (0.1, 1.0), (0.5, 0.5))


def test_calibration_picks_deepest_step_above_threshold():
    ts, ev = [999.0, 800.0, 600.0, 400.0, 200.0], [0.99, 0.97, 0.95, 0.6, 0.99]
    cal = Calibration(ts, ev, 0.95, criterion="prediction")
    assert cal.steps == 3  # steps 0-2 agree; the later recovery at step 4 does not count
    assert Calibration(ts, ev, 0.999, criterion="prediction").steps == 0
    assert Calibration(ts, [1.0] * 5, 0.5, criterion="prediction").steps == 4  # the last step stays with the model
    traj = [1.0, 0.99, 0.96, 0.9, 0.97]
    assert Calibration(ts, ev, 0.95, traj).steps == 2  # land on the deepest step before the first miss
    assert Calibration(ts, ev, None, traj).threshold == 0.93 and Calibration(ts, ev, 0.999, traj).steps == 0
    with pytest.raises(ValueError, match="criterion"):
        Calibration(ts, ev, 0.9, traj, criterion="fid")
    with pytest.raises(ValueError, match="trajectory_ev"):
        Calibration(ts, ev, 0.9)


def test_fit_from_images_uses_scaled_posterior_samples():
    from types import SimpleNamespace

    from diffskip.testing import tiny_vae

    torch.manual_seed(0)
    vae = tiny_vae()
    images = torch.randint(0, 256, (200, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    st = fit_from_images(SimpleNamespace(vae=vae), images, rank=256)
    with torch.no_grad():
        post = vae.encode(images.float() / 127.5 - 1).latent_dist
    k = vae.config.scaling_factor
    mean, var = post.mean.double().flatten(1) * k, (post.std.double().flatten(1) * k) ** 2
    total = float(mean.var(0).sum() + var.mean(0).sum())  # law of total variance: posterior samples, not means
    assert st.shape == (4, 8, 8) and st.meta["scaling_factor"] == k and st.residual == 0.0
    assert abs(float(st.eigvals.sum()) / total - 1) < 0.05
    assert float((st.mean - mean.mean(0)).abs().max()) < 5 * float(var.mean().sqrt()) / 200**0.5


def test_fit_gaussian_command_on_an_image_folder(tmp_path, capsys):
    from PIL import Image

    from diffskip.cli import main
    from diffskip.testing import tiny_pipeline

    tiny_pipeline("sd").save_pretrained(tmp_path / "pipe")
    (tmp_path / "imgs").mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        arr = torch.randint(0, 256, (16, 16, 3), dtype=torch.uint8, generator=g).numpy()
        Image.fromarray(arr).save(tmp_path / "imgs" / f"{i}.png")
    main(["fit-gaussian", "--model", str(tmp_path / "pipe"), "--images", str(tmp_path / "imgs"), "--rank", "4",
          "--out", str(tmp_path / "g")])
    st = GaussianStats.load(tmp_path / "g")
    assert st.rank == 4 and st.shape == (4, 8, 8) and st.meta["n_samples"] == 12 and st.meta["source"] == "images"
    assert "fitted 12 latents (4, 8, 8) rank 4" in capsys.readouterr().out
    again = ["fit-gaussian", "--model", str(tmp_path / "pipe"), "--images", str(tmp_path / "imgs"), "--rank", "2",
             "--out", str(tmp_path / "g")]
    with pytest.raises(SystemExit) as exit_:
        main(again)  # nothing is overwritten by default
    assert exit_.value.code == 2 and "exists; allowed: a new path, or --overwrite" in capsys.readouterr().err
    assert GaussianStats.load(tmp_path / "g").rank == 4
    assert main(again + ["--overwrite"]) == 0 and GaussianStats.load(tmp_path / "g").rank == 2
