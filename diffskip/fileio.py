"""Safe file I/O for the CLI and output folders: inputs that are regular files, outputs that never follow links.

Inputs are opened non-blocking and checked with fstat, so a FIFO or a device is refused at once instead of being
waited on. Outputs are written to a new temporary file in the same folder (created exclusively, without following
links) and renamed into place: a reader never sees half a file, and a symlink at the destination is replaced,
never written through.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .errors import DiffSkipError, short

__all__ = ["FileError", "check_input", "read_bytes", "read_text", "check_output", "write_atomic", "write_temp",
           "describe", "open_image", "image_digest", "why"]

MAX_IMAGE_PIXELS = 4096 * 4096  # a condition or evaluation image larger than this is refused (decompression bombs)
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class FileError(DiffSkipError, ValueError):
    """An input or output path that diffskip cannot use (missing, a folder, a FIFO or device, unwritable)."""


def describe(mode: int) -> str:
    """Return what a stat mode is, in words ('a folder', 'a FIFO', ...)."""
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "a regular file"


def why(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "the name is too long for the file system"
    return exc.strerror or type(exc).__name__


def check_input(path: str | Path, what: str, folder: bool = False) -> Path:
    """Return `path` when it is an existing regular file (or folder with `folder=True`); raise FileError."""
    want = "a folder" if folder else "a regular file"
    if not str(path).strip():
        raise FileError(f"{what} is empty; allowed: {want}. Fix: give a path.")
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise FileError(f"{what} {short(str(p), 120)}: no file or folder there; allowed: an existing {want[2:]}. "
                        f"Fix the path.") from None
    except OSError as exc:
        raise FileError(f"{what} {short(str(p), 120)}: cannot use it ({why(exc)}); allowed: an existing "
                        f"{want[2:]}. Fix the path.") from None
    ok = stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode)
    if not ok:
        raise FileError(f"{what} {short(str(p), 120)} is {describe(mode)}; allowed: {want}. Fix the path.")
    return p


def read_bytes(path: str | Path, what: str) -> bytes:
    """Return the bytes of a regular file; a FIFO, device or folder is refused without waiting on it."""
    p = check_input(path, what)
    try:
        fd = os.open(p, os.O_RDONLY | NONBLOCK | CLOEXEC)
    except OSError as exc:
        raise FileError(f"{what} {short(str(p), 120)}: cannot read it ({why(exc)}).") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped after the check above
            raise FileError(f"{what} {short(str(p), 120)} is {describe(mode)}; allowed: a regular file.")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise FileError(f"{what} {short(str(p), 120)}: cannot read it ({why(exc)}).") from None
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str) -> str:
    """Return a regular file's UTF-8 text, a leading byte-order mark removed; raise FileError."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise FileError(f"{what} {short(str(path), 120)}: line {line} is not UTF-8 text (byte "
                        f"0x{data[exc.start]:02x}); "
                        f"allowed: UTF-8. Fix: save the file as UTF-8.") from None


def check_output(path: str | Path, what: str, overwrite: bool = False) -> Path:
    """Return `path` when a file may be written there: a writable folder, no folder/FIFO/device at the name."""
    if not str(path).strip():
        raise FileError(f"{what} is empty; allowed: a file path. Fix: give one (e.g. {what} result.json).")
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        mode = os.lstat(p).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise FileError(f"{what} {short(str(p), 120)}: cannot write there ({why(exc)}). Fix the path.") from None
    if mode is not None and not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise FileError(f"{what} {short(str(p), 120)} is {describe(mode)}; allowed: a new file path. Fix the path.")
    if mode is not None and not overwrite:
        raise FileError(f"{what} {short(str(p), 120)} exists; allowed: a new path, or --overwrite to replace it.")
    if not parent.is_dir():
        raise FileError(f"{what} {short(str(p), 120)}: the folder {short(str(parent), 120)} does not exist; "
                        f"allowed: a path in an existing folder. Fix: create the folder first.")
    if not os.access(parent, os.W_OK):
        raise FileError(f"{what} {short(str(p), 120)}: cannot write in {short(str(parent), 120)} (permission "
                        f"denied). Fix: pick another path.")
    return p


def write_temp(path: str | Path, data: bytes | str, what: str = "output") -> Path:
    """Write `data` to a new temporary file beside `path` (created exclusively, never through a link); return it."""
    p = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)  # our own leftover (same pid) or a planted link: removed, never written through
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except OSError as exc:
        _discard(tmp)
        raise FileError(f"{what} {short(str(p), 120)}: cannot write it ({why(exc)}); allowed: a path in a folder "
                        f"you can write. Fix: pick another path or change its permissions.") from None
    return tmp


def write_atomic(path: str | Path, data: bytes | str, what: str = "output") -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path` (a link there is replaced)."""
    tmp = write_temp(path, data, what)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise FileError(f"{what} {short(str(path), 120)}: cannot write it ({why(exc)}); allowed: a file path "
                        f"(not a folder) you can write. Fix: pick another path.") from None


def _discard(tmp: Path) -> None:
    try:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    except OSError:
        pass


def open_image(path: str | Path, what: str, max_pixels: int = MAX_IMAGE_PIXELS):
    """Return a decoded PIL image from a regular file; refuse non-images and images over `max_pixels`."""
    import io

    from PIL import Image

    data = read_bytes(path, what)
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.width * im.height > max_pixels:
                raise FileError(f"{what} {short(str(path), 120)}: {im.width}x{im.height} pixels is over the limit "
                                f"of {max_pixels} ({int(max_pixels ** 0.5)}x{int(max_pixels ** 0.5)}); allowed: a "
                                f"smaller image. Fix: resize it.")
            im.load()
            return im.copy()
    except FileError:
        raise
    except Image.DecompressionBombError:
        raise FileError(f"{what} {short(str(path), 120)}: too many pixels (a decompression bomb?); allowed: at most "
                        f"{max_pixels} pixels. Fix: resize it.") from None
    except Exception as exc:  # noqa: BLE001  (PIL raises many kinds for a file that is not an image)
        raise FileError(f"{what} {short(str(path), 120)}: not a readable image ({type(exc).__name__}); allowed: "
                        f"a PNG or JPEG file. Fix the path.") from None


def image_digest(path: str | Path, what: str, max_pixels: int = MAX_IMAGE_PIXELS) -> str:
    """Return the sha256 (16 hex digits) of an image file's bytes after checking that it decodes."""
    import hashlib

    open_image(path, what, max_pixels)
    return hashlib.sha256(read_bytes(path, what)).hexdigest()[:16]
