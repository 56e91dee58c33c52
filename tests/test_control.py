"""Light control (RelaCtrl) and the full ControlNet: exactness at zero init, round trips, relevance, pipeline."""
import pytest
import torch

import diffskip
from diffskip.control.conditions import edge_f1, edge_map, edges, hausdorff, masks
from diffskip.control.inject import ControlRun, controlling, load_control
from diffskip.control.models import FullControlNetModel, RelaCtrlModel
from diffskip.control.relevance import groups_for, relevance_scores, top_positions
from diffskip.control.tdsm import TDSMBlock, permutation, shuffle, unshuffle
from diffskip.testing import tiny_pipeline

KW = dict(added_cond_kwargs={"resolution": None, "aspect_ratio": None})


def tiny():
    pipe = tiny_pipeline("pixart")
    tr = diffskip.attach(pipe.transformer)
    torch.manual_seed(1)
    x, text, t = torch.randn(2, 4, 8, 8), torch.randn(2, 5, 32), torch.tensor([500, 20])
    return pipe, tr, lambda: tr(x, encoder_hidden_states=text, timestep=t, **KW).sample


def rela(tr, positions=(0, 1, 2, 3), groups=(1, 2, 3, 6), seed=0, nonzero=False):
    torch.manual_seed(seed)
    model = RelaCtrlModel(dim=24, num_layers=4, positions=list(positions), groups=list(groups), seed=seed)
    if nonzero:
        for layer in [*model.proj_in, *model.proj_out]:
            torch.nn.init.normal_(layer.weight, std=0.3)
    return model


def cond(b=2, seed=2):
    return torch.randn(b, 16, 24, generator=torch.Generator().manual_seed(seed))


def test_shuffle_and_unshuffle_are_exact_inverses():
    x = torch.randn(3, 16, 12)
    perm = permutation(16 * 12, seed=5)
    y = shuffle(x, perm)
    assert not torch.equal(y, x) and torch.equal(unshuffle(y, perm), x)
    assert torch.equal(permutation(50, 3), permutation(50, 3))
    assert not torch.equal(permutation(50, 3), permutation(50, 4))


def test_tdsm_is_deterministic_per_seed_and_validates_groups():
    t = torch.randn(2, 6 * 24)
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(0)  # same weights; only the block's permutation seed differs
        x = torch.randn(2, 16, 24, generator=torch.Generator().manual_seed(0))
        outs.append(TDSMBlock(24, groups=2, seed=seed)(x, t))
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    with pytest.raises(ValueError, match="allowed groups"):
        TDSMBlock(24, groups=5)


@pytest.mark.parametrize("kind", ["relactrl", "controlnet"])
def test_zero_initialised_projections_leave_the_base_output_bitwise(kind):
    _, tr, call = tiny()
    base = call()
    model = rela(tr) if kind == "relactrl" else FullControlNetModel.from_transformer(tr)
    with controlling(tr, ControlRun(model, cond())) as run:
        out = call()
    assert torch.equal(out, base) and all(n == 1 for n in run.calls.values())
    if kind == "controlnet":
        assert model.positions == [0, 1] and torch.equal(model.blocks[1].ff.net[2].weight,
                                                         tr.transformer_blocks[1].ff.net[2].weight)
    assert torch.equal(call(), base)  # outside the context the denoiser is untouched


def test_trained_control_changes_output_scale_zero_does_not_and_off_switches_a_branch():
    _, tr, call = tiny()
    base = call()
    model = rela(tr, nonzero=True)
    with controlling(tr, ControlRun(model, cond())):
        on = call()
    with controlling(tr, ControlRun(model, cond(), scale=0.0)):
        assert torch.equal(call(), base)
    with controlling(tr, ControlRun(model, cond(), off=(1,))) as run:
        off = call()
    assert (on - base).abs().max() > 1e-3 and (off - on).abs().max() > 1e-4 and run.calls[1] == 0
    with pytest.raises(ValueError, match="allowed"):
        ControlRun(model, cond(), off=(7,))


@pytest.mark.parametrize("kind", ["relactrl", "controlnet"])
def test_save_load_round_trip(tmp_path, kind):
    _, tr, call = tiny()
    model = rela(tr, positions=(1, 3), groups=(2, 6), nonzero=True) if kind == "relactrl" else \
        FullControlNetModel.from_transformer(tr, num_blocks=3)
    model.save_pretrained(tmp_path)
    loaded = load_control(tmp_path)
    assert type(loaded) is type(model) and loaded.positions == model.positions
    outs = []
    for m in (model, loaded):
        with controlling(tr, ControlRun(m.eval(), cond())):
            outs.append(call())
    assert torch.equal(outs[0], outs[1])
    with pytest.raises(FileNotFoundError, match="controlnets"):
        load_control(tmp_path / "missing")


def test_relevance_scorer_ranks_positions_on_a_tiny_random_model():
    _, tr, call = tiny()
    model = rela(tr, nonzero=True)
    torch.nn.init.zeros_(model.proj_out[3].weight)  # the last position (feeds no later branch) adds nothing
    torch.nn.init.normal_(model.proj_out[2].weight, std=3.0)  # position 2 dominates: most relevant
    with controlling(tr, ControlRun(model, cond())):
        full = call()
    damage = {}
    for p in model.positions:
        with controlling(tr, ControlRun(model, cond(), off=(p,))):
            damage[p] = (call() - full).square().mean().item()
    scores = relevance_scores(damage, {p: -d for p, d in damage.items()}, damage)
    assert damage[3] == 0.0 and max(scores, key=scores.get) == 2 and min(scores, key=scores.get) == 3
    assert scores[2] == 1.0 and scores[3] == 0.0
    assert 2 in top_positions(scores, 2) and groups_for(scores, [2, 3], tiers=(1, 4)) == [1, 4]


def test_conditions_and_fidelity_metrics():
    img = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    img[:, :, 8:24, 10:20] = 200
    e, m = edge_map(img), masks(img)
    assert e[0, 8:24, 9].all() and not e[0, 16, 15] and (m[0, 0, 8:24, 10:20] == 1).all() and m[0, 0, 0, 0] == -1
    assert edges(img).shape == (2, 3, 32, 32)
    shifted = torch.roll(e, 1, dims=2)
    assert edge_f1(e, e).tolist() == [1.0, 1.0] and edge_f1(shifted, e)[0] == 1.0
    assert edge_f1(torch.roll(e, 3, dims=2), e)[0] < 0.7
    assert hausdorff(e, e).tolist() == [0.0, 0.0] and hausdorff(torch.roll(e, 3, dims=2), e)[0] == 3.0
    assert hausdorff(torch.zeros_like(e), e)[0] > 40


def run_pipe(fast, steps=2, **kw):
    g = torch.Generator().manual_seed(0)
    return fast("a red shoe", num_inference_steps=steps, generator=g, output_type="np", height=16, width=16,
                use_resolution_binning=False, clean_caption=False, **kw).images


def test_two_step_pipeline_with_control_and_clear_errors(tmp_path):
    pipe = tiny_pipeline("pixart")
    base = run_pipe(diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart")))
    model = rela(pipe.transformer, nonzero=True)
    model.save_pretrained(tmp_path)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, control=str(tmp_path))
    image = torch.rand(1, 3, 16, 16)
    on = run_pipe(fast, control_image=image)
    assert fast.last_control.calls == {p: 2 for p in range(4)}  # 2 steps, uncond + cond in one batch
    assert abs(on - base).max() > 1e-3 and (run_pipe(fast, control_image=image, control_scale=0.0) == base).all()
    with pytest.raises(diffskip.errors.SessionError, match="control_image"):
        run_pipe(fast)
    with pytest.raises(diffskip.errors.SessionError, match="no control model"):
        run_pipe(diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart")), control_image=image)


def test_control_with_interval_caching_counts():
    pipe = tiny_pipeline("pixart")
    model = rela(pipe.transformer, nonzero=True)
    plain = diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart"), "interval:every=2")
    run_pipe(plain, steps=6)
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, "interval:every=2", control=model)
    image = torch.rand(1, 3, 16, 16)
    out = run_pipe(fast, steps=6, control_image=image)
    s = fast.last_stats
    assert (s.computed, s.reused) == (plain.last_stats.computed, plain.last_stats.reused) and s.reused > 0
    # a skipped base block replays its cached base residual; its control branch still runs every step
    assert fast.last_control.calls == {p: 6 for p in range(4)}
    never = diffskip.DiffSkipPipeline.from_pipe(tiny_pipeline("pixart"), "never", control=rela(pipe.transformer,
                                                                                               nonzero=True))
    assert abs(run_pipe(never, steps=6, control_image=image) - out).max() > 0  # caching did change something


def test_prompt_file_control_image_column_runs_through_batch(tmp_path):
    from PIL import Image

    from diffskip.batch import BatchRun, read_prompts

    Image.new("RGB", (16, 16), (255, 255, 255)).save(tmp_path / "edge.png")
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a shirt", "control_image": "edge.png", "width": 16, "height": 16}\n'
                  '{"prompt": "a coat", "control_image": "none.png"}\n{"prompt": "a bag", "control_image": 5}\n')
    rows, bad = read_prompts(jl)
    assert [r.control_image for r in rows] == [str(tmp_path / "edge.png")]
    assert "no file" in bad[0].problem and "path string" in bad[1].problem
    pipe = tiny_pipeline("pixart")
    fast = diffskip.DiffSkipPipeline.from_pipe(pipe, control=rela(pipe.transformer, nonzero=True))
    fast.call_defaults = {"use_resolution_binning": False, "clean_caption": False}
    job = BatchRun(fast, tmp_path / "out", steps=2, guidance=4.0)
    records = list(job.run(job.prepare(rows)))
    assert len(records) == 1 and records[0]["control_image"].endswith("edge.png")
    assert fast.last_control.calls == {p: 2 for p in range(4)}
