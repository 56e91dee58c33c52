"""Output folders that know their run, one-line CLI errors, prompt-file rows, validation before work."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diffskip.cli import main
from diffskip.runfolder import RunFolder

TINY = ["--model", "tiny-sd", "--steps", "2", "--device", "cpu", "--threads", "1"]


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `diffskip ...` in this process; return (exit status, stdout, stderr)."""
    try:
        status = main(["generate", *argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]  # (loaders' progress bars may precede it)
    assert len(lines) == 1 and lines[0].startswith("diffskip generate: error: "), err  # one line
    return lines[0]


def _batch(tmp_path: Path, *extra: str, prompts: str = "p.txt") -> list[str]:
    return ["--prompts", str(tmp_path / prompts), "--out", str(tmp_path / "out"), "--batch-size", "2", *TINY, *extra]


@pytest.fixture
def prompts(tmp_path):
    (tmp_path / "p.txt").write_text("a shirt\na coat\na bag\n")
    return tmp_path / "p.txt"


def test_a_batch_folder_refuses_another_run_naming_the_differences_and_overwrite_starts_again(tmp_path, capsys,
                                                                                             prompts):
    assert _cli(capsys, *_batch(tmp_path, "--policy", "interval:every=2"))[0] == 0
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run["kind"] == "batch" and run["policy"] == "interval:every=2" and run["steps"] == 2
    assert run["model"] == "tiny-sd" and len(run["weights"]) == 16 and run["scheduler"] == "DDIMScheduler"
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")}
    for extra, expect in [(["--policy", "never"], "policy 'interval:every=2' there, 'never' now"),
                          (["--policy", "interval:every=2", "--guidance", "5"], "guidance 4.0 there, 5.0 now"),
                          (["--policy", "interval:every=2", "--size", "32"], "size None there, 32 now")]:
        status, _, err = _cli(capsys, *_batch(tmp_path, *extra))
        line = _error_line(err)
        assert status == 2 and expect in line and "new --out folder" in line and "--overwrite" in line, line
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.png")} == before  # nothing touched
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert _cli(capsys, *_batch(tmp_path, "--policy", "never", "--overwrite"))[0] == 0
    assert json.loads((tmp_path / "out" / "run.json").read_text())["policy"] == "never"
    rows = [json.loads(ln) for ln in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [r["policy"] for r in rows] == ["never"] * 3 and all(r["steps"] == 2 and r["guidance"] == 4.0 for r in rows)
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"  # --overwrite deletes only diffskip's files


def test_changed_prompt_rows_are_refused_and_appended_rows_resume(tmp_path, capsys, prompts):
    assert _cli(capsys, *_batch(tmp_path))[0] == 0
    (tmp_path / "r.txt").write_text("a bag\na coat\na shirt\n")
    status, _, err = _cli(capsys, *_batch(tmp_path, prompts="r.txt"))
    line = _error_line(err)
    assert status == 2 and "row 0 prompt 'a shirt' there, 'a bag' now" in line and "row 2 prompt" in line, line
    (tmp_path / "more.txt").write_text("a shirt\na coat\na bag\na hat\n")
    status, out, _ = _cli(capsys, *_batch(tmp_path, prompts="more.txt"))
    assert status == 0 and "4 of 4 rows done" in out and "1 made now, 3 were already there" in out


def test_damaged_finished_images_are_made_again_identically(tmp_path, capsys, prompts):
    assert _cli(capsys, *_batch(tmp_path))[0] == 0
    out = tmp_path / "out"
    good = {p.name: p.read_bytes() for p in out.glob("*.png")}
    (out / "000001.png").write_bytes(b"")
    (out / "000002.png").write_bytes(good["000002.png"][:100])
    status, text, _ = _cli(capsys, *_batch(tmp_path))
    assert status == 0 and "2 made now" in text and "2 damaged image(s) made again: 000001.png: empty file" in text
    assert {p.name: p.read_bytes() for p in out.glob("*.png")} == good


def test_a_second_process_is_refused_while_the_first_holds_the_folder(tmp_path, capsys, prompts):
    with RunFolder(tmp_path / "out", "batch"):
        status, _, err = _cli(capsys, *_batch(tmp_path))
    line = _error_line(err)
    assert status == 2 and f"in use by another diffskip run (process {os.getpid()})" in line and "does not wait" in line
    assert _cli(capsys, *_batch(tmp_path))[0] == 0  # released: the same command now runs


def test_grid_folder_same_run_is_replaced_other_run_refused_overwrite_clears(tmp_path, capsys):
    grid = ["--out", str(tmp_path / "g"), *TINY, "--policy", "never", "--prompt", "a", "--prompt", "b"]
    assert _cli(capsys, *grid)[0] == 0
    stats = json.loads((tmp_path / "g" / "stats.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert stats["psnr_vs_baseline"] is None  # identical to the baseline: JSON null, never Infinity
    assert _cli(capsys, *grid)[0] == 0  # the same grid again
    status, _, err = _cli(capsys, *grid[:-4], "--policy", "interval:every=2", "--prompt", "a")
    assert status == 2 and "policy 'never' there, 'interval:every=2' now" in _error_line(err)
    assert _cli(capsys, *grid[:-4], "--policy", "interval:every=2", "--prompt", "a", "--overwrite")[0] == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir() if not p.name.startswith(".")) == [
        "000.png", "grid.png", "grid_baseline.png", "run.json", "stats.json"]  # no PNG of the earlier run


@pytest.mark.parametrize("argv,expect", [
    (["--steps", "0"], "argument --steps: '0' is invalid; allowed: an int in [1, 10000]"),
    (["--steps", "-5"], "argument --steps: '-5' is invalid"),
    (["--steps", "1000"], "--steps 1000: DDIMScheduler (1000 training timesteps) cannot run it; allowed: 1 to 999 "
                          "steps"),
    (["--size", "0"], "argument --size: '0' is invalid; allowed: an int in [8, 2048]"),
    (["--size", "100000"], "argument --size: '100000' is invalid"),
    (["--size", "12"], "argument --size: '12' is invalid; allowed: a multiple of 8 in [8, 2048], e.g. 8"),
    (["--guidance", "nan"], "argument --guidance: 'nan' is invalid; allowed: a finite number in [1, 100]"),
    (["--guidance", "-5"], "argument --guidance: '-5' is invalid"),
    (["--guidance", "0"], "argument --guidance: '0' is invalid"),
    (["--seed", "99999999999999999999999"], "argument --seed: '99999999999999999999999' is invalid"),
    (["--policy", "mask:steps=10101"], "mask: steps='10101' has 5 characters but the run has 2 steps"),
    (["--policy", "interval:every=2,head=999"], "head=999 is invalid; allowed: a finite number in [0, 64]"),
    (["--policy", "interval:every=2,head=40"], "head=40 + tail=2 exceeds the 22 units"),
    (["--steps", "x"], "argument --steps: 'x' is invalid"),
])
def test_bad_options_fail_in_one_line_with_exit_2_before_any_file_is_written(tmp_path, capsys, argv, expect):
    status, _, err = _cli(capsys, "--out", str(tmp_path / "g"), *TINY, *argv)
    line = _error_line(err)
    assert status == 2 and expect in line, line
    assert not list(tmp_path.glob("g/*.png")) and not (tmp_path / "g" / "stats.json").exists()


def test_bad_models_and_folders_fail_in_one_line(tmp_path, capsys):
    from diffskip.testing import tiny_pipeline

    tiny_pipeline("sd").save_pretrained(tmp_path / "m")
    weights = next((tmp_path / "m" / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "afile").write_text("x")
    (tmp_path / "dir.txt").mkdir()
    cases = [(["--model", str(tmp_path / "m")], "cannot load it ("),
             (["--model", str(tmp_path / "nowhere")], "--model '"),
             (["--out", str(tmp_path / "afile")], "is a file; allowed: a folder"),
             (["--out", str(tmp_path / "afile" / "sub")], "cannot write there (Not a directory)"),
             (["--prompts", str(tmp_path / "dir.txt")], "is a folder; allowed: a .txt or .jsonl file")]
    for argv, expect in cases:
        full = ["--model", "tiny-sd", "--steps", "2", "--out", str(tmp_path / "o"), *argv]
        status, _, err = _cli(capsys, *full)
        assert status == 2 and expect in _error_line(err), err


def test_ctrl_c_prints_how_to_resume_and_exits_130(tmp_path, capsys, monkeypatch, prompts):
    from diffskip.batch import BatchRun

    def interrupted(self, batch):
        raise KeyboardInterrupt

    monkeypatch.setattr(BatchRun, "_generate", interrupted)
    status, out, err = _cli(capsys, *_batch(tmp_path))
    assert status == 130 and "interrupted; run the same command again to resume" in err
    assert "0 of 3 rows done in" in out and "(0 made now, 0 were already there" in out  # the report printed anyway


def test_prompt_file_rows_bad_bytes_and_huge_seeds_are_row_errors_and_the_good_rows_run(tmp_path, capsys):
    (tmp_path / "p.jsonl").write_bytes(b'{"prompt": "a shirt"}\n{"prompt": "bad \xff\xfe"}\n'
                                       b'{"prompt": "a coat", "seed": 99999999999999999999999}\n{"prompt": "a bag"}\n')
    status, out, err = _cli(capsys, *_batch(tmp_path, prompts="p.jsonl"))
    assert status == 1 and "2 of 4 rows done" in out
    assert f"{tmp_path / 'p.jsonl'}:2: not UTF-8 text (byte 0xff at column 17); save the file as UTF-8" in err
    assert f"{tmp_path / 'p.jsonl'}:3: 'seed'=99999999999999999999999 must be an int in [0, 2**64 - 1]" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["000000.png", "000003.png"]


def test_mask_length_is_checked_against_the_run_and_cycle_repeats_it():
    import diffskip
    from diffskip.policies import PolicyError, StepInfo

    with pytest.raises(PolicyError, match="has 3 characters but the run has 5 steps.*add cycle=1"):
        diffskip.parse("mask:steps=101").check_steps(5)
    with pytest.raises(PolicyError, match="has 3 characters but the run has 2 steps"):
        diffskip.Mask(steps="101").decide(StepInfo(0, 2, 4, None, (0,)), 0)  # at step 0: before any unit runs
    m = diffskip.parse("mask:steps=110,cycle=1")
    m.check_steps(7)
    assert [m.decide(StepInfo(s, 7, 4, None, (0,)), 0) for s in range(7)] == [1, 1, 0, 1, 1, 0, 1]
    assert str(m) == "mask:steps=110,cycle=1" and diffskip.parse(str(m)) == m


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_comfy_mask_node_default_runs_at_any_step_count(steps):
    import fake_comfy as fc

    import diffskip.comfy as dc

    node = dc.NODE_CLASS_MAPPINGS["DiffSkipMask"]()
    spec = node.INPUT_TYPES()["required"]
    assert spec["steps"][1]["default"] == "1" and spec["cycle"][1]["default"] == 1
    fast = node.apply(fc.patcher("unet"), **{k: v[1]["default"] for k, v in spec.items() if k != "model"})[0]
    fc.sample(fast, steps=steps)
    st = dc.last_stats(fast)
    assert st.steps == steps and st.reused == 0 and st.computed > 0


def test_comfy_node_refuses_head_beyond_the_models_units_at_apply():
    import fake_comfy as fc

    import diffskip.comfy as dc
    from diffskip.policies import PolicyError

    node = dc.NODE_CLASS_MAPPINGS["DiffSkipInterval"]()
    with pytest.raises(PolicyError, match="head=64 \\+ tail=0 exceeds the"):
        node.apply(fc.patcher("unet"), every=2, start=0, end=-1, head=64, tail=-1, forecast=0, final=1,
                   cfg=1, tokens=0.0)


def test_stats_report_cache_bytes():
    import torch

    from diffskip import DiffSkipPipeline
    from diffskip.testing import tiny_pipeline

    pipe = DiffSkipPipeline(tiny_pipeline("sd"), "interval:every=2")
    pipe.set_progress_bar_config(disable=True)
    pipe(["a", "b"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    st = pipe.last_stats
    assert st.cache_bytes > 0 and st.to_dict()["cache_bytes"] == st.cache_bytes and "cache_mb=" in str(st)
    pipe.policy = "never"
    pipe(["a", "b"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    assert pipe.last_stats.cache_bytes == 0


def test_pipeline_refuses_a_mask_of_another_length_at_step_0_before_any_unit_runs():
    import torch

    from diffskip import DiffSkipPipeline
    from diffskip.policies import PolicyError
    from diffskip.testing import tiny_pipeline

    pipe = DiffSkipPipeline(tiny_pipeline("sd"), "mask:steps=10")
    pipe.set_progress_bar_config(disable=True)
    units = []
    for m in pipe.denoiser.modules():
        m.register_forward_hook(lambda *a: units.append(1))
    with pytest.raises(PolicyError, match="has 2 characters but the run has 3 steps"):
        pipe(["a"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    calls = len(units)
    pipe.policy = "mask:steps=101"
    pipe(["a"], num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="np")
    assert calls < len(units) / 3 / 2  # the refused run stopped inside its first denoiser call


def test_ctrl_c_while_the_model_loads_still_prints_the_report(tmp_path, capsys, monkeypatch, prompts):
    from diffskip.cli import batchmode

    def interrupted(model, policy, plan=None, control=None, force=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(batchmode, "load", interrupted)
    status, out, err = _cli(capsys, *_batch(tmp_path))
    assert status == 130 and "interrupted; run the same command again to resume" in err
    assert "0 of 3 rows done in" in out
