"""Prompt files for batch generation: .txt (one prompt a line) or .jsonl rows, each checked; bad rows reported.

A UTF-8 byte-order mark is dropped; a FIFO or device is refused (never waited on); a row's condition image must
be a readable image, and its content hash becomes part of the row (so a changed image is a different row).
"""
from __future__ import annotations

import codecs
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PromptFileError, short
from .fileio import FileError, describe, image_digest, read_bytes, why

__all__ = ["Row", "BadRow", "read_prompts", "JSONL_KEYS", "MAX_SEED", "MAX_SIZE"]

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
        what = "does not exist" if exc.errno == errno.ENOENT else why(exc)
        raise PromptFileError(f"prompt file {str(path)!r}: {what}; "
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
    seed = base_seed + index if d.get("seed") is None else d["seed"]  # "seed": null is the default seed too
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
