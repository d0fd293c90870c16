"""Output paths checked before any work starts: a command that cannot write its result says so at
once (``UserError``, exit 2), instead of training for an hour and then failing in a traceback.

A folder counts as writable when a probe file can be created in it (or, for a folder that does not
exist yet, in its nearest existing parent) and removed again: the one test that also holds for root
on a read-only mount, where permission bits say "writable" and ``os.access`` agrees.

Two things can still go wrong once work has started, and neither may end in a traceback: the disk
fills up (``DiskFull``: exit 1 naming the file and the space it needs; every writer is atomic, so
nothing is half-written), and the reader of our output goes away (``optbench list | head -1``:
``say`` and ``silence`` drop the rest of the output quietly; the work goes on).

The one atomic writer is here too (``atomic_write``, ``atomic_write_bytes``, ``atomic_write_text``): a temporary file
in the target's folder, flushed and fsync'ed, then ``os.replace``'d over the target, with the mode
``open()`` would give a new file (``0666`` less the umask in force at the time of the write: ``0644``
under umask 022, ``0600`` under 077). A reader sees the old file or the new one, never half of one; a
kill leaves at most a hidden ``.<name>.*.tmp``.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable
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
    raise DiskFull(
        f"no space left on the device to write {path} (it needs about {_size(needed)}{have}); nothing "
        "was half-written: free some space and re-run the same command (finished runs are kept)"
    ) from None


_TMP_ATTEMPTS = 100


def _create_temp(folder: Path, name: str) -> tuple[int, str]:
    """Create a new hidden temporary file ``.<name>.<random>.tmp`` in ``folder`` and return (fd, path).

    Unlike ``tempfile.mkstemp`` (always ``0600``), the file is created with ``0666`` and the kernel
    takes off the umask in force now (and applies a default ACL of the folder, if any): the mode
    ``open()`` gives a new file. Reading the umask instead would need ``os.umask`` to set it, which
    races with other threads; ``O_EXCL`` makes the name ours alone."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_TMP_ATTEMPTS):
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary file name for {name} in {folder}")


def atomic_write(path: str | os.PathLike, write_to: Callable[[str], Any], *, size_hint: int = 0) -> Path:
    """Write ``path`` atomically through ``write_to(tmp)``, which writes the whole content to the file
    name ``tmp`` (a hidden temporary file in the same folder; parent folders are created first). The
    file is fsync'ed and moved over ``path``, with the mode of a new file (``0666`` less the umask).

    A full disk raises ``DiskFull`` naming ``path`` (``size_hint``: about how many bytes it needs);
    any failure removes the temporary file and leaves ``path`` as it was. Returns ``path``."""
    path = Path(path)
    needed = int(size_hint) + 4096
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path.parent, path.name)
    except OSError as exc:
        raise_if_disk_full(exc, path, needed)
        raise
    try:
        mode = os.fstat(fd).st_mode & 0o7777
    finally:
        os.close(fd)
    try:
        write_to(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
            if os.fstat(fd).st_mode & 0o7777 != mode:  # a writer that replaced the file by its own
                os.chmod(tmp, mode)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # pyarrow's IO errors are OSErrors too
            raise_if_disk_full(exc, path, needed)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``atomic_write`` of ``data``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), size_hint=len(data))


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``atomic_write`` of ``text`` encoded (UTF-8 by default; newlines written as given)."""
    return atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable where the platform allows (best effort: not on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
