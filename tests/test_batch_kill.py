"""A batch run killed by SIGKILL at 20 seeded random points loses, duplicates and mixes nothing.

Each run is a forked child of this test process (imports already done, so a start costs milliseconds), killed
after a seeded random number of new images plus a random fraction of one; after every kill the folder holds only
complete images equal to an uninterrupted run's, and the run after the last kill completes it. Invariants are
checked, never timings.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from diffskip.cli import main

ARGS = ["--model", "tiny-sd", "--steps", "2", "--batch-size", "2", "--device", "cpu", "--policy", "interval:every=2"]
KEEP = ("index", "seed", "prompt", "negative_prompt", "width", "height", "sha256", "policy", "steps", "model")


def _run(prompts: Path, out: Path) -> int:
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        try:
            return main(["generate", "--prompts", str(prompts), "--out", str(out), *ARGS])
        except SystemExit as exc:
            return int(exc.code)


def _child(prompts: Path, out: Path) -> None:
    from tqdm import tqdm

    # tqdm's class lock is a multiprocessing semaphore shared with the parent and every sibling: a sibling
    # killed while holding it would block this child forever (a test artefact; separate runs never share it)
    tqdm.set_lock(threading.RLock())
    os._exit(_run(prompts, out))


def _pngs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}


def _rows(out: Path) -> list[dict]:
    return [{k: r[k] for k in KEEP} for r in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())]


@pytest.mark.skipif(sys.platform == "win32" or "fork" not in multiprocessing.get_all_start_methods(),
                    reason="needs fork")
def test_sigkill_at_20_random_points_then_resume_loses_duplicates_and_mixes_nothing(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"garment number {i}\n" for i in range(16)))
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert _run(prompts, ref) == 0  # one uninterrupted run (also warms up every import before forking)
    expect, identity = _pngs(ref), json.loads((ref / "run.json").read_text())
    ctx, rng = multiprocessing.get_context("fork"), random.Random(14)
    progress = []
    for _ in range(20):
        child = ctx.Process(target=_child, args=(prompts, out))
        child.start()
        target = len(_pngs(out)) + rng.randrange(0, 3)  # kill after 0-2 more images, plus a random fraction of one
        deadline = time.monotonic() + 120  # a hung child fails the test instead of hanging it
        while len(_pngs(out)) < target and child.is_alive():
            assert time.monotonic() < deadline, f"no new image in 120 s (have {len(_pngs(out))}, want {target})"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.1))
        if child.is_alive():
            os.kill(child.pid, signal.SIGKILL)
        child.join()
        assert child.exitcode in (0, -signal.SIGKILL)  # killed, or it had finished (never an error exit)
        have = _pngs(out)
        assert all(have[name] == expect[name] for name in have)  # only complete images, equal to the reference
        if (out / "run.json").exists():
            assert json.loads((out / "run.json").read_text()) == identity  # never another run's identity
        assert not [p for p in out.glob("*") if p.name not in expect and p.name not in
                    ("manifest.jsonl", "run.json", ".diffskip.lock") and not p.name.endswith(".tmp")]
        progress.append(len(have))
    assert any(0 < p < 16 for p in progress)  # some kills landed between images (kills after the last also count)
    assert _run(prompts, out) == 0  # the same command again finishes the batch
    assert _pngs(out) == expect and not list(out.glob(".*.tmp"))
    rows = _rows(out)
    assert [r["index"] for r in rows] == list(range(16))  # every image exactly once, sorted
    assert rows == _rows(ref)
