"""Batch generation over a prompt file: resumable, one seeded generator per image, split across processes.

Every image has its own generator seeded from its row (default: base seed + index), and batches are formed
from the whole prompt list the same way on every run, so a resumed run or an `accelerate launch` run over
many processes writes bit-identical images to one uninterrupted single-process run. PNGs are written to a
temporary name and renamed; `manifest.jsonl` gets one flushed line per image, after its PNG.
"""
from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from . import jsonl
from .errors import short
from .fileio import write_atomic
from .promptfile import MAX_SEED, MAX_SIZE, BadRow, Row, read_prompts
from .runfolder import check_png

__all__ = ["Row", "BadRow", "read_prompts", "plan_batches", "BatchRun", "MANIFEST", "row_differences",
           "MAX_SEED", "MAX_SIZE"]
logger = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"


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
            # size None: the default
            if (value is not None or key in ("negative_prompt", "control_sha256")) and m.get(key) != value:
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
