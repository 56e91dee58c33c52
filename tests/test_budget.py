"""Issue #12: final steps computed, a threshold that transfers, the relevance profile policy."""
from __future__ import annotations

import pytest
import torch

import diffskip
from diffskip.engine.planner import Planner
from diffskip.errors import PolicyError
from diffskip.metrics.fidelity import mean_psnr
from diffskip.policies import StepInfo
from diffskip.testing import tiny_pipeline
from test_adapters import TOY, ToyNet


def _attach(depth: int):
    torch.manual_seed(0)
    return diffskip.attach(ToyNet(depth=depth), TOY)


def _steps_computed(spec: str, n: int, units: int = 4) -> list[bool]:
    planner = Planner(diffskip.parse(spec), units)
    return [planner.plan(s, n, 1, None, [0])[0][0] is True for s in range(n)]


@pytest.mark.parametrize("spec", ["interval:every=3", "interval:every=4,start=2,end=7", "uniform:speedup=4",
                                  "profile:keep=0", "mask:steps=1000000000"])
def test_every_policy_computes_the_final_steps_by_default(spec):
    assert _steps_computed(spec, 10)[-1] is True
    assert _steps_computed(spec + ",final=3", 10)[-3:] == [True] * 3
    assert diffskip.parse(spec).final == 1


def test_final_zero_keeps_the_old_plan_and_final_needs_the_step_count():
    assert _steps_computed("interval:every=3,final=0", 8) == [True, False, False, True, False, False, True, False]
    net = _attach(3)
    with pytest.raises(PolicyError, match=r"final=1 .* pass num_steps=N to diffskip.session\(\), or set final=0"):
        with diffskip.session(net, "interval:every=3"):
            pass
    with diffskip.session(net, "never"):  # nothing reused: no step count needed
        pass
    diffskip.detach(net)


def test_final_threshold_drift_run_recomputes_the_last_step():
    net = _attach(4)
    x = torch.randn(1, 3, 8)
    with torch.no_grad(), diffskip.session(net, "threshold:threshold=10.0", num_steps=5) as s:
        for t in (900.0, 800.0, 700.0, 600.0, 500.0):
            net(x, t)
    assert [c.computed for c in s.stats.calls] == [s.num_units, 0, 0, 0, s.num_units]
    diffskip.detach(net)


def test_threshold_target_normalises_the_drift_so_the_fraction_does_not_depend_on_its_scale():
    p = diffskip.Threshold(target=0.25, final=0)
    for scale in (1e-4, 1.0, 1e3):  # the same relative pattern at any drift scale: compute every 4th step
        acc, out = 0.0, []
        for s in range(1, 13):
            acc += scale
            c = p.decide(StepInfo(s, 13, 1, (acc,), (0,), (scale,)), 0)[0]
            out.append(c)
            acc = 0.0 if c else acc
        assert out == [False, False, False, True] * 3
    assert str(p) == "threshold:target=0.25,final=0" and str(diffskip.parse("threshold:threshold=0.1")) == \
        "threshold:threshold=0.1"
    with pytest.raises(PolicyError, match="exactly one of target="):
        diffskip.parse("threshold:target=0.3,threshold=0.1")


def test_threshold_target_runs_about_that_fraction_of_steps_on_a_model():
    net = _attach(4)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 8, generator=g)
    fractions = []
    for target in (0.25, 0.5):
        with torch.no_grad(), diffskip.session(net, f"threshold:target={target},final=0", num_steps=40) as s:
            for k in range(40):
                x = x + 0.1 * torch.randn(1, 3, 8, generator=g)  # steady change
                net(x, 1000.0 - k)
        fractions.append(sum(c.computed > 0 for c in s.stats.calls[1:]) / 39)
    assert abs(fractions[0] - 0.25) < 0.1 and abs(fractions[1] - 0.5) < 0.1
    diffskip.detach(net)


def test_profile_keeps_the_most_relevant_units_and_checks_its_rank_against_the_model():
    p = diffskip.parse("profile:rank=2.0.1,keep=1,every=3,final=0")
    rows = [[p.decide(StepInfo(s, 6, 3, None, (0,)), u) for u in range(3)] for s in range(6)]
    assert rows == [[True] * 3, [False, False, True], [False, False, True], [True] * 3, [False, False, True],
                    [False, False, True]]
    net = _attach(4)  # 3 skippable units behind the live first block
    with pytest.raises(PolicyError, match=r"rank='2.0' is invalid; allowed: empty or each of this model's 3"):
        with diffskip.session(net, "profile:rank=2.0", num_steps=4):
            pass
    diffskip.detach(net)
    for bad in ("profile:rank=1.1", "profile:rank=a.b", "profile:keep=-1"):
        with pytest.raises(PolicyError):
            diffskip.parse(bad)


def _loop(net, seed: int = 0):
    """A user's own sampling loop: Euler steps of a toy flow from seeded noise."""
    def run(n: int) -> torch.Tensor:
        x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            for i in range(n):
                t = 1000.0 * (1 - i / n)
                x = x + (net(x, t) - x) * 0.3 * 8 / n
        return x
    return run


def test_tune_never_loses_to_fewer_steps_and_reports_every_candidate():
    net = _attach(6)
    res = diffskip.tune(net, _loop(net), budget=0.5, full_steps=16, validate=_loop(net, seed=1))
    fewer = res.best_fewer_steps()
    assert fewer is not None and fewer.num_steps == 8 and fewer.policy == "never"
    with diffskip.session(net, "never", num_steps=16):  # the pick's numbers are what its plan really does
        ref = _loop(net)(16)
    with diffskip.session(net, res.policy, num_steps=res.num_steps) as s:
        out = _loop(net)(res.num_steps)
    assert s.stats.relative_to(16) == pytest.approx(res.flops) and res.flops <= 0.5 + 1e-9
    assert mean_psnr(out, ref, peak=float(ref.double().max() - ref.double().min())) == pytest.approx(res.psnr, abs=1e-9)
    assert len(res.table) >= 5 and all(t.flops is not None for t in res.table if t.error is None)
    assert {t.policy.split(":")[0] for t in res.table} >= {"never", "uniform", "interval", "threshold", "profile"}
    assert set(res.heldout) == {"psnr", "fewer_steps_psnr", "margin_db"}
    assert res.heldout["margin_db"] == pytest.approx(res.heldout["psnr"] - res.heldout["fewer_steps_psnr"])
    again = diffskip.tune(net, _loop(net), budget=0.5, full_steps=16)
    assert (again.policy, again.num_steps, again.psnr) == (res.policy, res.num_steps, res.psnr)  # deterministic
    diffskip.detach(net)


def test_a_plan_must_beat_fewer_steps_by_more_than_the_noise_of_its_samples():
    from diffskip.tuning import Trial, paired_margin, pick

    def trial(policy, n, samples):
        return Trial(policy, n, flops=0.3, psnr=sum(samples) / len(samples), samples=samples)

    fewer = trial("never", 6, [30.0, 20.0, 30.0, 20.0])
    noisy = trial("interval:every=2", 12, [40.0, 14.0, 36.0, 14.0])  # +1 dB mean, one sample -6 dB
    steady = trial("uniform:speedup=2", 12, [30.5, 20.6, 30.4, 20.5])  # +0.5 dB on every sample
    margin, two_se = paired_margin(noisy.samples, fewer.samples)
    assert margin == pytest.approx(1.0) and two_se > 1.0
    assert pick([fewer, noisy]) is fewer
    assert pick([fewer, noisy, steady]) is steady  # lower mean than `noisy`, but surely above fewer steps
    assert pick([trial("never", 6, [30.0]), trial("interval:every=2", 12, [31.0])]).policy != "never"  # 1 sample


def test_tune_rejects_bad_budgets_and_unattached_models():
    net = _attach(4)
    for bad in (0, 1.5, float("nan"), "half", True, float("inf"), None):
        with pytest.raises(diffskip.errors.DiffSkipError, match="budget="):
            diffskip.tune(net, _loop(net), budget=bad, full_steps=10)
    for kw in (dict(jumps=True), dict(schedulers=("own",)), dict(full_steps=True), dict(run="loop")):
        with pytest.raises(diffskip.errors.DiffSkipError,
                           match="needs a Sampler|needs Gaussian statistics|full_steps=True|run=.loop."):
            diffskip.tune(net, **{"run": _loop(net), "budget": 0.5, "full_steps": 10, **kw})
    diffskip.detach(net)
    with pytest.raises(diffskip.errors.DiffSkipError, match="not attached"):
        diffskip.tune(ToyNet(), _loop(net), budget=0.5, full_steps=10)


def test_relevance_ranks_the_unit_whose_reuse_hurts_most_first():
    net = _attach(4)
    with torch.no_grad():
        net.blocks[2].lin.weight.mul_(8.0)  # unit 1 of the skippable 3 changes the output most
    rank, scores = diffskip.relevance(net, _loop(net), 12)
    assert rank.split(".")[0] == "1" and len(scores) == 3 and min(scores) == scores[1]
    diffskip.detach(net)


def test_pipeline_tune_saves_a_plan_that_the_pipeline_cli_and_comfyui_load(tmp_path, capsys):
    import json

    from diffskip.cli import main
    from diffskip.comfy import NODE_CLASS_MAPPINGS
    from diffskip.plan_files import load_plan

    plan = tmp_path / "plan.json"
    assert main(["tune", "--model", "tiny-sd", "--steps", "6", "--budget", "0.5", "--prompt", "a cat",
                 "--heldout", "a dog", "--out", str(plan)]) == 0
    out = capsys.readouterr().out
    data = load_plan(plan)
    assert "plan: " in out and "3 steps never" in out  # the fewer-steps baseline is always measured
    assert data["flops"] <= 0.5 + 1e-9 and data["budget"] == 0.5 and data["full_steps"] == 6
    assert data["heldout"]["prompts"] == 1
    assert {"never", "uniform"} <= {t["policy"].split(":")[0] for t in data["table"]}
    assert all(t["over_budget"] == (t["flops"] is not None and t["flops"] > 0.5 + 1e-9) for t in data["table"])
    fast = diffskip.DiffSkipPipeline(tiny_pipeline("sd"), "never")  # re-measure the plan as the tuner did
    ref = fast(["a cat"], num_inference_steps=6, generator=[torch.Generator().manual_seed(0)], output_type="pt")
    fast.apply_plan(plan)
    out = fast(["a cat"], generator=[torch.Generator().manual_seed(0)], output_type="pt")
    assert mean_psnr(out.images, ref.images, peak=1.0) == pytest.approx(data["psnr"], abs=1e-9)
    assert fast.last_stats.relative_to(6) == pytest.approx(data["flops"])
    with pytest.raises(SystemExit) as e:  # refuses to replace it
        main(["tune", "--model", "tiny-sd", "--steps", "6", "--out", str(plan)])
    assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert main(["generate", "--model", "tiny-sd", "--plan", str(plan), "--no-baseline", "--prompt", "a cat",
                 "--out", str(tmp_path / "g")]) == 0
    report = json.loads((tmp_path / "g" / "stats.json").read_text())
    assert diffskip.parse(report["policy"]) == diffskip.parse(data["policy"]) and report["steps"] == data["num_steps"]
    node = NODE_CLASS_MAPPINGS["DiffSkipPlan"]()
    data["skip"] = 2
    bad = tmp_path / "jump.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(diffskip.errors.DiffSkipError, match="--no-jumps"):
        node.apply(object(), str(bad))


@pytest.mark.parametrize("kwargs,match", [
    (dict(prompts="abc"), r"prompts='abc' is invalid; allowed: a non-empty list of strings"),
    (dict(prompts=["a cat", 3]), "prompts="), (dict(prompts=[]), "prompts="),
    (dict(heldout="a dog"), "heldout='a dog'"),
    (dict(budget=True), r"budget=True is invalid"), (dict(budget=float("inf")), "budget=inf"),
    (dict(num_inference_steps=0), r"num_inference_steps=0 is invalid; allowed: an int >= 2"),
    (dict(num_inference_steps=True), "num_inference_steps=True"), (dict(num_inference_steps=6.0), "=6.0"),
    (dict(schedulers=[]), r"schedulers=\[\] is invalid"), (dict(schedulers="own"), "schedulers='own'"),
    (dict(seed="0"), "seed='0'"), (dict(jumps=1), "jumps=1")])
def test_pipeline_tune_refuses_bad_inputs_before_generating(kwargs, match):
    fast = diffskip.DiffSkipPipeline(tiny_pipeline("sd"), "never")
    args = {"prompts": ["a cat"], "budget": 0.5, "num_inference_steps": 6, **kwargs}
    with pytest.raises(diffskip.errors.DiffSkipError, match=match):
        fast.tune(**args)
    assert fast.last_stats is None  # nothing ran
