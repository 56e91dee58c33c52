"""Resumable JSON-lines files: one whole line per record, torn last lines dropped, atomic rewrites."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

from .fileio import CLOEXEC, NOFOLLOW, FileError, read_bytes, why, write_atomic

__all__ = ["read", "append", "rewrite"]
logger = logging.getLogger(__name__)


def read(path: str | Path) -> list[dict]:
    """Return the JSON objects of a .jsonl file in order; skip lines a killed writer left unreadable (or not UTF-8)."""
    path = Path(path)
    if not os.path.lexists(path):
        return []
    out = []
    for raw in read_bytes(path, "manifest").splitlines():
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            logger.info("dropping an unreadable line of %s (a run was killed while writing it): %r", path, raw[:200])
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


def append(path: str | Path, record: dict) -> None:
    """Append one record as one write (O_APPEND, never through a link), so concurrent writers never interleave."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | NOFOLLOW | CLOEXEC, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:  # a read-only folder, or a link at the manifest's name (never written through)
        raise FileError(f"manifest {path}: cannot append to it ({why(exc)}); allowed: a regular file in a folder you "
                        f"can write. Fix: change its permissions or use another --out.") from None


def rewrite(path: str | Path, records: Iterable[dict]) -> None:
    """Replace a .jsonl file with `records` atomically (temporary file, then rename; never through a link)."""
    write_atomic(path, "".join(json.dumps(d) + "\n" for d in records), "manifest")
