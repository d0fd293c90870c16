"""Run records on disk: one parquet file per run, curves in a separate long table.

Layout of a results folder (``--out DIR``)::

    DIR/runs/<run_id>.parquet     one row: the run record (columns below)
    DIR/curves/<run_id>.parquet   long table: run_id, step, split, name, value

Both files are written atomically (temp file in the same folder + ``os.replace``) with the usual
permissions of new files (``0666`` less the umask); the curves file is written first, so a run whose
row exists is complete. A killed process leaves at most a ``.tmp`` file, which readers ignore.
Re-running a finished ``run_id`` is skipped by the loop (idempotent resume); "finished" means a
*readable* record whose status is not ``failed`` (``record_state``): an unreadable file or a run
that raised is run again, and the sweep moves an unreadable file aside first (``quarantine``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.results.record import RunRecord, columns

SCHEMA_VERSION = 1

# Column -> meaning, read off ``harness.results.record.RunRecord`` (the record type *is* the column list).
# Hyperparameters are also flattened into ``hp_<name>`` columns (tuples as JSON).
COLUMNS: dict[str, str] = columns()
CURVE_COLUMNS = ("run_id", "step", "split", "name", "value")


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


def failure_row(spec: Any, *, metric: str, direction: str, penalty: float, detail: str, started_at: str,
                finished_at: str, wall_seconds: float, environment: Mapping[str, Any]) -> dict[str, Any]:
    """The record of a run that never produced a result (``status = "failed"``): it raised an
    exception, or its worker died every time. ``spec`` is its ``RunSpec``; ``environment`` gives
    git_sha, torch_version, python_version and device. Metrics are NaN and the objective is the
    penalty, so a leaderboard counts it in ``n_failed`` / ``tune_failure_rate``."""
    from harness import plugins

    opt_origin, task_origin = plugins.origin("optimizer", spec.optimizer), plugins.origin("task", spec.task)
    record = RunRecord(
        run_id=spec.run_id, schema_version=SCHEMA_VERSION, suite=spec.suite, study=spec.study, task=spec.task,
        dataset=spec.dataset_key, dataset_source=spec.dataset, size=spec.size, optimizer=spec.optimizer,
        phase=spec.phase, trial=spec.trial, replicate=spec.replicate, seed=spec.seed, steps=spec.steps,
        steps_done=0, hparams=json.dumps(json_ready(spec.hparams), sort_keys=True),
        task_options=json.dumps(json_ready(spec.task_options), sort_keys=True), spec=spec.to_json(),
        amp=spec.amp or "", compile=bool(spec.compile), status="failed", status_detail=detail, metric=metric,
        direction=direction, val_metric=math.nan, test_metric=math.nan, best_val_metric=math.nan, best_val_step=0,
        objective=float(penalty), penalty=float(penalty), target=math.nan, steps_to_target=None,
        final_train_loss=math.nan, metrics=json.dumps({"val": {}, "test": {}}), train_seconds=0.0,
        eval_seconds=0.0, optimizer_seconds=0.0, wall_seconds=float(wall_seconds), peak_memory_bytes=0,
        optimizer_state_bytes=0, param_count=0, implementation="",
        optimizer_origin=opt_origin.label(), optimizer_version=opt_origin.version,
        task_origin=task_origin.label(), task_version=task_origin.version,
        **{k: str(environment.get(k, "unknown")) for k in ("git_sha", "torch_version", "python_version", "device")},
        world_size=1, started_at=started_at, finished_at=finished_at, resumed_at_step=0,
        branched_from=spec.branched_from, branch_step=spec.branch_step,
    )
    return record.row()


def hp_columns(hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Flatten hyperparameters into ``hp_<name>`` columns: numbers stay numbers (as float, so a
    column has one type across files), strings stay strings (``hp_schedule_source = gradient``),
    tuples/lists become JSON strings, None stays null."""
    out: dict[str, Any] = {}
    for key, value in hparams.items():
        if isinstance(value, str):
            out[f"hp_{key}"] = value
        elif isinstance(value, bool):
            out[f"hp_{key}"] = value
        elif isinstance(value, (int, float)):
            out[f"hp_{key}"] = float(value)
        elif value is None:
            out[f"hp_{key}"] = None
        else:
            out[f"hp_{key}"] = json.dumps(value)
    return out


# The process umask, read once at import (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _atomic_write_table(table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically; a full disk raises ``harness.outputs.DiskFull`` and
    leaves no partial file."""
    import pyarrow.parquet as pq

    from harness.outputs import raise_if_disk_full

    needed = int(table.nbytes) + 4096
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise_if_disk_full(exc, path, needed)
        raise
    os.close(fd)
    try:
        # mkstemp makes the file 0600; a record is an ordinary result file (readable by the group
        # that shares the results folder), so give it the mode open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # pyarrow's IO errors are OSErrors
            raise_if_disk_full(exc, path, needed)
        raise


def write_run(out: str | os.PathLike, row: Mapping[str, Any], curves: Iterable[Mapping[str, Any]]) -> Path:
    """Write the curves then the row of one run, each atomically. Returns the row's path."""
    import pyarrow as pa

    run_id = row["run_id"]
    curves = list(curves)
    curve_table = pa.table({
        "run_id": pa.array([run_id] * len(curves), pa.string()),
        "step": pa.array([int(c["step"]) for c in curves], pa.int64()),
        "split": pa.array([str(c["split"]) for c in curves], pa.string()),
        "name": pa.array([str(c["name"]) for c in curves], pa.string()),
        "value": pa.array([float(c["value"]) for c in curves], pa.float64()),
    })
    _atomic_write_table(curve_table, curves_dir(out) / f"{run_id}.parquet")
    row_table = pa.Table.from_pylist([dict(row)])
    path = run_path(out, run_id)
    _atomic_write_table(row_table, path)
    return path


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))


def results_root(path: str | os.PathLike) -> Path:
    """Accept either a results folder (with runs/) or its runs/ folder itself."""
    path = Path(path)
    if path.name == "runs" and not (path / "runs").is_dir():
        return path.parent
    return path


def read_runs(path: str | os.PathLike, *, skipped: list[str] | None = None):
    """All run rows under ``path`` as one pandas DataFrame (empty if none).

    A corrupt or unreadable file is named in a warning (and appended to ``skipped``) and left out.
    Files are read on a small thread pool (parquet decoding releases the GIL) and the rows are
    unioned by column name, so runs of different optimizers (different ``hp_*`` columns) mix.
    """
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd
    import pyarrow.parquet as pq

    root = results_root(path)
    files = _parquet_files(runs_dir(root))

    def load(file: Path):
        try:
            return pq.read_table(file).to_pylist(), None
        except Exception as exc:  # corrupt/truncated file: name it, keep going
            return [], f"skipping unreadable run file {file}: {type(exc).__name__}: {exc}"

    rows: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(files)))) as pool:
        for file, (file_rows, problem) in zip(files, pool.map(load, files)):
            if problem is not None:
                warnings.warn(problem, stacklevel=2)
                if skipped is not None:
                    skipped.append(str(file))
            rows.extend(file_rows)
    df = pd.DataFrame.from_records(rows) if rows else pd.DataFrame()
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
    return df


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
    """The single row of one run file, as a dict."""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    if len(rows) != 1:
        raise ValueError(f"{path}: expected one run row, found {len(rows)}")
    return rows[0]


def json_ready(value: Any) -> Any:
    """Tuples to lists and non-finite floats to strings, so ``json.dumps`` output is valid JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def finite_or_nan(value: Any) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan
