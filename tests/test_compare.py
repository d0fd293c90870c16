"""``optbench compare A B``: two results folders side by side. The committed fixture folder
(``tests/data/leaderboard``) against itself and against changed copies of its records, built in
memory or as small folders (seconds)."""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import stat
from pathlib import Path

import pandas as pd
import pytest

from harness import cli
from harness.leaderboard import build, diff
from harness.results import store as records

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "leaderboard"


@pytest.fixture(scope="module")
def frame():
    return records.read_runs(FIXTURE)


@pytest.fixture(scope="module")
def board_a(frame):
    return build(frame)[0]


def _changed(frame) -> pd.DataFrame:
    """The fixture's records with planted changes: diabetes' adamw 5 rmse better (becomes the best,
    and the 1% margin, taken of adamw's mean, shrinks), signum gone from breast_cancer, the sbm
    benchmark gone, and muon on breast_cancer moved by a tenth of its margin (not a change)."""
    f = frame.copy()
    evals = f["phase"] == "eval"
    f.loc[evals & (f["dataset"] == "diabetes") & (f["optimizer"] == "adamw"), "test_metric"] -= 5.0
    f.loc[evals & (f["dataset"] == "breast_cancer") & (f["optimizer"] == "muon"), "test_metric"] += 0.0005
    keep = ~((f["dataset"] == "breast_cancer") & (f["optimizer"] == "signum")) & (f["dataset"] != "sbm")
    return f[keep].reset_index(drop=True)


def _entry(comparison, dataset, optimizer):
    (bench,) = [b for b in comparison.benchmarks if b.key[1] == dataset]
    (entry,) = [e for e in bench.entries if e.optimizer == optimizer]
    return bench, entry


def test_a_folder_against_itself_changes_nothing(board_a):
    comparison = diff.diff(board_a, board_a, "A", "B")
    assert comparison.n_changes == 0 and comparison.notes == []
    assert len(comparison.benchmarks) == len(
        {tuple(r[k] for k in ("task", "dataset", "size", "variant")) for r in board_a.rows}
    )
    text = diff.render_markdown(comparison)
    assert f"0 of {len(comparison.benchmarks)} benchmarks changed (0 change(s))." in text
    rows = list(csv.DictReader(io.StringIO(diff.render_csv(comparison))))
    assert len(rows) == len(board_a.rows)
    assert all(r["in_a"] == r["in_b"] == "true" and float(r["mean_change"]) == 0.0 for r in rows)
    assert {r["mean_moved"] for r in rows} == {"false"} and {r["changes"] for r in rows} == {""}


def test_planted_changes_are_found_and_named(frame, board_a):
    board_b = build(_changed(frame))[0]
    comparison = diff.diff(board_a, board_b, "before", "after")

    bench, adamw = _entry(comparison, "diabetes", "adamw")
    assert bench.best_a != bench.best_b and bench.best_b == ("adamw",)
    assert f"best changed: {', '.join(bench.best_a)} in before, adamw in after" in bench.changes
    assert any(c.startswith("margins differ:") for c in bench.changes)
    assert adamw.mean_change == pytest.approx(-5.0) and adamw.mean_moved
    assert any(c.startswith("mean moved -5 ") for c in adamw.changes), adamw.changes
    for entry in bench.entries:  # every verdict change against adamw is reported, in both directions
        if entry.optimizer == "adamw":
            continue
        before, after = entry.a["vs_adamw_verdict"], entry.b["vs_adamw_verdict"]
        assert (f"verdict vs adamw: {before} -> {after}" in entry.changes) == (before != after)
    assert any(e.verdict_changed for e in bench.entries)

    bench, signum = _entry(comparison, "breast_cancer", "signum")
    assert signum.a is not None and signum.b is None and signum.changes == ["only in before"]
    _, muon = _entry(comparison, "breast_cancer", "muon")
    assert 0 < abs(muon.mean_change) < muon.margin and muon.mean_moved is False
    assert not any(c.startswith("mean moved") for c in muon.changes)

    (sbm,) = [b for b in comparison.benchmarks if b.key[1] == "sbm"]
    assert sbm.changes == ["benchmark only in before"] and all(e.b is None for e in sbm.entries)

    text = diff.render_markdown(comparison)
    assert "# Comparison: A = before, B = after" in text
    assert "- gnn_graphland/sbm (small): benchmark only in before" in text
    assert "signum: only in before" in text and "adamw: mean moved -5" in text
    rows = {(r["dataset"], r["optimizer"]): r for r in csv.DictReader(io.StringIO(diff.render_csv(comparison)))}
    assert rows[("breast_cancer", "signum")]["in_b"] == "false" and rows[("sbm", "adamw")]["in_b"] == "false"
    assert rows[("diabetes", "adamw")]["mean_moved"] == "true" and rows[("diabetes", "muon")]["best_changed"] == "true"
    assert math.isclose(
        float(rows[("diabetes", "adamw")]["b_mean"]) - float(rows[("diabetes", "adamw")]["a_mean"]), -5.0, abs_tol=1e-6
    )


def _subset(out: Path, frame, *datasets: str) -> Path:
    for run_id in frame.loc[frame["dataset"].isin(datasets), "run_id"]:
        for sub in ("runs", "curves"):
            (out / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE / sub / f"{run_id}.parquet", out / sub / f"{run_id}.parquet")
    return out


def test_cli_markdown_to_stdout_and_csv_to_a_file(frame, board_a, tmp_path, capsys):
    a = _subset(tmp_path / "a", frame, "diabetes", "breast_cancer")
    b = _subset(tmp_path / "b", frame, "diabetes")
    assert cli.main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Comparison: A = {a}, B = {b}") and "1 of 2 benchmarks changed (1 change(s))" in out
    assert "- tabular_mlp/breast_cancer (small): benchmark only in " + str(a) in out
    target = tmp_path / "cmp.csv"
    previous = os.umask(0o022)
    try:
        assert cli.main(["compare", str(a), str(b), "--format", "csv", "--out", str(target)]) == 0
    finally:
        os.umask(previous)
    rows = list(csv.DictReader(target.open()))
    assert list(rows[0]) == list(diff.COLUMNS)
    assert len(rows) == sum(r["dataset"] in ("diabetes", "breast_cancer") for r in board_a.rows)
    assert {r["dataset"] for r in rows if r["in_b"] == "true"} == {"diabetes"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_bad_input_exits_2_naming_the_folder(frame, tmp_path, capsys):
    empty, good = tmp_path / "empty", _subset(tmp_path / "good", frame, "diabetes")
    empty.mkdir()
    assert cli.main(["compare", str(good), str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"B ({tmp_path / 'nope'}): results folder" in err and "does not exist" in err
    assert cli.main(["compare", str(empty), str(good)]) == 2
    err = capsys.readouterr().err
    assert f"A ({empty}): no run records under {empty}" in err
    target = tmp_path / "not-written.md"
    assert cli.main(["compare", str(good), str(empty), "--out", str(target)]) == 2
    assert not target.exists() and "B (" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", str(good), str(good), "--format", "html"])
    assert exc.value.code == 2 and "invalid choice: 'html'" in capsys.readouterr().err
