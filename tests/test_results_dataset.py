"""The run records are one dataset: a results folder of real runs (different optimizers, a diverged
run, a failure record, runs with and without steps_to_target) reads whole with pandas and pyarrow
(polars and duckdb when installed) with the documented types; a results-schema 1 file still reads;
the leaderboard refuses to pool result epochs (real ``optbench leaderboard`` subprocess) unless
``--mixed-versions``; the CHANGELOG, the docs and the version agree with the code."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

import harness
from harness.outputs import atomic_write, atomic_write_text
from harness.results import record, store, versions
from harness.results.schema import V1_FILL, arrow_schema, curve_schema
from harness.run.loop import run
from harness.run.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "leaderboard"
SUITE = "dataset"
# (optimizer, hyperparameters, seed): different optimizers (different hyperparameter sets), one run that
# reaches tabular_mlp's target (an int steps_to_target), ones that do not (null), one that diverges.
RUNS = (
    ("adamw", {"lr": 1e-2}, 1),
    ("adamw", {"lr": 1e-2}, 2),
    ("adamw", {"lr": 1e3}, 3),
    ("signum", {}, 1),
    ("signum", {}, 2),
    ("softsignum", {"alpha_sign": 0.5}, 1),
    ("softsignum", {"alpha_sign": 0.5}, 2),
    ("muon", {}, 1),
    ("muon", {}, 2),
)
ENVIRONMENT = {"git_sha": "test", "torch_version": "x", "python_version": "y", "device": "cpu"}


def _spec(optimizer: str, hparams: dict, seed: int):
    return resolve(
        task="tabular_mlp",
        optimizer=optimizer,
        size="tiny",
        steps=30,
        hparams=hparams,
        seed=seed,
        phase="eval",
        suite=SUITE,
        study=f"{SUITE}/tabular_mlp/{optimizer}",
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Real runs, a diverged one, and the sweep's failure record of a run that raised."""
    out = tmp_path_factory.mktemp("results")
    for optimizer, hparams, seed in RUNS:
        spec, task = _spec(optimizer, hparams, seed)
        run(spec, out_dir=out, task=task, progress=False)
    spec, task = _spec("signum", {}, 3)
    row = store.failure_row(
        spec,
        metric=task.metric.name,
        direction=task.metric.direction,
        penalty=task.penalty,
        detail="RuntimeError: boom",
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:01+00:00",
        wall_seconds=1.0,
        environment=ENVIRONMENT,
    )
    store.write_run(out, row, [])
    return out


def _files(out: Path, sub: str = "runs") -> list[Path]:
    return sorted((out / sub).glob("*.parquet"))


def test_the_folder_holds_what_the_dataset_test_needs(results):
    frame = store.read_runs(results)
    assert len(frame) == len(RUNS) + 1 == len(_files(results))
    assert set(frame["status"]) == {"ok", "diverged", "failed"}
    assert set(frame["optimizer"]) == {"adamw", "signum", "softsignum", "muon"}
    reached = frame["steps_to_target"]
    assert reached.notna().any() and reached.isna().any()  # the int-vs-null column of issue 19


def test_every_file_has_exactly_the_one_schema(results):
    for file in _files(results):
        assert pq.read_schema(file).equals(arrow_schema()), file.name
    for file in _files(results, "curves"):  # the failure record's empty curves too
        assert pq.read_schema(file).equals(curve_schema()), file.name
    assert not any(name.startswith("hp_") for name in arrow_schema().names)


def test_pandas_reads_the_runs_folder_whole_with_the_documented_types(results):
    runs = results / "runs"
    frame = pd.read_parquet(runs)
    assert len(frame) == len(_files(results)) and list(frame.columns) == arrow_schema().names
    exact = pd.read_parquet(runs, dtype_backend="pyarrow")
    for field in arrow_schema():
        assert exact[field.name].dtype.pyarrow_dtype == field.type, field.name
    # the default (numpy) backend: an int64 column holding a null comes as float64, as documented
    assert frame["steps_to_target"].dtype == "float64" and frame["seed"].dtype == "int64"
    assert frame["status"].isna().sum() == 0
    curves = pd.read_parquet(results / "curves")
    assert list(curves.columns) == list(store.CURVE_COLUMNS) and set(curves["run_id"]) <= set(frame["run_id"])


def test_pyarrow_dataset_reads_every_row_and_column(results):
    table = ds.dataset(results / "runs", format="parquet").to_table()
    assert table.schema.equals(arrow_schema()) and table.num_rows == len(_files(results))
    reached = table["steps_to_target"]
    assert reached.type == pa.int64() and 0 < reached.null_count < table.num_rows
    assert table["optbench_version"].to_pylist() == [versions.package_version()] * table.num_rows
    assert set(table["budget"].to_pylist()) == {1.0} and set(table["delay"].to_pylist()) == {0}


def test_polars_and_duckdb_globs_read_every_row_and_column(results):
    """Not in the lock: runs where they are installed (docs/results-schema.md shows the commands)."""
    pl = pytest.importorskip("polars")
    duckdb = pytest.importorskip("duckdb")
    glob = str(results / "runs" / "*.parquet")
    frame = pl.read_parquet(glob)
    assert frame.shape == (len(_files(results)), len(arrow_schema()))
    shape = duckdb.sql(f"SELECT * FROM read_parquet('{glob}')")
    assert (len(shape.fetchall()), len(shape.columns)) == (len(_files(results)), len(arrow_schema()))


def test_read_runs_adds_hp_columns_from_the_hparams_json(results):
    frame = store.read_runs(results)
    assert list(frame.columns[: len(arrow_schema())]) == arrow_schema().names
    for _, row in frame.iterrows():
        hp = json.loads(row["hparams"])
        for name, value in record.hp_columns(hp).items():
            got = row[name]
            assert got == value or (isinstance(value, float) and math.isnan(value) and math.isnan(got)), name
    muon = frame[frame["optimizer"] == "muon"]
    assert muon["hp_aux_lr"].notna().all() and frame.loc[frame["optimizer"] == "adamw", "hp_aux_lr"].isna().all()
    one = store.read_runs_file(_files(results)[0])
    assert {k for k in one if k.startswith("hp_")} == {f"hp_{k}" for k in json.loads(one["hparams"])}


def test_the_failure_record_and_the_finished_run_come_from_one_builder(results):
    frame = store.read_runs(results).set_index("status")
    failed, ok = frame.loc["failed"], frame.loc["ok"].iloc[0]
    assert failed["steps_done"] == 0 and math.isnan(failed["val_metric"]) and failed["objective"] == failed["penalty"]
    assert failed["status_detail"] == "RuntimeError: boom" and failed["git_sha"] == "test"
    for column in ("optbench_version", "schema_version", "optimizer_origin", "dataset_source", "budget", "delay"):
        assert failed[column] == ok[column], column
    spec, _ = _spec("adamw", {}, 5)
    with pytest.raises(ValueError, match=r"missing \['steps_done'"):
        record.from_spec(spec, environment=ENVIRONMENT, steps=10)
    with pytest.raises(ValueError, match="missing torch_version, python_version, device"):
        record.failure(
            spec,
            metric="accuracy",
            direction="max",
            penalty=0.0,
            detail="",
            started_at="",
            finished_at="",
            wall_seconds=0.0,
            environment={"git_sha": "x"},
        )


def test_write_run_refuses_a_key_that_is_not_a_column_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="not run record columns: val_metrc"):
        store.write_run(
            tmp_path, {"run_id": "r1", "val_metrc": 0.5}, [{"step": 1, "split": "train", "name": "loss", "value": 1.0}]
        )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "curves").exists()


def _as_schema_1(row: dict) -> dict:
    """The row as results schema 1 stored it: hp_* columns, no version/budget/delay columns."""
    old = {k: v for k, v in row.items() if k not in ("optbench_version", "budget", "delay")}
    old.update(record.hp_columns(json.loads(row["hparams"])), schema_version=1)
    return old


def test_a_schema_1_file_still_reads(results, tmp_path):
    out = tmp_path / "mixed"
    shutil.copytree(results, out)
    # a committed file the schema 1 writer made (it lacks replicate, dataset_source, the origins, ...)
    committed = sorted((FIXTURE / "runs").glob("*.parquet"))[0]
    shutil.copy(committed, out / "runs" / committed.name)
    # and one of this folder's rows as the schema 1 writer stored it: steps_to_target typed null
    row = store.read_runs_file(_files(results)[3])
    assert row["steps_to_target"] is None
    v1 = _as_schema_1(dict(row, run_id="v1" + row["run_id"][2:]))
    pq.write_table(pa.Table.from_pylist([v1]), out / "runs" / f"{v1['run_id']}.parquet")
    assert pq.read_schema(out / "runs" / f"{v1['run_id']}.parquet").field("steps_to_target").type == pa.null()

    frame = store.read_runs(out)
    assert len(frame) == len(_files(results)) + 2
    assert list(frame.columns[: len(arrow_schema())]) == arrow_schema().names
    old = frame[frame["schema_version"] == 1].set_index("run_id")
    assert len(old) == 2 and old["optbench_version"].isna().all()
    for column, value in V1_FILL.items():
        assert (old[column] == value).all(), column
    stored = pq.read_table(committed).to_pylist()[0]
    mine = old.loc[stored["run_id"]]
    assert mine["dataset_source"] == stored["dataset"]
    for name, value in stored.items():
        if name.startswith("hp_"):
            assert mine[name] == value or (value is None and pd.isna(mine[name])), name
    assert store.read_runs_file(out / "runs" / committed.name)["hp_lr"] == stored["hp_lr"]
    assert store.record_state(out, stored["run_id"]) == ("ok", "")


def test_a_file_of_a_newer_schema_is_named_and_left_out(results, tmp_path):
    out = tmp_path / "newer"
    shutil.copytree(results, out)
    row = dict(store.read_runs_file(_files(results)[0]), run_id="future", schema_version=record.SCHEMA_VERSION + 1)
    store.write_run(out, row, [])
    skipped: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = store.read_runs(out, skipped=skipped)
    assert len(frame) == len(_files(results)) and skipped == [str(store.run_path(out, "future"))]
    assert any("newer than this optbench" in str(w.message) for w in caught)


# ------------------------------------------------------------------------------------------ versions


def optbench(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env
    )


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


def test_leaderboard_refuses_rows_of_two_result_epochs_unless_mixed_versions(results, tmp_path):
    out = tmp_path / "epochs"
    shutil.copytree(results, out)
    n = len(_files(results))
    row = dict(store.read_runs_file(_files(results)[0]), run_id="from-the-future", seed=7, optbench_version="9.9.9")
    store.write_run(out, row, [])
    board = tmp_path / "board.md"
    refused = optbench("leaderboard", str(out), "--out", str(board))
    assert refused.returncode == 2, refused.stderr
    assert f"{versions.package_version()} ({_rows(n)}); 9.9.9 (1 row)" in refused.stderr
    assert "--mixed-versions" in refused.stderr and "Traceback" not in refused.stderr and not board.exists()

    pooled = optbench("leaderboard", str(out), "--mixed-versions")
    assert pooled.returncode == 0, pooled.stderr
    assert "pooled (--mixed-versions)" in pooled.stdout and "9.9.9 (1 row)" in pooled.stdout  # in the table
    assert "pooled (--mixed-versions)" in pooled.stderr

    same = optbench("leaderboard", str(results), "--format", "csv")  # one epoch: no note, no refusal
    assert same.returncode == 0 and "mixed-versions" not in same.stderr + same.stdout


def test_the_report_refuses_rows_of_two_result_epochs_unless_mixed_versions(results, tmp_path):
    """``optbench report`` holds the leaderboard's rule: exit 2 naming the versions and writing
    nothing; with ``--mixed-versions`` it writes the report and says what it pooled."""
    out = tmp_path / "epochs"
    shutil.copytree(results, out)
    row = dict(store.read_runs_file(_files(results)[0]), run_id="from-the-future", seed=7, optbench_version="9.9.9")
    store.write_run(out, row, [])
    pages = tmp_path / "report"
    refused = optbench("report", str(out), "--out", str(pages))
    assert refused.returncode == 2, refused.stderr
    assert "9.9.9 (1 row)" in refused.stderr and "--mixed-versions" in refused.stderr
    assert "Traceback" not in refused.stderr and not pages.exists()

    pooled = optbench("report", str(out), "--out", str(pages), "--mixed-versions")
    assert pooled.returncode == 0, pooled.stderr
    assert "pooled (--mixed-versions)" in pooled.stderr and (pages / "index.md").is_file()


def test_rows_without_a_version_count_as_unknown(results, tmp_path):
    out = tmp_path / "unknown"
    shutil.copytree(results, out)
    row = store.read_runs_file(_files(results)[0])
    old = _as_schema_1(dict(row, run_id="written-before-versions", seed=8))
    pq.write_table(pa.Table.from_pylist([old]), out / "runs" / "written-before-versions.parquet")
    refused = optbench("leaderboard", str(out))
    assert refused.returncode == 2
    assert "unknown (1 row, written before versions were recorded)" in refused.stderr, refused.stderr


def test_result_epochs():
    here = versions.package_version()
    assert versions.result_epoch(None) == versions.result_epoch(float("nan")) == versions.result_epoch("") == "unknown"
    assert versions.result_epoch(here) == versions.result_epoch(f"{here}+local") == versions.RESULT_CHANGES[-1].version
    assert versions.result_epoch("999.0") == "999.0"  # newer than this optbench: its own epoch
    assert versions.result_epoch("0.0.1") == f"before {versions.RESULT_CHANGES[0].version}"
    assert versions.release("0.2.0rc1") == versions.release("0.2") == (0, 2) and versions.release("dev") is None
    epochs = versions.mixed_epochs([here, here, None, "999.0"])
    assert versions.describe(epochs) == (
        f"{here} (2 rows); 999.0 (1 row); unknown (1 row, written before versions were recorded)"
    )


def test_changelog_records_each_result_change_and_the_current_release():
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (\S+)", text, flags=re.M)
    assert harness.__version__ in headings
    for change in versions.RESULT_CHANGES:
        assert change.version in headings, change
    assert versions.RESULT_CHANGES[0].records  # the first entry opens the first epoch


def test_the_version_is_one_number_everywhere():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^version = "([^"]+)"', pyproject, flags=re.M).group(1) == harness.__version__
    assert versions.package_version() == harness.__version__, "stale install: pip install -e . again"


def test_the_schema_document_lists_every_column_with_its_type():
    text = (ROOT / "docs" / "results-schema.md").read_text(encoding="utf-8")
    for field in arrow_schema():
        assert re.search(rf"^\| `{field.name}` \| {field.type} \|", text, flags=re.M), field.name
    for field in curve_schema():
        assert re.search(rf"^\| `{field.name}` \| {field.type} \|", text, flags=re.M), field.name


# ------------------------------------------------------------------------------------- atomic writes


def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "sub" / "table.md"
    atomic_write_text(target, "old\n")
    assert target.read_text() == "old\n" and target.stat().st_mode & 0o777 == 0o666 & ~umask

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old\n" and sorted(p.name for p in target.parent.iterdir()) == ["table.md"]
