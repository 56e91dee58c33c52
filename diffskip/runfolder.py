"""Output folders that know what made them: a run identity (`run.json`), a lock, and their own file names.

A folder records the run that writes it (model, weights hash, scheduler, steps, guidance, size, policy); a
later run into it must match, or it is refused with one line naming the differences and the ways out (a new
folder, or `overwrite=True`, which deletes only the files diffskip writes). One process at a time: a second
one is refused at once (it does not wait) while the first holds the lock; the operating system drops the
lock when a process ends, even by SIGKILL, so a killed run never leaves a stale lock behind (a normal exit also
removes the lock file). Nothing is ever written through a symbolic link: the lock is created without following
links, and every file is written to a new temporary file and renamed into place.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from .errors import RunFolderError, short
from .fileio import describe, read_bytes, why, write_atomic, write_temp
from .lockfile import release_lock, take_lock

__all__ = ["LOCK_FILE", "RUN_FILE", "RunFolder", "check_png", "config_hash", "differences", "weights_hash"]

RUN_FILE = "run.json"
LOCK_FILE = ".diffskip.lock"
# every name diffskip writes into an output folder (batch, grid, temporaries); --overwrite deletes only these
OWN_FILES = re.compile(r"^(\d{3}|\d{6})\.png$|^grid(_baseline)?\.png$|^stats\.json$|^manifest\.jsonl$|"
                       r"^run\.json$|^\..*\.\d+\.tmp$")
FIX = "Fix: use a new --out folder, or add --overwrite to delete this folder's diffskip files and start again."


def weights_hash(pipe: Any) -> str:
    """Return a sha256 (16 hex digits) over every component's parameters and buffers (names, dtypes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name in sorted(getattr(pipe, "components", {}) or {}):
        module = pipe.components[name]
        if not isinstance(module, torch.nn.Module):
            continue
        for key, t in module.state_dict().items():
            t = t.detach().to("cpu").contiguous().reshape(-1)
            h.update(f"{name}.{key}:{t.dtype}:{t.numel()};".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def config_hash(config) -> str:
    """Return a sha256 (16 hex digits) of a diffusers config, without its private keys."""
    own = {k: v for k, v in dict(config).items() if not k.startswith("_")}  # "_use_default_values" is a set's order
    return hashlib.sha256(json.dumps(own, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_png(path: Path, row: dict) -> str | None:
    """Return what is wrong with a finished image (None when it is decodable and matches its manifest row)."""
    from PIL import Image

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    if not stat.S_ISREG(mode):
        return f"{describe(mode)}, not a regular file"
    data = read_bytes(path, "image")
    if not data:
        return "empty file"
    if "sha256" in row and hashlib.sha256(data).hexdigest() != row["sha256"]:
        return "contents differ from the manifest's sha256"
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            size = im.size
    except Exception as exc:  # noqa: BLE001  (PIL raises many kinds for a damaged file)
        return f"not a decodable PNG ({type(exc).__name__})"
    if "width" in row and size != (row.get("width"), row.get("height")):
        return f"size {size[0]}x{size[1]} differs from the manifest's {row.get('width')}x{row.get('height')}"
    return None


def differences(old: dict, new: dict, keys: list[str] | None = None) -> list[str]:
    """Return 'key X there, Y now' for each key (default: all) whose values differ."""
    new = json.loads(json.dumps(new))  # compare as stored (tuples -> lists)
    keys = sorted(set(old) | set(new)) if keys is None else keys
    return [f"{k} {short(old.get(k), 60)} there, {short(new.get(k), 60)} now" for k in keys
            if old.get(k) != new.get(k)]


def refuse(out: Path, diffs: list[str], what: str = "another run") -> RunFolderError:
    """Return the one-line error for a folder that holds `what`, listing at most 4 differences."""
    more = f" (and {len(diffs) - 4} more)" if len(diffs) > 4 else ""
    return RunFolderError(f"--out {out} holds {what}: {'; '.join(diffs[:4])}{more}. Allowed: resuming with the same "
                          f"model, weights, scheduler, steps, guidance, size, policy and prompt rows. {FIX}")



class RunFolder:
    """An output folder opened for one run: checked writable, locked, its recorded identity compared.

    Args:
        out: the folder (created when missing).
        kind: "batch" or "grid"; a folder of the other kind is refused.
        overwrite: kept for callers; the folder is never cleared on opening (callers clear or publish when ready).
    """

    def __init__(self, out: str | Path, kind: str, overwrite: bool = False):
        self.out, self.kind, self.overwrite = Path(out), kind, overwrite
        self._fd: int | None = None

    # -- opening ---------------------------------------------------------------------------------------
    def open(self) -> RunFolder:
        """Create the folder if needed and take its lock (never through a link); raise RunFolderError."""
        out = self.out
        if not str(out).strip():
            raise RunFolderError("--out is empty; allowed: a folder path. Fix: give one, e.g. --out out/run.")
        try:
            is_file = out.exists() and not out.is_dir()
            if not is_file:
                out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"--out {short(str(out), 120)}: cannot write there ({why(exc)}); allowed: a folder "
                                 f"you can write. Fix: pick another --out or change its permissions.") from None
        if is_file:
            raise RunFolderError(f"--out {short(str(out), 120)} is a file; allowed: a folder (new, or one this command "
                                 f"wrote). Fix: pick another --out.")
        self._fd = take_lock(out, LOCK_FILE)
        return self

    def close(self) -> None:
        """Remove the lock file (while holding it, and only if it is still ours), then release the lock."""
        if self._fd is not None:
            release_lock(self.out, LOCK_FILE, self._fd)
            self._fd = None

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- contents --------------------------------------------------------------------------------------
    def own_files(self) -> list[Path]:
        """Return the files (or links) in the folder that diffskip writes (PNGs, manifest, stats, run.json, "
          "temporaries)."""
        return sorted(p for p in self.out.iterdir() if (p.is_file() or p.is_symlink()) and OWN_FILES.match(p.name))

    def clear(self) -> None:
        """Delete diffskip's files in the folder (everything else stays)."""
        for p in self.own_files():
            p.unlink()

    def recorded(self) -> dict | None:
        """Return the folder's run.json (None when it has none); raise when it is unreadable."""
        path = self.out / RUN_FILE
        if not os.path.lexists(path):
            return None
        try:
            data = json.loads(read_bytes(path, "run.json").decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise RunFolderError(f"--out {self.out}: {path.name} is not a JSON object (damaged). {FIX}")
        return data

    def check(self, identity: dict, keys: list[str] | None = None) -> None:
        """Refuse when the folder holds another run's files: another kind, identity, or files without run.json."""
        old = self.recorded()
        if old is None:
            strangers = [p.name for p in self.own_files() if p.name != RUN_FILE and not p.name.startswith(".")]
            if strangers:
                raise refuse(self.out, [f"{len(strangers)} files like {strangers[0]} but no {RUN_FILE}"],
                             "files of an earlier run (older diffskip or another program)")
            return
        if old.get("kind") != self.kind:
            raise refuse(self.out, [f"a {old.get('kind')} run, this is a {self.kind} run"], "another kind of run")
        diffs = differences(old, {"kind": self.kind, **identity}, keys)
        if diffs:
            raise refuse(self.out, diffs)

    def record(self, identity: dict) -> None:
        """Check the full identity and write run.json (atomically, never through a link) when the folder has none."""
        self.check(identity)
        if self.recorded() is None:
            self.write_record(identity)

    def write_record(self, identity: dict) -> None:
        """Write run.json for `identity` (a temporary file renamed into place)."""
        text = json.dumps({"kind": self.kind, **identity}, indent=1, sort_keys=True)
        write_atomic(self.out / RUN_FILE, text, "--out")

    def publish(self, files: dict[str, bytes], identity: dict) -> None:
        """Replace the folder's diffskip files with `files` and record `identity`, once every file is written.

        Each file goes to a temporary name first; only then is run.json removed, each file renamed into place
        (a link at the name is replaced, never followed), the earlier run's other files deleted, and run.json
        written last. A run that fails before this point leaves the earlier run's files as they were.
        """
        temps = {name: write_temp(self.out / name, data, "--out") for name, data in files.items()}
        try:
            if os.path.lexists(self.out / RUN_FILE):
                os.unlink(self.out / RUN_FILE)
            for name, tmp in temps.items():
                os.replace(tmp, self.out / name)
            for p in self.own_files():
                if p.name not in files and p.name != RUN_FILE and not p.name.endswith(".tmp"):
                    p.unlink()
        except OSError as exc:
            raise RunFolderError(f"--out {short(str(self.out), 120)}: cannot write there ({why(exc)}). {FIX}") from None
        self.write_record(identity)
