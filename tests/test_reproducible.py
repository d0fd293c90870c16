"""Reproducible suites: the same suite file twice gives the same leaderboard bit for bit (one
worker with TPE; any number of workers with the deterministic qmc sampler), and a user's data file
is known by its content: moving it changes no run_id and re-runs nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_sweep import ROOT, _env, write_sweep

from harness.results import store as records
from harness.spec import RunSpec, dataset_id


def _suite(sweep_file, out, workers: int = 1) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "suite",
            str(sweep_file),
            "--out",
            str(out),
            "--workers",
            str(workers),
            "--progress",
            "none",
        ],
        env=_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (out / "leaderboard.csv").read_text() + (out / "leaderboard.md").read_text()


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
@pytest.mark.parametrize("sampler, workers", [("tpe", 1), ("qmc", 2)])
def test_a_suite_twice_gives_the_same_leaderboard_bit_for_bit(tmp_path, sampler, workers):
    sweep_file = write_sweep(tmp_path / "s.yaml", sampler=sampler, trials=3, eval_seeds=2, replicates=2)
    first = _suite(sweep_file, tmp_path / "a", workers)
    second = _suite(sweep_file, tmp_path / "b", workers)
    assert first == second


def _table(path, rows: int = 240, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": y}).to_csv(path, index=False)


def test_a_path_dataset_is_known_by_its_content_not_its_location(tmp_path):
    first, moved = tmp_path / "one" / "table.csv", tmp_path / "two" / "elsewhere.csv"
    first.parent.mkdir()
    _table(first)
    assert dataset_id(f"path:{first}").startswith("path@")
    base = RunSpec(
        task="tabular_mlp", optimizer="adamw", dataset=f"path:{first}", steps=5, task_options={"target": "label"}
    )
    moved.parent.mkdir()
    shutil.copy(first, moved)
    assert base.with_(dataset=f"path:{moved}").run_id == base.run_id
    _table(moved, seed=1)  # other content: another dataset
    assert base.with_(dataset=f"path:{moved}").run_id != base.run_id
    assert dataset_id("digits") == "digits" and dataset_id("path:/no/such/file.csv") == "path:/no/such/file.csv"


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_moving_the_file_of_a_sweep_reruns_nothing(tmp_path):
    data = tmp_path / "a" / "table.csv"
    data.parent.mkdir()
    _table(data)
    tasks = [
        {
            "task": "tabular_mlp",
            "size": "tiny",
            "datasets": [f"path:{data}"],
            "steps": 10,
            "options": {"target": "label"},
        }
    ]
    out = tmp_path / "out"
    board = _suite(write_sweep(tmp_path / "s.yaml", tasks=tasks, trials=2, eval_seeds=1), out)
    before = {p.name: p.stat().st_mtime_ns for p in records.runs_dir(out).glob("*.parquet")}
    moved = tmp_path / "b" / "table.csv"
    moved.parent.mkdir()
    shutil.move(str(data), str(moved))
    tasks[0]["datasets"] = [f"path:{moved}"]
    again = _suite(write_sweep(tmp_path / "s.yaml", tasks=tasks, trials=2, eval_seeds=1), out)
    after = {p.name: p.stat().st_mtime_ns for p in records.runs_dir(out).glob("*.parquet")}
    assert after == before  # the same records, none written again
    assert again == board
    df = records.read_runs(out)
    assert set(df["dataset"]) == {dataset_id(f"path:{moved}")}
    assert set(df["dataset_source"]) == {f"path:{data}"}  # where the file was when they ran
