"""Output paths checked before any work starts: a command that cannot write its result says so at
once (``UserError``, exit 2), instead of training for an hour and then failing in a traceback.

A folder counts as writable when a probe file can be created in it (or, for a folder that does not
exist yet, in its nearest existing parent) and removed again: the one test that also holds for root
on a read-only mount, where permission bits say "writable" and ``os.access`` agrees.

Two things can still go wrong once work has started, and neither may end in a traceback: the disk
fills up (``DiskFull``: exit 1 naming the file and the space it needs; every writer is atomic, so
nothing is half-written), and the reader of our output goes away (``optbench list | head -1``:
``say`` and ``silence`` drop the rest of the output quietly; the work goes on).
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

from harness.errors import UserError


def _reason(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def _probe(folder: Path) -> None:
    fd, name = tempfile.mkstemp(prefix=".optbench-write-probe.", dir=folder)
    os.close(fd)
    os.unlink(name)


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Check that ``path`` is, or can be created as, a folder this process can write into.

    Nothing is created: a missing folder is checked through its nearest existing parent. Raises
    ``UserError`` naming ``what`` (e.g. "results folder (--out)") and the reason."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"the {what} {path} is a file, not a folder; give a folder path")
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"cannot create the {what} {path}: {existing} is a file, not a folder")
    try:
        _probe(existing)
    except OSError as exc:
        where = f"{path}" if existing == path else f"{path} (its parent {existing} does not accept new files)"
        raise UserError(f"cannot write the {what} {where}: {_reason(exc)}") from None
    return path


def writable_file(path: str | os.PathLike, what: str) -> Path:
    """Check that file ``path`` can be written (created, or replaced/appended when it exists) and
    that its folder accepts new files (atomic replacement and lock files are created beside it)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"the {what} {path} is a folder; give a file path")
    writable_dir(path.parent, f"folder of the {what}")
    if path.exists():
        try:
            with open(path, "ab"):  # opened for append, nothing written: content and mtime unchanged
                pass
        except OSError as exc:
            raise UserError(f"cannot write the {what} {path}: {_reason(exc)}") from None
    return path


class DiskFull(Exception):
    """No space left for a file optbench writes. The CLI prints it and exits 1 (not 2: the input was
    fine); the writer removed its temporary file, and a sweep gives the run back (not a failure)."""


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def free_bytes(path: str | os.PathLike) -> int | None:
    """Free bytes on the file system of ``path`` (its nearest existing folder); None if unknown."""
    folder = Path(path)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_disk_full(exc: BaseException) -> bool:
    errnos = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    return (isinstance(exc, OSError) and exc.errno in errnos) or "No space left on device" in str(exc)


def raise_if_disk_full(exc: BaseException, path: str | os.PathLike, needed: int) -> None:
    """Raise ``DiskFull`` when writing ``path`` (about ``needed`` bytes) failed for want of space:
    the error says so, or less than ``needed`` is free (some writers, torch.save among them, report a
    full disk as a generic write failure). Otherwise return, and the caller re-raises ``exc``."""
    free = free_bytes(path)
    if not is_disk_full(exc) and (free is None or free >= needed):
        return
    have = "" if free is None else f", {_size(free)} free"
    raise DiskFull(f"no space left on the device to write {path} (it needs about {_size(needed)}{have}); nothing "
                   "was half-written: free some space and re-run the same command (finished runs are kept)") from None


def silence(stream: TextIO) -> None:
    """The reader of ``stream`` went away (a closed pipe): point its descriptor at /dev/null, so later
    writes and the flush at exit are dropped quietly instead of raising ``BrokenPipeError`` again."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def say(text: str, stream: TextIO | None = None, **print_kwargs: Any) -> bool:
    """``print(text)`` to ``stream`` (default stderr), flushed; a closed pipe silences the stream
    instead of raising. Returns whether the line went out."""
    stream = sys.stderr if stream is None else stream
    try:
        print(text, file=stream, flush=True, **print_kwargs)
        return True
    except BrokenPipeError:
        silence(stream)
        return False
