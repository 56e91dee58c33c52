"""Batch generation over a prompt file: resumable, one seeded generator per image, split across processes.

Every image has its own generator seeded from its row (default: base seed + index), and batches are formed
from the whole prompt list the same way on every run, so a resumed run or an `accelerate launch` run over
many processes writes bit-identical images to one uninterrupted single-process run. PNGs are written to a
temporary name and renamed; `manifest.jsonl` gets one flushed line per image, after its PNG.
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import io
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from . import jsonl
from .errors import PromptFileError, short
from .fileio import FileError, describe, image_digest, read_bytes, why, write_atomic
from .runfolder import check_png

__all__ = ["Row", "BadRow", "read_prompts", "plan_batches", "BatchRun", "MANIFEST", "row_differences",
           "MAX_SEED", "MAX_SIZE"]
logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
JSONL_KEYS = {"prompt", "seed", "negative_prompt", "width", "height", "control_image"}
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 .. 2**64 - 1
MAX_SIZE = 2048  # pixels per side: a typo like 100000 is refused instead of allocating 100 GB


@dataclass(frozen=True)
class Row:
    """One image to generate: its index (file name), prompt, seed, negative prompt and size."""

    index: int
    prompt: str
    seed: int
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    control_image: str | None = None  # condition image path for a control model (docs/control.md)
    control_sha256: str | None = None  # the condition image's content hash (part of the run identity)


@dataclass(frozen=True)
class BadRow:
    """A prompt-file row that cannot be generated: where it is and what is wrong."""

    index: int
    where: str  # "file:line"
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def _check_jsonl(d: Any) -> str | None:
    """Return what is wrong with one jsonl row (None if it is fine)."""
    if not isinstance(d, dict):
        return f"expected a JSON object like {{\"prompt\": \"...\"}}, got {type(d).__name__}"
    unknown = sorted(set(d) - JSONL_KEYS)
    if unknown:
        return f"unknown keys {unknown}; allowed: {sorted(JSONL_KEYS)}"
    if not isinstance(d.get("prompt"), str) or not d["prompt"].strip():
        return "'prompt' must be a non-empty string"
    seed = d.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        return f"'seed'={short(seed)} must be an int in [0, 2**64 - 1] (the generator's range)"
    if d.get("negative_prompt") is not None and not isinstance(d["negative_prompt"], str):
        return f"'negative_prompt'={short(d['negative_prompt'])} must be a string"
    if d.get("control_image") is not None and not isinstance(d["control_image"], str):
        return f"'control_image'={short(d['control_image'])} must be a path string"
    for k in ("width", "height"):
        v = d.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or not 8 <= v <= MAX_SIZE or v % 8):
            return f"{k!r}={short(v)} must be a multiple of 8 in [8, {MAX_SIZE}]"
    return None


def read_prompts(path: str | Path, base_seed: int = 0, width: int | None = None,
                 height: int | None = None) -> tuple[list[Row], list[BadRow]]:
    """Read a .txt (one prompt a line) or .jsonl prompt file; bad rows are returned, not raised.

    Blank lines and lines starting with '#' are skipped; every other line takes the next index, bad or not,
    so fixing a bad row later never renumbers the others. `width`/`height` are defaults for rows without.
    """
    path = Path(path)
    if path.suffix not in (".txt", ".jsonl"):
        raise PromptFileError(f"prompt file {str(path)!r}: suffix {path.suffix!r} is not supported; allowed: .txt "
                              f"(one prompt a line) or .jsonl (one {{\"prompt\": ...}} object a line).")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise PromptFileError(f"prompt file {str(path)!r}: {'does not exist' if exc.errno == errno.ENOENT else why(exc)}; "
                              f"allowed: a .txt or .jsonl file. Fix the --prompts path.") from None
    if not stat.S_ISREG(mode):  # a FIFO or device is refused, never waited on
        raise PromptFileError(f"prompt file {str(path)!r} is {describe(mode)}; allowed: a .txt or .jsonl file. Fix "
                              f"the --prompts path.")
    data = read_bytes(path, "--prompts")
    data = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data  # a BOM is not part of a prompt
    rows: list[Row] = []
    bad: list[BadRow] = []
    index = 0
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as e:
            bad.append(BadRow(index, f"{path}:{n}", f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                                     f"{e.start + 1}); save the file as UTF-8"))
            index += 1
            continue
        if not text or text.startswith("#"):
            continue
        problem = _parse_row(path, text, index, base_seed, width, height, rows)
        if problem:
            bad.append(BadRow(index, f"{path}:{n}", problem))
        index += 1
    return rows, bad


def _parse_row(path: Path, text: str, index: int, base_seed: int, width: int | None, height: int | None,
               rows: list[Row]) -> str | None:
    """Append the row `text` describes to `rows`, or return what is wrong with it."""
    if path.suffix == ".txt":
        d: Any = {"prompt": text}
    else:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            return f"invalid JSON ({e.msg} at column {e.colno})"
        except RecursionError:
            return "invalid JSON (nested too deeply)"
        problem = _check_jsonl(d)
        if problem:
            return problem
    seed = d.get("seed", base_seed + index)
    if seed > MAX_SEED:
        return f"seed {base_seed} + row {index} = {seed} is over 2**64 - 1; give this row a 'seed' or a smaller --seed"
    control, digest = None if d.get("control_image") is None else path.parent / d["control_image"], None
    if control is not None:
        try:
            digest = image_digest(control, "'control_image'")
        except FileError as exc:
            return f"{exc} (paths are relative to the prompt file)"
    rows.append(Row(index, d["prompt"], seed, d.get("negative_prompt"), d.get("width", width),
                    d.get("height", height), control and str(control), digest))
    return None


def row_differences(manifest: dict[int, dict], rows: list[Row]) -> list[str]:
    """Return how the rows already in a folder's manifest differ from the prompt file's rows now."""
    now = {r.index: r for r in rows}
    out = []
    for i, m in sorted(manifest.items()):
        r = now.get(i)
        if r is None:
            out.append(f"image {i} ({short(m.get('prompt'), 40)}) has no good row {i} in the prompt file now")
            continue
        for key, value in (("prompt", r.prompt), ("seed", r.seed), ("negative_prompt", r.negative_prompt),
                           ("width", r.width), ("height", r.height), ("control_sha256", r.control_sha256)):
            if (value is not None or key in ("negative_prompt", "control_sha256")) and m.get(key) != value:  # size None: the default
                out.append(f"row {i} {key} {short(m.get(key), 40)} there, {short(value, 40)} now")
    return out


def plan_batches(rows: list[Row], batch_size: int) -> list[list[Row]]:
    """Group rows with the same size and negative prompt (in first-seen order), then cut into batches."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} is invalid; allowed: an int >= 1.")
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.width, r.height, r.negative_prompt, r.control_image), []).append(r)
    return [g[i:i + batch_size] for g in groups.values() for i in range(0, len(g), batch_size)]


def png_path(out: Path, index: int) -> Path:
    """Return the PNG path of image `index`."""
    return out / f"{index:06d}.png"


def manifest_rows(out: Path) -> dict[int, dict]:
    """Return the last manifest row per index (torn lines dropped), without touching the folder."""
    return {d["index"]: d for d in jsonl.read(out / MANIFEST)
            if isinstance(d.get("index"), int) and not isinstance(d["index"], bool)}


def compact_manifest(out: Path, problems: list[str] | None = None) -> dict[int, dict]:
    """Rewrite the manifest with the last row per index whose PNG checks out, sorted; drop torn lines.

    A finished image that is missing, empty, damaged or differs from its row is deleted (it is made again) and
    described in `problems`; temporaries a killed run left behind are removed.
    """
    rows = manifest_rows(out)
    kept = {}
    for i in sorted(rows):
        path = png_path(out, i)
        problem = check_png(path, rows[i])
        if problem is None:
            kept[i] = rows[i]
            continue
        if problem != "missing":
            path.unlink()
            if problems is not None:
                problems.append(f"{path.name}: {problem}")
    for tmp in out.glob(".*.tmp"):
        tmp.unlink()
    jsonl.rewrite(out / MANIFEST, kept.values())
    return kept


def read_done(out: Path) -> set[int]:
    """Return the indices whose PNG and manifest row both exist."""
    done = {d["index"] for d in jsonl.read(out / MANIFEST) if isinstance(d.get("index"), int)}
    return {i for i in done if png_path(out, i).exists()}


class BatchRun:
    """Generate the images of a prompt list into `out`, skipping finished ones, over accelerate processes.

    Args:
        pipe: a DiffSkipPipeline (or any diffusers pipeline; then no stats are recorded).
        out: output folder for `{index:06d}.png` and `manifest.jsonl`.
        steps, guidance: denoising steps and guidance scale.
        batch_size: images per pipeline call (rows with the same size / negative prompt only).
        state: an `accelerate.PartialState`; None makes one (a single process unless launched by accelerate).
        control_scale: multiplies the control residuals of rows with a condition image (None: the pipeline's 1.0).
    """

    def __init__(self, pipe: Any, out: str | Path, steps: int, guidance: float, batch_size: int = 4, state=None,
                 model: str | None = None, control_scale: float | None = None):
        from accelerate import PartialState

        self.pipe, self.out, self.steps, self.guidance, self.batch_size = pipe, Path(out), steps, guidance, batch_size
        self.state = state or PartialState()
        self.policy = str(getattr(pipe, "policy", "none"))
        self.model, self.control_scale = model, control_scale
        self.redone: list[str] = []  # finished images that failed their check and are made again
        self.made = 0  # images this process wrote

    def prepare(self, rows: list[Row]) -> list[list[Row]]:
        """Check and repair the manifest (main process), then return this process's share of unfinished batches."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.state.is_main_process:
            compact_manifest(self.out, self.redone)
        self.state.wait_for_everyone()
        self.done = read_done(self.out)
        pending = [b for b in plan_batches(rows, self.batch_size) if any(r.index not in self.done for r in b)]
        self.state.wait_for_everyone()  # every process has read the same manifest before anyone appends
        with self.state.split_between_processes(pending) as mine:
            return list(mine)

    def run(self, batches: list[list[Row]]) -> Iterator[dict]:
        """Generate `batches` (whole, so each image's batch is the same as in any other run); yield rows."""
        for batch in batches:
            t0 = time.perf_counter()
            images = self._generate(batch)
            secs = (time.perf_counter() - t0) / len(batch)
            stats = getattr(self.pipe, "last_stats", None)
            for row, image in zip(batch, images):
                if row.index in self.done:
                    continue
                rec = self._write(row, image, secs, stats, len(batch))
                self.made += 1
                yield rec

    def finish(self) -> dict[int, dict]:
        """Wait for all processes, then sort and compact the manifest (main process); return its rows."""
        self.state.wait_for_everyone()
        rows = compact_manifest(self.out) if self.state.is_main_process else {}
        self.state.wait_for_everyone()
        return rows

    def _generate(self, batch: list[Row]) -> list:
        r0 = batch[0]
        kw: dict[str, Any] = {"num_inference_steps": self.steps, "guidance_scale": self.guidance,
                              "generator": [torch.Generator("cpu").manual_seed(r.seed) for r in batch]}
        if r0.negative_prompt is not None:
            kw["negative_prompt"] = [r0.negative_prompt] * len(batch)
        kw.update({k: v for k, v in (("width", r0.width), ("height", r0.height), ("control_image", r0.control_image))
                   if v is not None})
        if r0.control_image is not None and self.control_scale is not None:
            kw["control_scale"] = self.control_scale
        return self.pipe([r.prompt for r in batch], **kw).images

    def _write(self, row: Row, image, secs: float, stats, n: int) -> dict:
        path = png_path(self.out, row.index)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        write_atomic(path, buf.getvalue(), "--out")  # a killed run never leaves a partial PNG under its final name
        rec = {"index": row.index, "seed": row.seed, "prompt": row.prompt, "negative_prompt": row.negative_prompt,
               "width": image.width, "height": image.height, "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
               "model": self.model, "steps": self.steps, "guidance": self.guidance,
               "policy": self.policy, "seconds": round(secs, 4),
               "batch_size": n, "process": self.state.process_index,
               "computed": None if stats is None else stats.computed / n,
               "reused": None if stats is None else stats.reused / n,
               "flops_fraction": None if stats is None else stats.flops_fraction}
        if row.control_image is not None:
            rec.update(control_image=row.control_image, control_sha256=row.control_sha256)
        jsonl.append(self.out / MANIFEST, rec)  # one append per row: whole lines
        return rec
