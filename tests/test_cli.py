"""`optbench list` and `optbench run` as real subprocesses: happy paths and every exit-2 path."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from harness.errors import UserError
from harness.results import store as records
from harness.run.cli import parse_sets, parse_value


def optbench(*args, cwd=None, timeout=120):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )


def test_parse_values():
    assert parse_value("1e-3") == 1e-3 and parse_value("3") == 3 and parse_value("true") is True
    assert parse_value("0.9,0.95") == (0.9, 0.95) and parse_value("[0.9, 0.99]") == (0.9, 0.99)
    assert parse_value("none") is None and parse_value("abc") == "abc"
    hp, opts = parse_sets(["lr=0.01", "task.width=64"])
    assert hp == {"lr": 0.01} and opts == {"width": 64}
    with pytest.raises(UserError, match="key=value"):
        parse_sets(["lr"])


def test_version_prints_the_package_and_results_schema_versions():
    from harness.results.record import SCHEMA_VERSION
    from harness.results.versions import package_version

    out = optbench("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"optbench {package_version()} (results schema {SCHEMA_VERSION})"


def test_list_names_tasks_and_optimizers():
    out = optbench("list")
    assert out.returncode == 0, out.stderr
    for name in (
        "cifar_resnet",
        "gnn_graphland",
        "llm",
        "lstm_lm",
        "tabular_mlp",
        "adamw",
        "signum",
        "softsignum",
        "muon",
        "softmuon",
    ):
        assert name in out.stdout
    one = optbench("list", "--task", "tabular_mlp")
    assert one.returncode == 0 and "datasets:" in one.stdout and "breast_cancer" in one.stdout


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_run_writes_one_record_and_resume_skips(tmp_path):
    out_dir = tmp_path / "res"
    args = (
        "run",
        "--task",
        "tabular_mlp",
        "--optimizer",
        "softsignum",
        "--size",
        "tiny",
        "--steps",
        "30",
        "--set",
        "lr=3e-3",
        "--set",
        "alpha_sign=0.5",
        "--seed",
        "3",
        "--out",
        out_dir,
    )
    first = optbench(*args)
    assert first.returncode == 0, first.stderr
    assert "status=ok" in first.stdout and "wrote" in first.stdout
    df = records.read_runs(out_dir)
    assert len(df) == 1
    row = df.iloc[0]
    assert (row["task"], row["optimizer"], row["seed"], row["steps"]) == ("tabular_mlp", "softsignum", 3, 30)
    assert row["hp_alpha_sign"] == 0.5 and row["status"] == "ok"
    curves = pd.read_parquet(out_dir / "curves" / f"{row['run_id']}.parquet")
    assert (curves["split"] == "train").sum() >= 30
    # The softsignum switch happened (alpha_sign=0.5 of 30 steps) and was logged.
    opt = curves[(curves["split"] == "opt") & (curves["name"] == "phase")]
    assert not opt.empty and opt["value"].iloc[-1] == 1
    again = optbench(*args)
    assert again.returncode == 0 and "already finished" in again.stdout
    assert len(records.read_runs(out_dir)) == 1


def test_diverging_run_exits_zero_and_is_recorded(tmp_path):
    out = optbench(
        "run", "--task", "tabular_mlp", "--optimizer", "adamw", "--steps", "30", "--set", "lr=1e3", "--out", tmp_path
    )
    assert out.returncode == 0, out.stderr
    df = records.read_runs(tmp_path)
    assert list(df["status"]) == ["diverged"]
    assert df["objective"].iloc[0] == df["penalty"].iloc[0]


BAD_INPUTS = [
    (("--task", "cifar", "--optimizer", "adamw"), ["unknown task 'cifar'", "cifar_resnet", "tabular_mlp"]),
    (("--task", "tabular_mlp", "--optimizer", "adam"), ["unknown optimizer 'adam'", "adamw", "softmuon"]),
    (
        ("--task", "tabular_mlp", "--optimizer", "adamw", "--dataset", "nope"),
        ["unknown dataset 'nope'", "breast_cancer"],
    ),
    (("--task", "tabular_mlp", "--optimizer", "adamw", "--set", "lrr=0.1"), ["'lrr'", "weight_decay"]),
    (("--task", "tabular_mlp", "--optimizer", "adamw", "--set", "lr=-1"), ["lr"]),
    (("--task", "tabular_mlp", "--optimizer", "signum", "--set", "momentum=1.5"), ["momentum"]),
    (("--task", "tabular_mlp", "--optimizer", "softsignum", "--set", "alpha_sign=2"), ["alpha_sign"]),
    (("--task", "tabular_mlp", "--optimizer", "adamw", "--size", "huge"), ["unknown size 'huge'", "paper"]),
    (("--task", "tabular_mlp", "--optimizer", "adamw", "--steps", "0"), ["steps"]),
    (
        (
            "--task",
            "tabular_mlp",
            "--optimizer",
            "adamw",
            "--dataset",
            "path:/nonexistent/t.csv",
            "--set",
            "task.target=y",
        ),
        ["/nonexistent/t.csv"],
    ),
    (("--task", "cifar_resnet", "--optimizer", "adamw", "--size", "paper"), ["cifar-10", "data"]),
]


@pytest.mark.parametrize("args, expected", BAD_INPUTS)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, args, expected):
    """In process through harness.cli.main (the same code path as the console script, minus the
    interpreter start-up); three representative cases also run as real subprocesses below."""
    from harness.cli import main

    out_dir = tmp_path / "res"
    code = main(["run", *map(str, args), "--out", str(out_dir), "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2, err
    for piece in expected:
        assert piece.lower() in err.lower(), err
    assert not out_dir.exists() or not any(out_dir.rglob("*"))


@pytest.mark.parametrize("case", [0, 3, 10])
def test_bad_input_subprocess(tmp_path, case):
    args, expected = BAD_INPUTS[case]
    out_dir = tmp_path / "res"
    res = optbench("run", *args, "--out", out_dir, "--data-dir", tmp_path / "data")
    assert res.returncode == 2, (res.stdout, res.stderr)
    for piece in expected:
        assert piece.lower() in res.stderr.lower(), res.stderr
    assert "traceback" not in res.stderr.lower()
    assert not out_dir.exists() or not any(out_dir.rglob("*"))
