"""The newcomer's CLI: control branches by name, run identity, honest timing, help, defaults (issues #23, #24)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from diffskip.cli import build_parser, main
from diffskip.cli.common import DEFAULT_STEPS, MIN_STEPS_EVERY, default_policy

TINY = ["--model", "tiny-sd", "--device", "cpu", "--threads", "1"]
ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def _error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def test_a_shipped_control_branch_loads_by_name_from_any_folder_and_a_path_still_works(tmp_path, monkeypatch):
    from diffskip.assets.controls import control_names, control_path
    from diffskip.control import RelaCtrlModel, load_control

    monkeypatch.chdir(tmp_path)
    assert "fashion-pixart-relactrl-edges" in control_names()
    folder = control_path("fashion-pixart-relactrl-edges")
    assert (folder / "config.json").is_file() and folder.is_relative_to(ROOT / "diffskip")
    by_name = load_control("fashion-pixart-relactrl-edges")
    by_path = load_control(str(folder))
    assert isinstance(by_name, RelaCtrlModel) and by_name.config.positions == by_path.config.positions


def test_a_control_branch_on_the_wrong_base_is_one_line_naming_both(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "e.png")
    status, _, err = _run(capsys, "generate", "--model", "fashion-sd", "--control", "fashion-pixart-relactrl-edges",
                          "--control-image", str(tmp_path / "e.png"), "--out", str(tmp_path / "g"))
    line = _error(err)
    assert status == 2 and "'fashion-pixart-relactrl-edges' was trained for base model 'fashion-pixart', not " \
                           "'fashion-sd'" in line and "--model fashion-pixart" in line
    assert not (tmp_path / "g").exists()


def test_condition_images_one_for_all_or_one_per_prompt(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "e.png")
    argv = ["generate", "--model", "fashion-pixart", "--control", "fashion-pixart-relactrl-edges",
            "--prompt", "a", "--prompt", "b", "--prompt", "c", "--out", str(tmp_path / "g")]
    status, _, err = _run(capsys, *argv, "--control-image", str(tmp_path / "e.png"),
                          "--control-image", str(tmp_path / "e.png"))
    assert status == 2 and "--control-image given 2 times for 3 prompts" in _error(err)


def test_batch_identity_covers_condition_image_content_and_batch_size(tmp_path, capsys):
    from diffskip.batch import read_prompts, row_differences

    from PIL import Image

    Image.new("RGB", (16, 16), "white").save(tmp_path / "e.png")
    (tmp_path / "p.jsonl").write_text('{"prompt": "a dress", "control_image": "e.png"}\n')
    rows, _ = read_prompts(tmp_path / "p.jsonl")
    manifest = {0: {"prompt": "a dress", "seed": 0, "negative_prompt": None, "control_sha256": rows[0].control_sha256}}
    assert row_differences(manifest, rows) == []
    Image.new("RGB", (16, 16), "black").save(tmp_path / "e.png")  # same path, other pixels
    changed, _ = read_prompts(tmp_path / "p.jsonl")
    assert any("control_sha256" in d for d in row_differences(manifest, changed))
    (tmp_path / "q.txt").write_text("a shirt\n")
    batch = ["generate", "--prompts", str(tmp_path / "q.txt"), "--out", str(tmp_path / "b"), "--steps", "2", *TINY]
    assert _run(capsys, *batch, "--batch-size", "1")[0] == 0
    status, _, err = _run(capsys, *batch, "--batch-size", "2")
    assert status == 2 and "batch_size 1 there, 2 now" in _error(err)


def test_prompt_files_strip_a_bom_and_refuse_non_string_prompts(tmp_path):
    from diffskip.batch import read_prompts

    (tmp_path / "p.txt").write_bytes("\ufeffa shirt\na coat\n".encode())
    rows, bad = read_prompts(tmp_path / "p.txt")
    assert [r.prompt for r in rows] == ["a shirt", "a coat"] and not bad
    (tmp_path / "p.jsonl").write_bytes(b'\xef\xbb\xbf{"prompt": "a bag"}\n{"prompt": 5}\n{"prompt": ["x"]}\n')
    rows, bad = read_prompts(tmp_path / "p.jsonl")
    assert [r.prompt for r in rows] == ["a bag"] and len(bad) == 2
    assert all("'prompt' must be a non-empty string" in b.problem for b in bad)


def test_plan_files_without_policy_or_nested_too_deeply_are_one_line(tmp_path, capsys):
    (tmp_path / "nopolicy.json").write_text(json.dumps({"format": "diffskip-plan/1", "num_steps": 2}))
    (tmp_path / "deep.json").write_text('{"format": "diffskip-plan/1", "policy": ' + "[" * 100000 + "]" * 100000 + "}")
    for plan in ("nopolicy.json", "deep.json"):
        status, _, err = _run(capsys, "generate", *TINY, "--plan", str(tmp_path / plan), "--out", str(tmp_path / "g"))
        assert status == 2 and "plan" in _error(err).split("error:", 1)[1], plan


def test_a_plan_reports_flops_and_fidelity_against_the_full_run_it_was_tuned_for(tmp_path, capsys):
    plan = {"format": "diffskip-plan/1", "model": "tiny-sd", "policy": "never", "num_steps": 2, "flops": 0.5,
            "psnr": 30.0, "budget": 0.5, "full_steps": 4, "scheduler": "own", "skip": 0, "table": []}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    status, _, err = _run(capsys, "generate", *TINY, "--plan", str(tmp_path / "plan.json"), "--prompt", "a",
                          "--out", str(tmp_path / "g"))
    assert status == 2 and "records no denoiser fingerprint" in err  # a hand-written plan: refused unless forced
    status, out, _ = _run(capsys, "generate", *TINY, "--plan", str(tmp_path / "plan.json"), "--force", "--prompt",
                          "a", "--out", str(tmp_path / "g"))
    stats = json.loads((tmp_path / "g" / "stats.json").read_text())
    assert status == 0 and stats["steps"] == 2 and stats["full_steps"] == 4
    assert stats["flops_vs_full"] == pytest.approx(0.5) and "FLOPs 0.500 of full (4 steps)" in out
    assert stats["psnr_vs_baseline"] is not None  # 2 steps against the 4-step run: not identical


def test_the_grid_warms_up_and_prints_wall_clock_beside_flops(tmp_path, capsys):
    status, out, _ = _run(capsys, "generate", *TINY, "--steps", "4", "--policy", "interval:every=2", "--prompt", "a",
                          "--repeats", "3", "--out", str(tmp_path / "g"))
    stats = json.loads((tmp_path / "g" / "stats.json").read_text())
    assert status == 0 and stats["repeats"] == 3
    assert stats["speedup_wall"] == pytest.approx(stats["baseline_seconds"] / stats["seconds"], rel=0.02)
    assert "x wall-clock, median of 3 after a warm-up" in out and "x fewer)" in out


def test_the_default_policy_follows_the_step_count(tmp_path, capsys):
    assert default_policy(MIN_STEPS_EVERY[3]) == "interval:every=3" == default_policy(DEFAULT_STEPS)
    assert default_policy(MIN_STEPS_EVERY[3] - 1) == default_policy(MIN_STEPS_EVERY[2]) == "interval:every=2"
    assert default_policy(MIN_STEPS_EVERY[2] - 1) == "never" == default_policy(1)
    assert _run(capsys, "generate", *TINY, "--steps", "5", "--prompt", "a", "--out", str(tmp_path / "g"))[0] == 0
    assert json.loads((tmp_path / "g" / "run.json").read_text())["policy"] == default_policy(5)


def test_every_option_has_a_description_and_help_shows_defaults():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "cmd")
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, (name, action.dest)
    help_ = subprocess.run([sys.executable, "-m", "diffskip", "generate", "--help"], capture_output=True, text=True,
                           check=True).stdout
    for text in ("(default: fashion-sd)", "(default: 4.0)", "(default: 96)", "(default: out/generate)",
                 "(default: 0)", f"else {DEFAULT_STEPS})"):
        assert text in " ".join(help_.split()), text


def test_eval_reads_only_the_numbered_images_of_a_generate_folder(tmp_path, capsys):
    from diffskip.cli.eval import load_folder

    assert _run(capsys, "generate", *TINY, "--steps", "2", "--prompt", "a", "--prompt", "b",
                "--out", str(tmp_path / "g"))[0] == 0
    images = load_folder(str(tmp_path / "g"), "images")  # grid.png and grid_baseline.png differ in size
    assert images.shape[0] == 2


def test_the_cli_modules_import_each_other_without_a_cycle_and_init_holds_no_code():
    import ast

    folder = ROOT / "diffskip" / "cli"
    edges = {}
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        edges[path.stem] = {(n.module or "").split(".")[0] or "__init__" for n in ast.walk(tree)
                            if isinstance(n, ast.ImportFrom) and n.level == 1}
        if path.stem == "__init__":
            assert not [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]

    def cycle_from(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        return next((c for m in edges.get(node, ()) if m != "__init__" for c in [cycle_from(m, path + [node])] if c),
                    None)

    assert "generate" not in edges["checks"]  # the cycle issue #19 named
    assert [cycle_from(m, []) for m in edges] == [None] * len(edges)
    edges["common"] = edges["common"] | {"grid"}  # the check itself finds a cycle when there is one
    assert cycle_from("grid", []) in (["grid", "common", "grid"], ["grid", "checks", "common", "grid"])
