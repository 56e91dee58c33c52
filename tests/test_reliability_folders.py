"""Output folders and files never lose finished work, never write through a link, and refuse FIFOs (issues #23, #24)."""
from __future__ import annotations

import json
import os
import signal
import struct
import zlib
from pathlib import Path

import pytest

from diffskip.cli import main
from diffskip.runfolder import LOCK_FILE, RunFolder

TINY = ["--model", "tiny-sd", "--steps", "2", "--device", "cpu", "--threads", "1"]


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `diffskip ...` in this process (an alarm turns a hang on a FIFO into a failure); return (status, out, "
      "err)."""
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(120)
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    finally:
        signal.alarm(0)
    out, err = capsys.readouterr()
    return status, out, err


def _hung(*_):
    raise TimeoutError("the command hung (waiting on a FIFO?)")


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1 and lines[0].startswith("diffskip "), err
    return lines[0]


def _grid(tmp_path: Path, *extra: str) -> list[str]:
    return ["generate", "--out", str(tmp_path / "g"), *TINY, "--prompt", "a", "--prompt", "b", *extra]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_failing_rerun_of_a_finished_grid_deletes_nothing(tmp_path, capsys):
    assert _run(capsys, *_grid(tmp_path))[0] == 0
    before = _snapshot(tmp_path / "g")
    assert set(before) == {"000.png", "001.png", "grid.png", "grid_baseline.png", "run.json", "stats.json"}
    for bad in (["--device", "bogus"], ["--steps", "1000", "--overwrite"], ["--size", "12", "--overwrite"]):
        status, _, err = _run(capsys, *_grid(tmp_path, *bad))
        assert status == 2 and _one_line(err)
        assert _snapshot(tmp_path / "g") == before, bad  # every finished file is still there, unchanged


def test_an_identical_rerun_is_a_no_op_that_says_so(tmp_path, capsys):
    assert _run(capsys, *_grid(tmp_path))[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "g").iterdir()}
    status, out, _ = _run(capsys, *_grid(tmp_path))
    assert status == 0 and "nothing to do" in out and "already holds this finished grid" in out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "g").iterdir()} == before


def test_overwrite_publishes_the_new_grid_and_removes_the_old_runs_other_files(tmp_path, capsys):
    assert _run(capsys, *_grid(tmp_path))[0] == 0
    (tmp_path / "g" / "notes.txt").write_text("mine")
    argv = ["generate", "--out", str(tmp_path / "g"), *TINY, "--prompt", "c", "--no-baseline"]
    status, _, err = _run(capsys, *argv)
    assert status == 2 and "holds another run" in _one_line(err)
    assert _run(capsys, *argv, "--overwrite")[0] == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["000.png", "grid.png", "notes.txt", "run.json",
                                                                  "stats.json"]
    assert json.loads((tmp_path / "g" / "run.json").read_text())["prompts"] == ["c"]


def test_the_lock_file_goes_at_exit_and_a_held_folder_refuses_a_second_run(tmp_path, capsys):
    assert _run(capsys, *_grid(tmp_path))[0] == 0
    assert not (tmp_path / "g" / LOCK_FILE).exists()
    with RunFolder(tmp_path / "g", "grid"):
        status, _, err = _run(capsys, *_grid(tmp_path, "--overwrite"))
        assert status == 2 and f"in use by another diffskip run (process {os.getpid()})" in _one_line(err)
    assert not (tmp_path / "g" / LOCK_FILE).exists()


def test_a_lock_that_is_a_link_is_refused_and_its_target_untouched(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "important.txt").write_text("IMPORTANT DATA")
    os.symlink(tmp_path / "important.txt", tmp_path / "g" / LOCK_FILE)
    status, _, err = _run(capsys, *_grid(tmp_path))
    assert status == 2 and f"{LOCK_FILE} is a symbolic link" in _one_line(err)
    assert (tmp_path / "important.txt").read_text() == "IMPORTANT DATA"


def test_links_at_output_names_are_replaced_never_written_through(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("stats.json", "000.png", "grid.png"):
        os.symlink(outside / name, tmp_path / "g" / name)  # dangling links planted in the folder
    assert _run(capsys, *_grid(tmp_path, "--overwrite"))[0] == 0
    assert list(outside.iterdir()) == []
    assert all(not (tmp_path / "g" / n).is_symlink() and (tmp_path / "g" / n).is_file()
               for n in ("stats.json", "000.png", "grid.png"))


def test_batch_resume_with_a_non_utf8_manifest_line_drops_that_line(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a shirt\na coat\n")
    argv = ["generate", "--prompts", str(tmp_path / "p.txt"), "--out", str(tmp_path / "b"), *TINY]
    assert _run(capsys, *argv)[0] == 0
    with open(tmp_path / "b" / "manifest.jsonl", "ab") as f:
        f.write(b'{"index": 1, "prompt": "\xff\xfe"}\n')
    status, out, err = _run(capsys, *argv)
    assert status == 0 and "2 of 2 rows done" in out and "Traceback" not in err


@pytest.mark.parametrize("argv,expect", [
    (["--device", "foo"], "--device 'foo' is not a device name"),
    (["--device", ""], "is not a device name"),
    (["--device", "meta"], "the meta device holds no data"),
    (["--device", "cuda:7"], "no such device on this machine"),
    (["--out", ""], "--out is empty"),
    (["--out", "x" * 300], "the name is too long"),
    (["--model", "m" * 10000], "not a usable name"),
    (["--control-scale", "nan"], "argument --control-scale: 'nan' is invalid; allowed: a finite number in [0, 10]"),
    (["--control-scale", "inf"], "argument --control-scale: 'inf' is invalid"),
    (["--control-scale=-1e30"], "argument --control-scale: '-1e30' is invalid"),
])
def test_devices_paths_and_scales_fail_in_one_line_before_the_folder_is_touched(tmp_path, capsys, argv, expect):
    full = ["generate", "--out", str(tmp_path / "g"), *TINY, *argv]
    status, _, err = _run(capsys, *full)
    assert status == 2 and expect in _one_line(err)
    assert not (tmp_path / "g").exists()


def _bomb(path: Path) -> None:
    """Write a valid PNG header claiming 20000 x 20000 pixels (a decompression bomb) with a tiny payload."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


def test_inputs_that_are_not_images_fifos_devices_or_bombs_are_refused_without_waiting(tmp_path, capsys):
    (tmp_path / "text.png").write_text("not an image")
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "000.png")
    _bomb(tmp_path / "bomb.png")
    control = ["generate", "--model", "fashion-pixart", "--control", "fashion-pixart-relactrl-edges",
               "--out", str(tmp_path / "g"), "--steps", "2"]
    for image, expect in ((tmp_path / "text.png", "not a readable image"), (tmp_path, "is a folder"),
                          ("/dev/null", "is a character device"), (tmp_path / "fifo", "is a FIFO"),
                          (tmp_path / "bomb.png", "too many pixels")):
        status, _, err = _run(capsys, *control, "--control-image", str(image))
        assert status == 2 and expect in _one_line(err), image
    for argv in (["generate", *TINY, "--plan", str(tmp_path / "fifo"), "--out", str(tmp_path / "g")],
                 ["generate", *TINY, "--prompts", str(tmp_path / "fifo.txt"), "--out", str(tmp_path / "g")],
                 ["fit-gaussian", "--samples", "2", "--prompts", str(tmp_path / "fifo"), "--out", str(tmp_path / "s")],
                 ["eval", str(tmp_path / "imgs"), "--prompts", str(tmp_path / "fifo")]):
        status, _, err = _run(capsys, *argv)
        assert status == 2 and "FIFO" in _one_line(err), argv
    assert not (tmp_path / "g").exists()


def test_outputs_of_tune_fit_gaussian_and_eval_refuse_folders_fifos_and_existing_files(tmp_path, capsys):
    (tmp_path / "old.json").write_text("{}")
    (tmp_path / "s.json").write_text("{}")
    os.mkfifo(tmp_path / "fifo.json")
    cases = [(["tune", "--out", str(tmp_path)], "is a folder"),
             (["tune", "--out", str(tmp_path / "old.json")], "exists; allowed: a new path, or --overwrite"),
             (["tune", "--out", str(tmp_path / "fifo.json"), "--overwrite"], "is a FIFO"),
             (["tune", "--out", str(tmp_path / "nowhere" / "p.json")], "does not exist"),
             (["tune", "--out", ""], "--out is empty"),
             (["fit-gaussian", "--images", str(tmp_path), "--out", str(tmp_path / "s")], "exists; allowed"),
             (["fit-gaussian", "--images", str(tmp_path / "old.json"), "--out", str(tmp_path / "t")], "is a regular "
                                                                                                      "file"),
             (["eval", str(tmp_path), "--json", str(tmp_path)], "is a folder")]
    for argv, expect in cases:
        status, _, err = _run(capsys, *argv)
        assert status == 2 and expect in _one_line(err), argv
    assert (tmp_path / "old.json").read_text() == "{}"
