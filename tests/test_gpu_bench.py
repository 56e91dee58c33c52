"""benchmarks/gpu.py at tiny sizes on CPU: every row present, sane numbers, the report written (so it cannot rot)."""
from __future__ import annotations

import pytest

from benchmarks import gpu

STEPS = 3


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.md"
    rows = gpu.main(["--tiny", "--out", str(out), "--steps", str(STEPS), "--repeats", "1"])
    return rows, out.read_text()


def test_every_model_mode_and_policy_has_a_row_without_error(bench):
    rows, _ = bench
    keys = [(r["model"], r["mode"], r["policy"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(gpu.CASES) * len(gpu.MODES) * len(gpu.POLICIES)
    assert [r for r in rows if "error" in r] == []
    for model in gpu.CASES:  # compile mode really compiled the units (its plain cell compiles them)
        compiled = [r["graphs"] for r in rows if r["mode"] == "compile" and r["model"].lower().startswith(model)]
        assert compiled[0] > 0, model
    assert all(r["graphs"] == 0 for r in rows if r["mode"] == "eager")


def test_numbers_are_sane(bench):
    rows, _ = bench
    for r in rows:
        assert r["ms_step"] > 0 and r["speedup"] > 0 and r["peak_bytes"] is None  # CPU: no CUDA peak
        if r["policy"] == "plain":
            assert r["flops_fraction"] == 1.0 and r["cache_bytes"] == 0 and r["syncs_step"] == 0
        else:  # both policies reuse something in 3 steps (first and last compute)
            assert 0 < r["flops_fraction"] < 1 and r["computed"] > 0 and r["reused"] > 0 and r["cache_bytes"] > 0
            assert r["wall_over_flop"] == pytest.approx(r["speedup"] * r["flops_fraction"])


def test_syncs_are_per_step_not_per_block(bench):
    rows, _ = bench
    by = {(r["model"], r["mode"], r["policy"]): r["syncs_step"] for r in rows}
    for (model, mode, policy), syncs in by.items():
        if policy == "interval:every=3":  # the step clock reads the timestep once per call
            assert syncs == 1
        if policy.startswith("threshold"):  # plus one drift read per step after the first
            assert syncs == pytest.approx(1 + (STEPS - 1) / STEPS)


def test_report_has_the_table_targets_and_command(bench):
    rows, md = bench
    assert "Targets:" in md and "python -m benchmarks.gpu --tiny" in md and "CPU (tiny configs" in md
    table = [line for line in md.splitlines() if line.startswith("| ") and "model" not in line]
    assert len(table) == len(rows)
    assert all(r["model"] in md for r in rows)
