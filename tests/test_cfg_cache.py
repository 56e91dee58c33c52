"""CFG-aware caching (`cfg=`): the unconditional half of classifier-free guidance computes less often.

cfg=1 is bit-exact with the policy without it; with cfg>1 the unconditional rows (batched [uncond, cond]) or the
unconditional call (two calls per step) compute fewer skippable units than the conditional ones and the FLOPs
drop; without uncond information the session raises; DiffSkipPipeline finds the unconditional half itself.
"""
from __future__ import annotations

import pytest
import torch

import diffskip
from diffskip.engine import cfgdiff
from diffskip.engine.cfgdiff import CfgDiff
from diffskip.errors import PolicyError, SessionError
from diffskip.policies import parse
from diffskip.testing import tiny_pipeline
from models import build, denoise, inputs

STEPS = 8


def expected_steps(every: int, cfg: int, steps: int = STEPS, final: int = 1) -> tuple[int, int]:
    """(cond, uncond) steps computing under interval:every=N with cfg: the rule written out independently."""
    policy = [s for s in range(steps) if s % every == 0 or s >= steps - final]
    uncond, count = [], 0
    for s in policy:
        full = s == 0 or s >= steps - final
        count = 0 if full else count + 1
        if full or count % cfg == 0:
            uncond.append(s)
    return len(policy), len(uncond)


def two_calls(model, kind: str, steps: int = STEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """A loop calling the denoiser twice per step (conditional first, then unconditional), CFG-combined."""
    x, kw = inputs(kind, 2, 0)
    _, kw_u = inputs(kind, 2, 1)
    outs, name = [], "sample" if kind.startswith("unet") else "hidden_states"
    with torch.no_grad():
        for t in torch.linspace(999, 50, steps):
            ts = t if kind.startswith("unet") else t.expand(2)
            cond = model(**{name: x}, timestep=ts, return_dict=False, **kw)[0]
            unc = model(**{name: x}, timestep=ts, return_dict=False, **kw_u)[0]
            outs.append(cond)
            x = x - 0.1 * (unc + 3.0 * (cond - unc))
    return x, torch.stack(outs)


@pytest.mark.parametrize("kind", ["unet-sd", "pixart"])
@pytest.mark.parametrize("spec", ["interval:every=2", "threshold", "uniform:speedup=2"])
def test_cfg_one_is_bit_exact(kind: str, spec: str):
    """cfg=1 (with or without uncond information) equals the same policy without the field, bitwise."""
    model = diffskip.attach(build(kind))
    with diffskip.session(model, spec, num_steps=6):
        base = denoise(model, kind, b=4)
    with diffskip.session(model, f"{spec}{',' if ':' in spec else ':'}cfg=1", num_steps=6, uncond="half"):
        same = denoise(model, kind, b=4)
    assert torch.equal(base, same)
    assert str(parse(f"{spec}{',' if ':' in spec else ':'}cfg=1")) == str(parse(spec))
    assert "cfg=2" in str(parse(f"{spec}{',' if ':' in spec else ':'}cfg=2"))


@pytest.mark.parametrize("kind", ["unet-sd", "pixart"])
@pytest.mark.parametrize("every,cfg", [(2, 2), (2, 3), (1, 2)])
def test_batched_uncond_rows_compute_less(kind: str, every: int, cfg: int):
    """uncond='half': rows 0..B/2-1 compute on 1 of every `cfg` policy computes; FLOPs drop."""
    model = diffskip.attach(build(kind))
    with diffskip.session(model, f"interval:every={every}", num_steps=STEPS) as s1:
        denoise(model, kind, b=4, steps=STEPS)
    with diffskip.session(model, f"interval:every={every},cfg={cfg}", num_steps=STEPS, uncond="half") as s2:
        out = denoise(model, kind, b=4, steps=STEPS)
    units = s2.stats.skippable
    n_cond, n_unc = expected_steps(every, cfg)
    assert s2.stats.per_row() == [n_unc * units] * 2 + [n_cond * units] * 2
    assert s1.stats.per_row() == [n_cond * units] * 4
    assert n_unc < n_cond and s2.stats.flops_fraction < s1.stats.flops_fraction
    assert torch.isfinite(out).all()


def test_second_half_and_threshold_rows():
    """'second-half' thins rows B/2..B-1; a drift-gated policy thins the unconditional rows too."""
    model = diffskip.attach(build("unet-sd"))
    with diffskip.session(model, "interval:every=2,cfg=2", num_steps=STEPS, uncond="second-half") as s:
        denoise(model, "unet-sd", b=4, steps=STEPS)
    rows = s.stats.per_row()
    assert rows[2] == rows[3] < rows[0] == rows[1]
    with diffskip.session(model, "threshold", num_steps=STEPS) as t1:
        denoise(model, "unet-sd", b=4, steps=STEPS)
    with diffskip.session(model, "threshold:cfg=2", num_steps=STEPS, uncond="half") as t2:
        denoise(model, "unet-sd", b=4, steps=STEPS)
    assert sum(t2.stats.per_row()[:2]) < sum(t1.stats.per_row()[:2])
    assert t2.stats.per_row()[2:] == t1.stats.per_row()[2:]  # the conditional rows decide as before


def test_two_calls_decided_apart_by_branch():
    """uncond=1: the second call of each step computes less; the first call's outputs are unchanged, bitwise."""
    model = diffskip.attach(build("unet-sd"))
    with diffskip.session(model, "interval:every=2", num_steps=STEPS) as s1:
        _, cond1 = two_calls(model, "unet-sd")
    with diffskip.session(model, "interval:every=2,cfg=2", num_steps=STEPS, uncond=1) as s2:
        _, cond2 = two_calls(model, "unet-sd")
    n_cond, n_unc = expected_steps(2, 2)
    units = s2.stats.skippable
    b1, b2 = s1.stats.per_branch(), s2.stats.per_branch()
    assert b2[0]["computed"] == b1[0]["computed"] == 2 * n_cond * units
    assert b2[1]["computed"] == 2 * n_unc * units < b1[1]["computed"]
    assert torch.equal(cond1[:3], cond2[:3])  # the uncond pass first replays at step 2 (read at step 3)
    assert not torch.equal(cond1[3:], cond2[3:])
    assert s2.stats.flops_fraction < s1.stats.flops_fraction


def test_cfg_without_uncond_raises_at_first_call():
    model = diffskip.attach(build("unet-sd"))
    with pytest.raises(PolicyError, match=r"cfg=2 .*uncond=None.*Fix: pass uncond="):
        with diffskip.session(model, "interval:cfg=2", num_steps=STEPS):
            denoise(model, "unet-sd", b=2, steps=2)
    with pytest.raises(SessionError, match="uncond='first'"):
        with diffskip.session(model, "interval:cfg=2", num_steps=STEPS, uncond="first"):
            pass
    with pytest.raises(SessionError, match="odd batch of 3"):
        with diffskip.session(model, "interval:cfg=2", num_steps=STEPS, uncond="half"):
            denoise(model, "unet-sd", b=3, steps=3)
    for bad in ("interval:cfg=0", "never:cfg=2", "interval:cfg=1.5"):
        with pytest.raises(PolicyError, match="cfg="):
            parse(bad)


def test_pipeline_sets_uncond_for_batched_guidance():
    """DiffSkipPipeline: a guided SD call thins the first half; without guidance cfg>1 raises (no uncond)."""
    pipe = tiny_pipeline("sd")
    kw = dict(prompt=["a", "b"], num_inference_steps=STEPS, output_type="pt", height=16, width=16)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2")
    fast(guidance_scale=5.0, **kw)
    full = fast.last_stats
    fast.policy = "interval:every=2,cfg=2"
    fast(guidance_scale=5.0, **kw)
    rows = fast.last_stats.per_row()
    n_cond, n_unc = expected_steps(2, 2)
    assert rows == [n_unc * full.skippable] * 2 + [n_cond * full.skippable] * 2
    assert fast.last_stats.flops_fraction < full.flops_fraction
    with pytest.raises(PolicyError, match="cfg=2"):
        fast(guidance_scale=1.0, **kw)
    fast.uncond = "second-half"  # an explicit choice wins over "auto"
    fast(guidance_scale=5.0, **kw)
    assert fast.last_stats.per_row()[2:] == rows[:2]
    fast.detach()


def test_pipeline_sets_uncond_for_two_calls():
    """DiffSkipPipeline: Flux true CFG (two calls per step, cond first) thins the second call."""
    from pipeline_builders import PIPELINES, call_kwargs

    pipe = PIPELINES["FluxPipeline"][0]()
    pipe.set_progress_bar_config(disable=True)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2,cfg=2")
    fast(**{**call_kwargs("FluxPipeline"), "num_inference_steps": STEPS})
    b = fast.last_stats.per_branch()
    assert b[1]["computed"] < b[0]["computed"]
    fast.detach()


def test_difference_cache_replays_partner_minus_difference():
    """FasterCache's CFG cache: a skipped uncond row = its cond partner's value - (cond - uncond) cached."""
    d = CfgDiff()
    raw = torch.arange(4.0)[:, None].expand(4, 3)  # rows 0, 1 uncond; 2, 3 cond: difference 2 everywhere
    d.update("k", (raw, None), (0, 1), None, 0)
    fresh = (torch.full((4, 3), 10.0), None)
    out = d.patch("k", (torch.zeros(4, 3), None), fresh, (0, 1), (2, 3), 1)  # the partners computed now
    assert out[0][:2].eq(8.0).all() and out[0][2:].eq(0.0).all() and out[1] is None
    out = d.patch("k", (torch.full((4, 3), 5.0), None), fresh, (0, 1), (), 1)  # nobody computed: partners replayed
    assert out[0][:2].eq(3.0).all()
    d.update("k", (torch.tensor([[1.0], [0.0], [7.0], [0.0]]).expand(4, 3), None), (0, 1), (0, 2), 2)  # pair (0, 2)
    assert d.diff["k"][0][:, 0].tolist() == [6.0, 2.0]
    taylor = CfgDiff(forecast=1)  # the difference extrapolated in the step index: 2 at step 0, 4 at step 2 -> 5
    taylor.update("k", (raw, None), (0, 1), None, 0)
    taylor.update("k", (raw * 2, None), (0, 1), None, 2)
    out = taylor.patch("k", (torch.zeros(4, 3), None), fresh, (0, 1), (2, 3), 3)
    assert out[0][0, 0].item() == 10.0 - 5.0 and out[0][1, 0].item() == 10.0 - 5.0


@pytest.mark.parametrize("uncond,differs", [("half", True), (1, False)])
def test_difference_form_only_for_batched_guidance(monkeypatch, uncond, differs: bool):
    """The difference form changes batched runs (same unit counts); the two-call form keeps its own values."""
    model = diffskip.attach(build("pixart"))
    outs, rows = [], []
    for form in ("own", "diff"):
        monkeypatch.setattr(cfgdiff, "FORM", form)
        with diffskip.session(model, "interval:every=2,cfg=2", num_steps=STEPS, uncond=uncond) as s:
            outs.append(denoise(model, "pixart", b=4, steps=STEPS) if uncond == "half"
                        else two_calls(model, "pixart")[0])
        rows.append(s.stats.to_dict()["per_branch"])
    assert rows[0] == rows[1] and torch.isfinite(outs[1]).all()
    assert torch.equal(outs[0], outs[1]) != differs


def test_cfg_variants_of_the_best_caching_trials():
    """The tuner axis: cfg=2/3 copies of the two best caching trials, at their steps and at more steps."""
    from diffskip.search_space import cfg_variants
    from diffskip.tuning import Trial

    measured = [Trial("never", 7, flops=0.35, psnr=30.0), Trial("interval:every=2", 10, flops=0.34, psnr=33.0),
                Trial("threshold", 12, flops=0.35, psnr=34.0), Trial("uniform:speedup=2", 12, flops=0.3, psnr=20.0),
                Trial("interval:every=3", 14, flops=None, psnr=None, error="boom")]
    out = cfg_variants(measured, budget=0.35, full_steps=20, live=0.1)
    specs = {(t.policy, t.num_steps) for t in out}
    assert {p.split(",cfg=")[0].split(":cfg=")[0] for p, _ in specs} == {"threshold", "interval:every=2"}
    assert ("interval:every=2,cfg=2", 10) in specs and ("threshold:cfg=3", 12) in specs
    more = [n for p, n in specs if p == "interval:every=2,cfg=3"]
    assert max(more) > 10 and max(more) <= 20  # the cheaper unconditional half buys steps
    assert all(t.psnr is None and t.flops is None for t in out)
    assert all(parse(p).cfg in (2, 3) for p, _ in specs)
