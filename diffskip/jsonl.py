"""Resumable JSON-lines files: one whole line per record, torn last lines dropped, atomic rewrites."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable

__all__ = ["read", "append", "rewrite"]
logger = logging.getLogger(__name__)


def read(path: str | Path) -> list[dict]:
    """Return the JSON objects of a .jsonl file in order; skip lines a killed writer left unreadable."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            logger.info("dropping an unreadable line of %s (a run was killed while writing it): %r", path, line)
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


def append(path: str | Path, record: dict) -> None:
    """Append one record as one write (O_APPEND), so concurrent writers never interleave inside a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def rewrite(path: str | Path, records: Iterable[dict]) -> None:
    """Replace a .jsonl file with `records` atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(d) + "\n" for d in records), encoding="utf-8")
    os.replace(tmp, path)
