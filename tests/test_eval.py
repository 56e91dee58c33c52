"""Evaluation metrics against closed forms: FID/KID, PSNR/SSIM/latent difference, FLOP counting, errors."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from diffskip.metrics import make_fid
from diffskip.metrics.clipscore import clip_loader
from diffskip.metrics.compute import DenoiserMeter, PeakMemory, time_calls
from diffskip.metrics.fid import InceptionFeatures, make_kid
from diffskip.metrics.fidelity import latent_mad, mean_psnr, psnr, ssim
from diffskip.metrics.reference import content_hash, fid_against, reference_stats


class Lookup(nn.Module):
    """Feature 'network' returning table[i] for an image whose first two pixels encode i: exact features in."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.register_buffer("table", table.double())
        self.num_features = table.shape[1]

    def forward(self, images):
        idx = images[:, 0, 0, 0].long() * 256 + images[:, 0, 0, 1].long()
        return self.table[idx]


def encode(idx: torch.Tensor) -> torch.Tensor:
    img = torch.zeros(len(idx), 3, 4, 4, dtype=torch.uint8)
    img[:, 0, 0, 0], img[:, 0, 0, 1] = (idx // 256).to(torch.uint8), (idx % 256).to(torch.uint8)
    return img


def _sqrtm_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(mu1, s1, mu2, s2) -> float:
    """||mu1 - mu2||^2 + tr(s1 + s2 - 2 (s1 s2)^1/2), with tr (s1 s2)^1/2 = tr (s1^1/2 s2 s1^1/2)^1/2."""
    r = _sqrtm_psd(s1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(_sqrtm_psd(r @ s2 @ r)))


def gaussian_sets(n=3000, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    a1, a2 = torch.randn(d, d, generator=g), torch.randn(d, d, generator=g)
    mu1, mu2 = torch.zeros(d), torch.tensor([1.0, -0.5, 2.0])[:d]
    s1, s2 = a1 @ a1.T + 0.5 * torch.eye(d), a2 @ a2.T + 0.5 * torch.eye(d)
    x1 = torch.distributions.MultivariateNormal(mu1, s1).sample((n,))
    x2 = torch.distributions.MultivariateNormal(mu2, s2).sample((n,))
    return x1, x2, (mu1, s1, mu2, s2)


def test_fid_of_a_set_with_itself_is_zero():
    x1, _, _ = gaussian_sets()
    feats = Lookup(x1)
    fid = make_fid(feats)
    imgs = encode(torch.arange(len(x1)))
    fid.update(imgs, real=True)
    fid.update(imgs, real=False)
    assert abs(fid.compute().item()) < 1e-6


def test_fid_of_two_gaussians_equals_the_frechet_formula():
    torch.manual_seed(0)
    x1, x2, (mu1, s1, mu2, s2) = gaussian_sets()
    feats = Lookup(torch.cat([x1, x2]))
    fid = make_fid(feats)
    fid.update(encode(torch.arange(len(x1))), real=True)
    fid.update(encode(torch.arange(len(x1), 2 * len(x1))), real=False)
    got = fid.compute().item()
    # exact against the formula on the sample moments, close to the formula on the true parameters
    sample = frechet(x1.double().mean(0).numpy(), np.cov(x1.double().numpy().T),
                     x2.double().mean(0).numpy(), np.cov(x2.double().numpy().T))
    truth = frechet(mu1.double().numpy(), s1.double().numpy(), mu2.double().numpy(), s2.double().numpy())
    assert got == pytest.approx(sample, rel=1e-6)
    assert got == pytest.approx(truth, rel=0.05)


def test_cached_reference_statistics_reload_and_match_in_memory_fid(tmp_path):
    x1, x2, _ = gaussian_sets(n=500)
    feats = Lookup(torch.cat([x1, x2]))
    real, fake = encode(torch.arange(500)), encode(torch.arange(500, 1000))
    ref = reference_stats(feats, real, tmp_path, "toy")
    files = sorted(p.name for p in tmp_path.iterdir())
    again = reference_stats(feats, real, tmp_path, "toy")
    assert again["key"] == ref["key"] and sorted(p.name for p in tmp_path.iterdir()) == files
    assert torch.allclose(again["sigma"], ref["sigma"], atol=0, rtol=0)
    fid = fid_against(feats, again)
    fid.update(fake, real=False)
    full = make_fid(feats)
    full.update(real, real=True)
    full.update(fake, real=False)
    assert fid.compute().item() == pytest.approx(full.compute().item(), rel=1e-9)
    assert reference_stats(feats, real[:400], tmp_path, "toy")["key"] != ref["key"]  # new data, new key
    assert content_hash(real) != content_hash(real[:400])


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    x1, x2, _ = gaussian_sets(n=400)
    feats = Lookup(torch.cat([x1, x2]))
    same, other = make_kid(feats, subset_size=100), make_kid(feats, subset_size=100)
    real = encode(torch.arange(200))
    same.update(real, real=True)
    same.update(encode(torch.arange(200, 400)), real=False)
    other.update(real, real=True)
    other.update(encode(torch.arange(400, 600)), real=False)
    kid_same, kid_other = same.compute()[0].item(), other.compute()[0].item()
    assert abs(kid_same) < 0.05 * kid_other and kid_other > 0.5


def test_psnr_of_known_noise_ssim_and_latent_difference():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(20, 230, (4, 3, 16, 16), generator=g, dtype=torch.uint8)
    sign = torch.randint(0, 2, a.shape, generator=g) * 2 - 1
    b = (a.int() + 5 * sign).to(torch.uint8)  # |error| = 5 everywhere: MSE = 25
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    assert mean_psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 25), abs=1e-9)
    assert mean_psnr(a, a) == 100.0 and psnr(a, a) == float("inf")
    c = (a.int() + 20 * sign).to(torch.uint8)  # 4x the error: lower SSIM
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-9) and ssim(a, c) < ssim(a, b) < 0.999
    assert latent_mad(a.float(), a.float() + 0.25) == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"paired batches of one shape, got \(4, 3, 16, 16\) and \(3, 3, 16, 16\)"):
        ssim(a, b[:3])


def test_denoiser_meter_counts_flops_calls_and_restores():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    meter = DenoiserMeter(model, count_flops=True)
    model(torch.randn(3, 8))
    model(torch.randn(5, 8))
    assert meter.calls == 2 and meter.flops == 2 * (3 + 5) * (8 * 16 + 16 * 4)
    meter.close()
    model(torch.randn(3, 8))
    assert meter.calls == 2 and not model._forward_hooks and not model._forward_pre_hooks
    timing = time_calls(lambda: model(torch.randn(2, 8)), DenoiserMeter(model), repeats=3)
    assert timing["repeats"] == 3 and timing["seconds"] > 0 and timing["denoiser_seconds"] > 0
    with pytest.raises(ValueError, match="repeats=0"):
        time_calls(lambda: None, meter, repeats=0)


def test_peak_memory_sees_a_large_allocation():
    import time

    with PeakMemory() as mem:
        x = torch.ones(64 * 2**20 // 4)  # 64 MiB
        time.sleep(0.05)
        del x
    assert mem.peak_bytes >= 48 * 2**20


def test_missing_feature_network_and_clip_folder_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"FID Inception weights not found at {tmp_path / 'x.pt'}"):
        InceptionFeatures(tmp_path / "x.pt")
    with pytest.raises(FileNotFoundError, match=f"no CLIP model at {tmp_path}"):
        clip_loader(tmp_path)
    clip_loader("openai/clip-vit-base-patch32")  # a hub id is accepted (loaded lazily, where reachable)


def test_eval_command_on_png_folders(tmp_path, capsys):
    import json

    from PIL import Image

    from diffskip.cli import main

    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(20, 230, (4, 32, 32, 3), generator=g, dtype=torch.uint8)
    for name, batch in (("fast", imgs + 5), ("exact", imgs), ("real", imgs.flip(0))):
        (tmp_path / name).mkdir()
        for i, im in enumerate(batch):
            Image.fromarray(im.numpy()).save(tmp_path / name / f"{i:06d}.png")
    (tmp_path / "p.txt").write_text("a coat\na bag\na shirt\na dress\n")
    main(["eval", str(tmp_path / "fast"), "--reference", str(tmp_path / "real"), "--baseline", str(tmp_path / "exact"),
          "--prompts", str(tmp_path / "p.txt"), "--kid", "--cache", str(tmp_path / "cache"),
          "--json", str(tmp_path / "m.json")])
    res = json.loads((tmp_path / "m.json").read_text())
    assert res["n"] == 4 and res["psnr"] == pytest.approx(10 * math.log10(255**2 / 25))
    assert res["fd"] > 0 and "kid" in res and 0 < res["clip"] <= 100
    assert "psnr 34.1514" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        (tmp_path / "fast" / "000003.png").unlink()
        main(["eval", str(tmp_path / "fast"), "--prompts", str(tmp_path / "p.txt")])
    assert exit_.value.code == 2 and "has 4 prompts for 3 images" in capsys.readouterr().err
