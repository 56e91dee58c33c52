"""Benchmark harness: method specs, peers through their own APIs, the resumable runner and its report."""
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import bench as bench_mod
from benchmarks.bench import BenchConfig, run_bench
from benchmarks.bench_report import derive, dominance
from benchmarks.fashion import load_pipeline
from benchmarks.peers import MethodError, apply_method, denoiser, parse_method
from diffskip.metrics.compute import DenoiserMeter
from diffskip.assets import path as asset_path
from diffskip.metrics.reference import reference_stats
from benchmarks.suite import write_report

SD = asset_path("fashion-sd")
PROMPTS = ["a photo of a coat", "a sandal, catalogue image", "a dress, studio photo", "a bag on white"]


class TinyFeatures(nn.Module):
    """Stand-in feature network: pooled random convolution features of uint8 images."""

    num_features = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.conv(x.float() / 255).mean((2, 3)).double()


def test_method_specs_parse_and_reject_unknowns():
    assert parse_method("diffskip/interval:every=3") == ("diffskip", {"policy": "interval:every=3"})
    assert parse_method("cachedit/threshold=0.1,taylor=1") == ("cachedit", {"threshold": "0.1", "taylor": "1"})
    with pytest.raises(MethodError, match=r"unknown method family 'teacache'.*known: \['cachedit'"):
        parse_method("teacache/threshold=0.1")
    with pytest.raises(MethodError,
                       match=r"unknown key\(s\) \['every'\] for deepcache; allowed: \['branch', 'interval'\]"):
        parse_method("deepcache/every=3")
    with pytest.raises(ValueError, match="methods must start with 'none'"):
        BenchConfig(pipeline="x", steps=4, methods=["diffskip/never"])


def _images_and_flops(spec: str, steps: int = 6):
    pipe = load_pipeline(SD)
    run = apply_method(pipe, spec, steps)
    meter = DenoiserMeter(denoiser(pipe), count_flops=True)
    out = run(PROMPTS[:2], num_inference_steps=steps, guidance_scale=4.0, generator=torch.Generator().manual_seed(0),
              output_type="pt")
    return out.images, meter.flops, meter.calls


def test_diffskip_interval_reproduces_deepcache_exactly_on_the_unet():
    """Layer-granular UNet units with the shallowest live path equal DeepCache's branch 0, image for image
    (with final=0: DeepCache does not compute the last step)."""
    ours, ours_flops, calls = _images_and_flops("diffskip/interval:every=3,forecast=0,final=0")
    theirs, their_flops, _ = _images_and_flops("deepcache/interval=3")
    base, base_flops, _ = _images_and_flops("none")
    assert calls == 6 and torch.equal(ours, theirs) and ours_flops == their_flops
    assert 0.3 < ours_flops / base_flops < 0.8 and not torch.equal(ours, base)


def test_runner_records_refusals_resumes_and_reports(tmp_path, monkeypatch):
    feats = TinyFeatures()
    real = torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ref = reference_stats(feats, real, tmp_path / "cache", "toy")
    from diffskip.plan_files import save_plan
    from diffskip.tuning import TuneResult

    plan = save_plan(TuneResult("interval:every=2", 2, 0.5, 30.0, 0.5, 4), tmp_path / "plan.json",
                     denoiser(load_pipeline(SD)))
    methods = ["none", "none/seeds=1", "diffskip/interval:every=2,forecast=0,final=0", "deepcache/interval=2",
               "fbc/threshold=0.05", "steps/n=2", f"plan/path={plan}", "steps/n=9"]
    cfg = BenchConfig(pipeline="fashion-sd", steps=4, methods=methods, n=4, batch=2, timing_batch=2, repeats=1)
    res = run_bench(cfg, lambda: load_pipeline(SD), PROMPTS, feats, ref, tmp_path / "run")
    pts = res["points"]
    assert pts["steps/n=9"] == {"error": "MethodError: steps/n=9: allowed 1 <= n <= the benchmark's 4 steps"}
    fbc = pts["fbc/threshold=0.05"]  # diffusers 0.42's FirstBlockCache refuses UNets (IndexError); a fix may run it
    assert ("error" in fbc) != ("psnr" in fbc)
    assert pts["none"]["psnr"] == 100.0 and pts["none"]["denoiser_calls"] == 8  # 2 batches x 4 steps (CFG batched)
    assert pts["none"]["latent_mad"] == 0.0 and pts["diffskip/interval:every=2,forecast=0,final=0"]["latent_mad"] > 0
    rows = derive(pts)
    assert rows["diffskip/interval:every=2,forecast=0,final=0"]["flops_fraction"] == pytest.approx(
        rows["deepcache/interval=2"]["flops_fraction"]) and rows["deepcache/interval=2"]["flops_fraction"] < 0.9
    ours = pts["diffskip/interval:every=2,forecast=0,final=0"]
    assert (tmp_path / "run" / "reference-50.pt").exists() and 10 < pts["none"]["psnr_conv"] < 100
    assert len(ours["psnr_conv_images"]) == 4 and ours["fd_conv"] > 0 and "psnr_conv" not in pts["none/seeds=1"]
    assert ours["psnr_conv_images"] == pts["deepcache/interval=2"]["psnr_conv_images"]  # the same images
    assert dominance(rows, spread=0.0)["deepcache/interval=2"] == "**not beaten**"  # a tie beats nothing

    def fail(*a, **k):
        raise AssertionError("a finished method was measured again")
    monkeypatch.setattr(bench_mod, "measure_method", fail)
    again = run_bench(cfg, lambda: load_pipeline(SD), PROMPTS, feats, ref, tmp_path / "run")
    assert again["points"] == pts
    md = write_report({"fashion-sd-4": again}, tmp_path / "docs", "toy", "diffskip bench --steps 4")
    assert "| steps | n=9 | refused: MethodError" in md and "diffskip bench --steps 4" in md
    if "error" in fbc:  # a refused peer is reported as refused, with the exception's type
        assert f"| fbc | threshold=0.05 | refused: {fbc['error'].split(':')[0]}" in md and "| fbc | refused |" in md
    assert "| deepcache | 0/1 |" in md  # the summary: beaten / rows
    plan_fraction = rows[f"plan/path={plan}"]["flops_fraction"]
    assert f"| fashion-sd-4 | @0.5: 2 steps `interval:every=2` [own] | {plan_fraction:.3f}" in md
    assert "| n=2 | 0.500 |" in md  # the best fewer-steps row within the plan's budget
    assert (tmp_path / "docs" / "bench_toy_fashion-sd-4.png").stat().st_size > 1000
    # a later invocation with another cell adds to the report; re-running a cell replaces it
    write_report({"fashion-sd-9": again}, tmp_path / "docs", "toy", "diffskip bench --steps 9")
    md = write_report({"fashion-sd-4": again}, tmp_path / "docs", "toy", "diffskip bench --steps 4 --retime")
    assert md.count("### fashion-sd-4:") == 1 and md.count("### fashion-sd-9:") == 1
    assert "`diffskip bench --steps 4 --retime`" in md and "`diffskip bench --steps 9`" in md
    assert "`diffskip bench --steps 4`" not in md
    with pytest.raises(ValueError, match="different configuration"):
        run_bench(BenchConfig(pipeline="fashion-sd", steps=5, methods=methods, n=4, batch=2, timing_batch=2,
                              repeats=1), lambda: load_pipeline(SD), PROMPTS, feats, ref, tmp_path / "run")


def test_diffusers_hook_state_is_reset_between_pipeline_calls():
    """SD/PixArt pipelines never reset diffusers' stateful hooks; the harness must, or the next call breaks."""
    pix = asset_path("fashion-pixart")
    kw = dict(num_inference_steps=4, guidance_scale=4.0, output_type="pt", use_resolution_binning=False,
              clean_caption=False)
    pipe = load_pipeline(pix)
    run = apply_method(pipe, "fbc/threshold=0.2", 4)
    run(PROMPTS[:2], generator=torch.Generator().manual_seed(0), **kw)  # batch 2, then batch 1
    second = run(PROMPTS[:1], generator=torch.Generator().manual_seed(1), **kw).images
    fresh = apply_method(load_pipeline(pix), "fbc/threshold=0.2", 4)
    assert torch.equal(second, fresh(PROMPTS[:1], generator=torch.Generator().manual_seed(1), **kw).images)


def _row(flops, psnr_images, fd=1.0, fd_conv=1.0):
    return {"flops_fraction": flops, "psnr_conv_images": psnr_images, "psnr_conv": sum(psnr_images) / 4,
            "fd": fd, "fd_conv": fd_conv, "fd_conv_spread": 0.1}


def test_a_row_is_beaten_only_at_no_more_flops_by_more_than_the_paired_noise():
    peer = [30.0, 20.0, 30.0, 20.0]
    rows = {"none": _row(1.0, [40.0] * 4), "steps/n=5": _row(0.5, peer),
            "diffskip/steady": _row(0.45, [31.0, 21.0, 31.2, 20.8]),  # +1 dB on every image
            "diffskip/costly": _row(0.55, [35.0, 25.0, 35.0, 25.0]),  # more FLOPs
            "diffskip/noisy": _row(0.4, [40.0, 15.0, 36.0, 14.0]),  # +1.25 dB mean, two images worse
            "plan/blurry": _row(0.5, [33.0, 23.0, 33.0, 23.0], fd_conv=1.2)}  # FD to converged beyond the spread
    verdict = dominance(rows, spread=0.0)
    assert verdict == {"steps/n=5": "steady (+1.00 ± 0.16 dB)"}
    rows["steps/n=5"]["fd"] = 0.9  # ours must also be within the FD-to-real seed spread
    assert dominance(rows, spread=0.0)["steps/n=5"] == "**not beaten**"
    assert dominance(rows, spread=0.1)["steps/n=5"].startswith("steady")


def test_frechet_distance_is_zero_for_identical_sets_and_the_mean_shift_squared_for_shifted_ones():
    from benchmarks.converged import frechet, reference_steps

    a = torch.randn(200, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert abs(frechet(a, a)) < 1e-8 and frechet(a + 2.0, a) == pytest.approx(4 * 6, rel=1e-6)
    assert [reference_steps(s) for s in (4, 20, 50, 80)] == [50, 50, 100, 100]


def test_interleaved_retiming_updates_every_finished_method(tmp_path):
    feats = TinyFeatures()
    real = torch.randint(0, 255, (40, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    ref = reference_stats(feats, real, tmp_path / "cache", "toy")
    cfg = BenchConfig(pipeline="fashion-sd", steps=2, methods=["none", "diffskip/interval:every=2", "steps/n=3"],
                      n=2, batch=2, timing_batch=2, repeats=2)
    res = run_bench(cfg, lambda: load_pipeline(SD), PROMPTS, feats, ref, tmp_path / "run", retime=True)
    pts = res["points"]
    assert [pts[m].get("timing") for m in cfg.methods] == ["interleaved", "interleaved", None]
    assert pts["none"]["repeats"] == 2 and pts["none"]["denoiser_seconds"] > 0


@pytest.mark.parametrize("steps", [20, 50])
def test_default_grid_parses_and_its_caching_windows_scale_with_the_step_count(steps):
    from diffskip import parse
    from benchmarks.grid import default_methods

    for kind in ("unet", "dit"):
        methods = default_methods(kind, steps)
        assert methods[:3] == ["none", "none/seeds=1", "none/seeds=2"] and len(set(methods)) == len(methods)
        for m in methods:
            parse_method(m)
        policies = [parse(m.split("/", 1)[1]) for m in methods if m.startswith("diffskip/")]
        ends = sorted(p.end for p in policies if getattr(p, "end", None) is not None)
        assert ends == sorted(round(f * steps) for f in (0.8, 0.9, 0.96)) and ends[-1] < steps
    with pytest.raises(ValueError, match="kind='vit': allowed 'unet' or 'dit'"):
        default_methods("vit", steps)


def test_samples_benchmark_script_forwards_to_diffskip_bench():
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "samples" / "benchmark.py"
    ok = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "usage: python -m benchmarks" in ok.stdout and "--features" in ok.stdout


def test_fewer_steps_family_runs_n_steps_with_the_chosen_scheduler():
    _, base_flops, base_calls = _images_and_flops("none")
    imgs, flops, calls = _images_and_flops("steps/n=3")
    assert calls == base_calls // 2 and flops == pytest.approx(base_flops / 2)
    pipe = load_pipeline(SD)
    apply_method(pipe, "steps/n=3,scheduler=dpm++", 6)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    with pytest.raises(MethodError, match="allowed 1 <= n"):
        apply_method(load_pipeline(SD), "steps/n=9", 6)
