"""Run records on disk: one parquet file per run, curves in a separate long table.

Layout of a results folder (``--out DIR``)::

    DIR/runs/<run_id>.parquet     one row: the run record (columns below)
    DIR/curves/<run_id>.parquet   long table: run_id, step, split, name, value

Every run file has exactly the Arrow schema ``harness.results.schema.arrow_schema()`` (typed nulls,
hyperparameters in the ``hparams`` JSON only), every curves file ``curve_schema()``: the folders are
datasets (``docs/results-schema.md``). ``read_runs`` / ``read_runs_file`` upgrade older files on read
and add the ``hp_<name>`` columns. Both files are written by ``harness.outputs.atomic_write``
(temp file in the same folder, fsync, ``os.replace``, the mode of new files: ``0666`` less the
umask); the curves file is written first, so a run whose row exists is complete. A killed process leaves at most a ``.tmp`` file, which readers ignore.
Re-running a finished ``run_id`` is skipped by the loop (idempotent resume); "finished" means a
*readable* record whose status is not ``failed`` (``record_state``): an unreadable file or a run
that raised is run again, and the sweep moves an unreadable file aside first (``quarantine``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.results import record as _record
from harness.results.record import SCHEMA_VERSION, columns, finite_or_nan, hp_columns, json_ready
from harness.results.schema import CURVE_COLUMNS, conform, curve_schema, table_of_rows, with_hp_columns

__all__ = [
    "COLUMNS",
    "CURVE_COLUMNS",
    "SCHEMA_VERSION",
    "check_writable",
    "curves_dir",
    "failure_row",
    "finite_or_nan",
    "hp_columns",
    "is_finished",
    "json_ready",
    "quarantine",
    "read_curves",
    "read_runs",
    "read_runs_file",
    "record_state",
    "results_root",
    "run_path",
    "runs_dir",
    "write_run",
]

# Column -> meaning, read off ``harness.results.record.RunRecord`` (the record type *is* the column list).
# Readers also see ``hp_<name>`` columns, derived from ``hparams`` on read.
COLUMNS: dict[str, str] = columns()


def runs_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "runs"


def curves_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "curves"


def run_path(out: str | os.PathLike, run_id: str) -> Path:
    return runs_dir(out) / f"{run_id}.parquet"


def record_state(out: str | os.PathLike, run_id: str) -> tuple[str, str]:
    """``(state, detail)`` of ``run_id``'s record under ``out``: ``"ok"`` (a readable row of that
    run), ``"failed"`` (readable, status ``failed``: the run raised), ``"missing"``, or
    ``"corrupt"`` (with why: truncated, empty, not parquet, another run's row)."""
    path = run_path(out, run_id)
    if not path.exists():
        return "missing", ""
    try:
        row = read_runs_file(path)
    except Exception as exc:  # ArrowInvalid, OSError, ...: any unreadable file
        return "corrupt", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if row.get("run_id") != run_id:
        return "corrupt", f"holds the row of run {row.get('run_id')!r}"
    return ("failed", str(row.get("status_detail") or "")) if row.get("status") == "failed" else ("ok", "")


def is_finished(out: str | os.PathLike, run_id: str) -> bool:
    """True when ``run_id`` has a readable record under ``out`` that is not a failure (a run that
    raised is tried again; an unreadable record is re-created)."""
    return record_state(out, run_id)[0] == "ok"


def quarantine(path: str | os.PathLike) -> Path:
    """Move an unreadable run file aside to ``<name>.corrupt`` (``.corrupt-2``, ... if taken), where
    readers never look (they read ``*.parquet``); returns the new path. Its curves file, if any,
    stays: the re-run replaces it."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{n}")
    os.replace(path, target)
    return target


def check_writable(out: str | os.PathLike) -> None:
    """Raise ``UserError`` unless run records can be written under ``out`` (the folder, and its
    runs/ and curves/ subfolders when they exist): checked before a run trains, not after."""
    from harness.outputs import writable_dir

    writable_dir(out, "results folder (--out)")
    for sub in (runs_dir(out), curves_dir(out)):
        if sub.exists():
            writable_dir(sub, "results subfolder")


def failure_row(
    spec: Any,
    *,
    metric: str,
    direction: str,
    penalty: float,
    detail: str,
    started_at: str,
    finished_at: str,
    wall_seconds: float,
    environment: Mapping[str, Any],
) -> dict[str, Any]:
    """The row of a run that never produced a result (``status = "failed"``): it raised an exception,
    or its worker died every time. ``spec`` is its ``RunSpec``; ``environment`` gives git_sha,
    torch_version, python_version and device ('unknown' where absent). Built by
    ``harness.results.record.failure``."""
    env = {k: environment.get(k, "unknown") for k in _record.ENVIRONMENT}
    return _record.failure(
        spec,
        metric=metric,
        direction=direction,
        penalty=penalty,
        detail=detail,
        started_at=started_at,
        finished_at=finished_at,
        wall_seconds=wall_seconds,
        environment=env,
    ).row()


def _write_table(table, path: Path) -> None:
    """``table`` to the parquet file ``path``, atomically (``harness.outputs.atomic_write``)."""
    import pyarrow.parquet as pq

    from harness.outputs import atomic_write

    atomic_write(path, lambda tmp: pq.write_table(table, tmp), size_hint=int(table.nbytes))


def write_run(out: str | os.PathLike, row: Mapping[str, Any], curves: Iterable[Mapping[str, Any]]) -> Path:
    """Write the curves then the row of one run, each atomically, each with its one schema (a column
    the row lacks is null; ``hp_<name>`` keys are not stored; ``ValueError`` for a key that is not a
    column). Returns the row's path."""
    import pyarrow as pa

    run_id = row["run_id"]
    row_table = table_of_rows([dict(row)])  # checked before anything is written
    curves = list(curves)
    curve_table = pa.table(
        {
            "run_id": pa.array([run_id] * len(curves), pa.string()),
            "step": pa.array([int(c["step"]) for c in curves], pa.int64()),
            "split": pa.array([str(c["split"]) for c in curves], pa.string()),
            "name": pa.array([str(c["name"]) for c in curves], pa.string()),
            "value": pa.array([float(c["value"]) for c in curves], pa.float64()),
        },
        schema=curve_schema(),
    )
    _write_table(curve_table, curves_dir(out) / f"{run_id}.parquet")
    path = run_path(out, run_id)
    _write_table(row_table, path)
    return path


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def results_root(path: str | os.PathLike) -> Path:
    """Accept either a results folder (with runs/) or its runs/ folder itself."""
    path = Path(path)
    if path.name == "runs" and not (path / "runs").is_dir():
        return path.parent
    return path


def _read_table(file: str | os.PathLike):
    """One record file as a table of the one schema (older files upgraded)."""
    import pyarrow.parquet as pq

    return conform(pq.read_table(file), source=str(file))


def read_runs(path: str | os.PathLike, *, skipped: list[str] | None = None):
    """All run rows under ``path`` as one pandas DataFrame: every schema column (with its type; an
    empty frame has them too), then the ``hp_<name>`` columns derived from ``hparams``.

    Older files are upgraded (``harness.results.schema.conform``). A corrupt or unreadable file, or
    one of a newer results schema, is named in a warning (and appended to ``skipped``) and left out.
    Files are read on a small thread pool (parquet decoding releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from harness.results.schema import arrow_schema

    root = results_root(path)
    files = _parquet_files(runs_dir(root))

    def load(file: Path):
        try:
            return _read_table(file), None
        except Exception as exc:  # corrupt/truncated/newer file: name it, keep going
            return None, f"skipping unreadable run file {file}: {type(exc).__name__}: {exc}"

    tables = []
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
        for file, (table, problem) in zip(files, pool.map(load, files)):
            if problem is not None:
                warnings.warn(problem, stacklevel=2)
                if skipped is not None:
                    skipped.append(str(file))
            else:
                tables.append(table)
    table = pa.concat_tables(tables) if tables else arrow_schema().empty_table()
    return with_hp_columns(table.to_pandas())


def read_curves(path: str | os.PathLike, run_ids: Iterable[str] | None = None):
    """Curves of the given runs (all runs when None) as one long DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    root = results_root(path)
    wanted = None if run_ids is None else set(run_ids)
    frames = []
    for file in _parquet_files(curves_dir(root)):
        if wanted is not None and file.stem not in wanted:
            continue
        try:
            frames.append(pq.read_table(file).to_pandas())
        except Exception as exc:
            warnings.warn(f"skipping unreadable curve file {file}: {exc}", stacklevel=2)
    if not frames:
        return pd.DataFrame(columns=list(CURVE_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def read_runs_file(path: str | os.PathLike) -> dict[str, Any]:
    """The single row of one run file, as a dict (upgraded to the current schema; with its
    ``hp_<name>`` keys)."""
    from harness.results.schema import parsed_hparams

    rows = _read_table(path).to_pylist()
    if len(rows) != 1:
        raise ValueError(f"{path}: expected one run row, found {len(rows)}")
    row = rows[0]
    row.update(hp_columns(parsed_hparams(row.get("hparams"))))
    return row
