"""Output paths checked before any work starts: a command that cannot write its result says so at
once (``UserError``, exit 2), instead of training for an hour and then failing in a traceback.

A folder counts as writable when a probe file can be created in it (or, for a folder that does not
exist yet, in its nearest existing parent) and removed again: the one test that also holds for root
on a read-only mount, where permission bits say "writable" and ``os.access`` agrees.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

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
