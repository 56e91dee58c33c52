"""A folder's lock file: created exclusively without following links, locked without waiting, removed at exit.

The OS lock (flock; msvcrt on Windows) goes away with the process, even after SIGKILL. A normal exit removes the
file while still holding the lock; a process that opened the file just before it was removed notices that the
name no longer points at its file and tries again, so two runs never hold locks on two different files.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import RunFolderError, short
from .fileio import CLOEXEC, NOFOLLOW, NONBLOCK, why

__all__ = ["take_lock", "release_lock"]


def take_lock(folder: Path, name: str) -> int:
    """Return the descriptor of `folder/name`, locked by this process; raise RunFolderError when in use or a link."""
    path = folder / name
    for _ in range(20):
        try:
            fd = _open(path)
        except FileNotFoundError:
            continue  # removed by its holder between our two opens
        except OSError as exc:
            raise _error(folder, path, exc) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunFolderError(f"--out {short(str(folder), 120)}: {name} is not a regular file; allowed: a folder "
                                 f"whose lock is diffskip's own. Fix: remove {path} or use another --out.")
        try:
            _try_lock(fd)
        except OSError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(f"--out {short(str(folder), 120)} is in use by another diffskip run (process {pid}); "
                                 f"allowed: one run per folder at a time (a second run is refused, it does not "
                                 f"wait). Fix: wait for that run to finish, or use another --out.") from None
        if _same(path, fd):
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            return fd
        _unlock(fd)
        os.close(fd)
    raise RunFolderError(f"--out {short(str(folder), 120)}: could not take its lock (it kept changing). Fix: run "
                         "again.")


def release_lock(folder: Path, name: str, fd: int) -> None:
    """Remove the lock file if it is still this descriptor's file, then unlock and close."""
    try:
        if _same(folder / name, fd):
            os.unlink(folder / name)
    except OSError:
        pass  # a read-only folder: the file stays, the OS lock still goes
    _unlock(fd)
    os.close(fd)


def _open(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
    except FileExistsError:
        return os.open(path, os.O_RDWR | NOFOLLOW | NONBLOCK | CLOEXEC)


def _same(path: Path, fd: int) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def _error(folder: Path, path: Path, exc: OSError) -> RunFolderError:
    if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
        return RunFolderError(f"--out {short(str(folder), 120)}: {path.name} is a symbolic link; allowed: a folder "
                              f"whose lock is diffskip's own (nothing is written through a link). Fix: remove {path} "
                              f"or use another --out.")
    return RunFolderError(f"--out {short(str(folder), 120)}: cannot write there ({why(exc)}); allowed: a folder you "
                          f"can write. Fix: pick another --out or change its permissions.")


def _try_lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:
        import msvcrt

        os.lseek(fd, 0, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_UN)
