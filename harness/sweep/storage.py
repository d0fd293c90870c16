"""Optuna storages for sweeps: URLs, opening (with heartbeats), and the journal file's torn tail.

``postgresql://...`` (or any SQLAlchemy URL: ``mysql://``, ``sqlite:///``) is an Optuna
``RDBStorage`` with heartbeats; anything else is the path of an Optuna journal file
(``JournalFileBackend``; optionally written ``journal:PATH``). The default is ``<out>/optuna.journal``:
embedded, no server, safe for several processes on one machine.

A journal file is one JSON object per line, appended under a lock (``JournalFileBackend``). A power
loss or a kill in the middle of an append leaves a partial last line (or, on some file systems,
garbage bytes); Optuna then appends the next entry onto that partial line, and every later read
fails. ``repair_journal_tail`` runs before every open: under the journal's own lock it cuts the file
back to its last complete entry, keeps the damaged file as ``<journal>.damaged-<UTC time>`` and
warns. Damage with complete entries after it is not a torn tail and is refused (exit 2) instead.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.sweep.plan import Heartbeat

RDB_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "sqlite", "oracle", "mssql")


class SweepWarning(UserWarning):
    """Something a sweep repaired or decided that the user should know (printed by the CLI as
    ``optbench <command>: warning: ...``)."""


def default_storage_url(out: str | os.PathLike) -> str:
    """The embedded default: an Optuna journal file in the results folder."""
    return str(Path(out).resolve() / "optuna.journal")


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""


def is_rdb_url(url: str) -> bool:
    return _scheme(url) in RDB_SCHEMES


def journal_path(url: str) -> Path:
    """The file of a journal storage URL (``PATH``, ``journal:PATH`` or ``file://PATH``). Raises
    ``UserError`` for a URL with a scheme that is neither a database nor a file."""
    scheme = _scheme(url)
    if scheme and scheme != "file":
        raise UserError(
            f"unknown storage URL scheme {scheme!r} in {redact_url(url)}; known: "
            f"{', '.join(RDB_SCHEMES)} (database URLs), file:// or a plain path (journal file)"
        )
    return Path(url[len("journal:") :] if url.startswith("journal:") else url.removeprefix("file://")).expanduser()


def check_journal_path(path: Path) -> None:
    """A journal path must name a file in an existing folder (the results folder is created first)."""
    if path.is_dir():
        raise UserError(
            f"storage {path} is a folder; give a journal file path (e.g. {path / 'optuna.journal'}) "
            "or a postgresql:// URL"
        )
    if not path.parent.is_dir():
        raise UserError(f"storage {path}: folder {path.parent} does not exist")


def open_storage(url: str, heartbeat: Heartbeat | None = None):
    """Open ``url`` as an Optuna storage (see the module docstring for the accepted forms).

    RDB storages get Optuna's heartbeat (``heartbeat_interval``, ``grace_period``) and a retry
    callback, so a trial of a dead worker is re-queued with its parameters. Journal files get the
    equivalent from ``harness.sweep.keeper`` (``TrialKeeper.reap``), because Optuna's journal storage has
    no heartbeat; their torn tail is repaired first (``repair_journal_tail``).
    """
    import optuna

    heartbeat = heartbeat or Heartbeat()
    quiet_optuna()
    if is_rdb_url(url):
        from harness.sweep import optuna_api

        try:
            return optuna_api.rdb_storage(sqlalchemy_url(url), heartbeat.interval, heartbeat.grace)
        except ImportError as exc:
            raise UserError(f"storage {redact_url(url)} needs a database driver: {exc}; {driver_hint(url)}") from None
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: unreachable server
            raise UserError(
                f"cannot open storage {redact_url(url)}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}"
            ) from None
    path = journal_path(url)
    check_journal_path(path)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if path.exists():
        message = repair_journal_tail(path)
        if message:
            warnings.warn(message, SweepWarning, stacklevel=2)
    try:
        return JournalStorage(JournalFileBackend(str(path), lock_obj=journal_lock(path)))
    except (ValueError, UnicodeDecodeError) as exc:  # damage repair_journal_tail does not cut (mid-file)
        lines = path.read_bytes().splitlines(keepends=True)
        bad = next((i for i, line in enumerate(lines) if not _complete_entry(line)), None)
        where = (
            f"line {bad + 1} is damaged and {len(lines) - bad - 1} line(s) follow it"
            if bad is not None
            else f"{type(exc).__name__}: {exc}"
        )
        raise UserError(
            f"Optuna journal {path} cannot be read ({where}): this is not a torn tail, and cutting it "
            f"would drop entries; {_damaged_hint(path)}"
        ) from None
    except optuna.exceptions.OptunaError as exc:
        raise UserError(f"cannot open Optuna journal {path}: {exc}") from None


def _damaged_hint(path: Path) -> str:
    return (
        f"move it aside (`mv {path} {path}.damaged`) and re-run the same command: the run records are "
        "the ground truth, so every finished run is found on disk and not trained again"
    )


def _complete_entry(line: bytes) -> bool:
    """One journal entry: a newline-terminated JSON object (Optuna writes ``{"op_code": ...}``)."""
    if not line.endswith(b"\n"):
        return False
    try:
        entry = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(entry, dict) and "op_code" in entry


def journal_lock(path: str | os.PathLike, cut_torn_line: bool = True):
    """The lock a journal is appended under: ``CrashSafeJournalLock`` where ``fcntl`` exists, else
    Optuna's own symlink lock. ``cut_torn_line``: cut a partial last line on every acquire."""
    from optuna.storages.journal import JournalFileSymlinkLock

    try:
        import fcntl  # noqa: F401
    except ImportError:  # pragma: no cover - not Linux/macOS
        return JournalFileSymlinkLock(str(path))
    return _crash_safe_lock_class()(str(path), cut_torn_line)


@functools.cache
def _crash_safe_lock_class():
    """The class is built on first use: its base class is Optuna's, and importing Optuna is not free."""
    from optuna.storages.journal import JournalFileSymlinkLock

    class CrashSafeJournalLock(JournalFileSymlinkLock):
        """Optuna's journal lock, safe against a writer killed while holding it.

        Optuna appends to a journal under a symlink lock (``<journal>.lock``); a process killed inside
        an append leaves the link behind, and every later writer waits Optuna's 30 s grace period
        before breaking it. Here a writer first takes ``flock`` on ``<journal>.flock`` -- released by
        the kernel when its holder dies -- then the symlink lock (so plain Optuna clients still
        exclude us). Holding the flock, no live optbench process can hold the symlink lock, so one
        that is there is stale (or a plain Optuna client's) and is broken after 3 s. Journal files
        are for one machine (a cluster uses PostgreSQL), where flock is reliable.
        """

        def __init__(self, path: str, cut_torn_line: bool = True):
            super().__init__(path, grace_period=3)
            self._path = path
            self._cut = cut_torn_line
            self._flock_path = path + ".flock"
            self._fd: int | None = None

        def acquire(self) -> bool:
            import fcntl

            fd = os.open(self._flock_path, os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                super().acquire()
            except BaseException:
                os.close(fd)  # closing releases the flock
                raise
            self._fd = fd
            if not self._cut:
                return True
            try:
                self._cut_partial_line()
            except BaseException:
                self.release()
                raise
            return True

        def _cut_partial_line(self) -> None:
            """Never append to a partial line: a writer killed inside an append (while others run on)
            leaves its line without a newline, and the next append would fuse onto it, turning the
            journal unreadable for everyone. Holding the lock, a last byte that is not a newline can
            only be such a torn write: cut it back (backup + warning) before appending."""
            try:
                with open(self._path, "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    if fh.tell() == 0:
                        return
                    fh.seek(-1, os.SEEK_END)
                    whole = fh.read(1) == b"\n"
            except FileNotFoundError:
                return
            if not whole:
                message = _repair_locked(Path(self._path))
                if message:
                    warnings.warn(message, SweepWarning, stacklevel=2)

        def release(self) -> None:
            fd, self._fd = self._fd, None
            try:
                super().release()
            finally:
                if fd is not None:
                    os.close(fd)

    return CrashSafeJournalLock


def _tail_is_whole(path: Path, chunk: int = 1 << 16) -> bool:
    """Whether the journal ends in a complete entry, reading only its end."""
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(max(0, size - chunk))
        tail = fh.read()
    if not tail.endswith(b"\n"):
        return False
    start = tail.rfind(b"\n", 0, len(tail) - 1)
    if start < 0 and size > len(tail):  # the last line is longer than the chunk: read it all
        data = path.read_bytes()
        start, tail = data.rfind(b"\n", 0, len(data) - 1), data
    return _complete_entry(tail[start + 1 :])


def repair_journal_tail(path: str | os.PathLike) -> str | None:
    """Cut a torn or garbage tail off the journal file ``path``; return the warning text (None when
    the file is whole).

    Runs under the journal's lock (the lock ``JournalFileBackend`` appends under), so a live
    writer's half-written line is never mistaken for a torn one. The damaged file is copied to
    ``<path>.damaged-<UTC time>`` before the cut. If a damaged line is followed by complete entries
    (a torn line that something later appended onto), cutting would drop entries that later ones
    depend on: that raises ``UserError`` naming the line and the way out instead.
    """
    path = Path(path)
    if _tail_is_whole(path):
        return None  # the common case, checked from the last 64 KiB without the lock
    lock = journal_lock(path, cut_torn_line=False)
    lock.acquire()
    try:
        return _repair_locked(path)
    finally:
        lock.release()


def _repair_locked(path: Path) -> str | None:
    """``repair_journal_tail``'s work; the caller holds the journal's lock."""
    data = path.read_bytes()
    if not data or _tail_is_whole(path):
        return None
    lines = data.splitlines(keepends=True)
    good = 0
    offset = 0
    for line in lines:
        if not _complete_entry(line):
            break
        good += 1
        offset += len(line)
    later = [i for i in range(good + 1, len(lines)) if _complete_entry(lines[i])]
    if later:
        raise UserError(
            f"Optuna journal {path}: line {good + 1} is damaged, and {len(later)} complete "
            f"entries follow it (first at line {later[0] + 1}): this is not a torn tail, and "
            f"cutting it would drop entries; {_damaged_hint(path)}"
        )
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    shutil.copy2(path, backup)
    with open(path, "r+b") as fh:
        fh.truncate(offset)
        fh.flush()
        os.fsync(fh.fileno())
    return (
        f"Optuna journal {path} ended in {len(data) - offset} byte(s) that are not a complete entry "
        f"(a write cut short by a crash or power loss); cut back to its last complete entry "
        f"(line {good}); the damaged file is kept as {backup}"
    )


def driver_hint(url: str) -> str:
    """What to install for the database a URL names (the driver SQLAlchemy looks for)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith(("postgres", "postgresql")):
        return "install the PostgreSQL driver with `pip install 'optbench[postgres]'` (psycopg2-binary)"
    if scheme.startswith(("mysql", "mariadb")):
        return "install a MySQL driver (e.g. `pip install pymysql` and use mysql+pymysql://...)"
    return f"install the SQLAlchemy driver for {scheme!r}"


def sqlalchemy_url(url: str) -> str:
    """``postgres://`` (libpq style) -> ``postgresql://``; the scheme in lower case (SQLAlchemy looks
    plugins up by exact name); and a bare ``postgresql://`` names the driver that is installed:
    SQLAlchemy >= 2.1 defaults to psycopg 3, optbench[postgres] installs psycopg2."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql"
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            scheme = "postgresql+psycopg2"
    return scheme + sep + rest


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO and flags heartbeats as experimental: our progress lines
    say what happened, so keep its output to real warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*failed_trial_callback.*", category=FutureWarning)
    # ask() warns that heartbeats belong to optimize(): the worker records them itself.
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def storage_kind(storage: Any) -> str:
    """'rdb' or 'journal'."""
    import optuna

    return "rdb" if isinstance(storage, optuna.storages.RDBStorage) else "journal"
