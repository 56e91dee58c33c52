"""Batch generation: prompt files, bad rows, resumability after SIGKILL, 2-process accelerate runs."""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from diffskip.batch import Row, compact_manifest, plan_batches, read_prompts
from diffskip.cli import generate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "samples" / "batch_generate.py"
ARGS = ["--model", "tiny-sd", "--steps", "3", "--batch-size", "2", "--device", "cpu", "--policy", "interval:every=2"]


def _args(prompts: Path, out: Path) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    generate.add_arguments(p)
    return p.parse_args(["--prompts", str(prompts), "--out", str(out), *ARGS])


def _pngs(out: Path) -> dict[int, bytes]:
    return {int(p.stem): p.read_bytes() for p in sorted(out.glob("*.png"))}


def _manifest(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


def test_read_prompts_txt_and_jsonl_with_per_row_fields_and_line_numbers(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("# comment\na cat\n\n  a dog  \n")
    rows, bad = read_prompts(txt, base_seed=10)
    assert rows == [Row(0, "a cat", 10), Row(1, "a dog", 11)] and bad == []
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a", "seed": 5, "negative_prompt": "n", "width": 16, "height": 24}\n'
                  '{"prompt": "b", "colour": "red"}\n'
                  'not json\n\n'
                  '{"prompt": "c", "width": 20}\n'
                  '{"prompt": ""}\n'
                  '{"prompt": "d", "seed": -1}\n'
                  '{"prompt": "e"}\n')
    rows, bad = read_prompts(jl, base_seed=100)
    assert rows == [Row(0, "a", 5, "n", 16, 24), Row(6, "e", 106)]
    assert [(b.index, b.where) for b in bad] == [(1, f"{jl}:2"), (2, f"{jl}:3"), (3, f"{jl}:5"), (4, f"{jl}:6"),
                                                  (5, f"{jl}:7")]
    assert "unknown keys ['colour']" in str(bad[0]) and "invalid JSON" in bad[1].problem
    assert "'width'=20 must be a multiple of 8 in [8, 2048]" in bad[2].problem and "non-empty" in bad[3].problem
    assert str(bad[4]) == f"{jl}:7: 'seed'=-1 must be an int in [0, 2**64 - 1] (the generator's range)"
    with pytest.raises(ValueError, match=r"suffix '\.csv' is not supported; allowed: \.txt"):
        read_prompts(tmp_path / "p.csv")


def test_batches_group_same_size_and_negative_prompt_in_order():
    rows = [Row(0, "a", 0), Row(1, "b", 1, "neg"), Row(2, "c", 2), Row(3, "d", 3, None, 16, 16), Row(4, "e", 4),
            Row(5, "f", 5, "neg")]
    assert [[r.index for r in b] for b in plan_batches(rows, 2)] == [[0, 2], [4], [1, 5], [3]]
    with pytest.raises(ValueError, match="batch_size=0 is invalid"):
        plan_batches(rows, 0)


def test_compact_manifest_drops_torn_lines_and_rows_without_png(tmp_path):
    for i in (0, 2):
        Image.new("RGB", (2, 2)).save(tmp_path / f"{i:06d}.png")
    (tmp_path / "manifest.jsonl").write_text('{"index": 2, "seed": 1}\n{"index": 0, "seed": 9}\n'
                                             '{"index": 1, "seed": 0}\n{"index": 0, "seed": 0}\n{"index": 3, "se')
    rows = compact_manifest(tmp_path)
    assert rows == {0: {"index": 0, "seed": 0}, 2: {"index": 2, "seed": 1}}
    assert (tmp_path / "manifest.jsonl").read_text() == '{"index": 0, "seed": 0}\n{"index": 2, "seed": 1}\n'


def test_bad_rows_are_reported_and_the_good_rows_still_run(tmp_path, capsys):
    jl = tmp_path / "p.jsonl"
    jl.write_text('{"prompt": "a shirt"}\n{"prompt": 3}\n{"prompt": "a coat", "negative_prompt": "blurry"}\n')
    assert generate.run_batch(_args(jl, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"error: {jl}:2: 'prompt' must be a non-empty string" in err
    assert sorted(_pngs(tmp_path / "out")) == [0, 2]
    rows = _manifest(tmp_path / "out")
    assert [(r["index"], r["seed"], r["negative_prompt"]) for r in rows] == [(0, 0, None), (2, 2, "blurry")]
    assert all(r["policy"] == "interval:every=2" and 0 < r["flops_fraction"] < 1 and r["computed"] > 0
               and r["reused"] > 0 for r in rows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows_from_both_processes(out: Path) -> bool:
    try:
        return {r["process"] for r in _manifest(out)} == {0, 1}
    except (FileNotFoundError, json.JSONDecodeError):  # not there yet, or a line being written
        return False


def test_accelerate_2_process_run_killed_mid_run_then_resumed_matches_one_uninterrupted_run(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(40)))
    ref, out = tmp_path / "ref", tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), str(SCRIPT), "--prompts", str(prompts), "--out", str(out),
              *ARGS]
    log = (tmp_path / "launch.log").open("w")
    run = subprocess.Popen(launch, env=env, stdout=log, stderr=log, start_new_session=True)
    while not _rows_from_both_processes(out) and run.poll() is None:
        time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL)  # the launcher and both workers, mid-run
    assert run.wait() == -signal.SIGKILL, (tmp_path / "launch.log").read_text()[-3000:]
    before = _pngs(out)
    assert 0 < len(before) < 40 and {r["process"] for r in _manifest(out)} == {0, 1}
    assert all(Image.open(out / f"{i:06d}.png").load() is not None for i in before)  # no torn PNG
    assert generate.run_batch(_args(prompts, ref)) == 0  # one uninterrupted single-process run
    expect = _pngs(ref)
    assert {i: expect[i] for i in before} == before  # what both processes wrote is bit-identical
    assert generate.run_batch(_args(prompts, out)) == 0  # started again: only the missing images
    assert _pngs(out) == expect and sorted(expect) == list(range(40))
    rows = _manifest(out)
    assert [r["index"] for r in rows] == list(range(40))  # every index exactly once
    assert [r["seed"] for r in rows] == list(range(40))


def test_diffusers_custom_pipeline_file_loads_offline_and_runs_accelerated(tmp_path):
    import numpy as np
    import torch
    from diffusers import DiffusionPipeline

    from diffskip.testing import tiny_pipeline

    plain = tiny_pipeline("sd")
    plain.save_pretrained(tmp_path / "sd")
    pipe = DiffusionPipeline.from_pretrained(tmp_path / "sd", custom_pipeline=str(ROOT / "pipelines/diffskip_sd.py"),
                                             trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe).__name__ == "DiffSkipStableDiffusionPipeline"

    def call(p, **kw):
        return p(["a cat", "a dog"], num_inference_steps=6, generator=torch.Generator().manual_seed(0),
                 output_type="np", **kw).images

    fast = call(pipe)
    st = pipe.last_stats
    k = st.skippable  # the UNet's skippable layers
    assert k > 5 and (st.steps, st.computed, st.reused) == (6, 3 * 2 * k * 2, 3 * 2 * k * 2)  # every=3: 0, 3, final 5
    assert st.flops_fraction < 0.8
    exact = call(pipe, policy="never")
    assert pipe.last_stats.reused == 0
    assert np.array_equal(exact, call(plain)) and not np.array_equal(fast, exact)
    call(pipe, policy="uniform:speedup=2")
    assert pipe.last_stats.computed == 2 * 2 * round(6 * k / 2)
