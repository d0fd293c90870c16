"""``optbench leaderboard`` on ad-hoc run folders (``optbench run --out DIR``: phase ``run``, suite
``adhoc``, no study): each optimizer's runs are its evaluations, and the Markdown and the CSV say
that they were not tuned alike. The rows are the committed fixture's eval runs relabelled as ad-hoc
runs, so the statistics must equal the fixture's own."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from harness import cli
from harness.leaderboard import adhoc, build, render_csv, render_markdown
from harness.leaderboard.cli import csv_text
from harness.results import store as records

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "leaderboard"


@pytest.fixture(scope="module")
def frame():
    return records.read_runs(FIXTURE)


def _as_adhoc(frame):
    runs = frame[frame["phase"] == "eval"].copy()
    return runs.assign(phase="run", suite="adhoc", study="", trial=None)


def test_adhoc_runs_are_tabulated_as_the_evaluations_they_are(frame):
    sweep_board, _ = build(frame)
    board, _ = build(_as_adhoc(frame))
    assert board.notes[0] == adhoc.CAVEAT and not any(n.startswith("one tuning study") for n in board.notes)
    assert len(board.rows) == len(sweep_board.rows)
    for mine, theirs in zip(board.rows, sweep_board.rows):
        assert (mine["dataset"], mine["optimizer"]) == (theirs["dataset"], theirs["optimizer"])
        for column in ("n_seeds", "mean", "ci_lo", "ci_hi", "rank", "vs_adamw_verdict"):
            a, b = mine[column], theirs[column]
            assert (a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), column
        assert mine["tune_trials"] == 0


def test_markdown_and_both_csv_tables_carry_the_caveat(frame):
    board, _ = build(_as_adhoc(frame))
    assert "Note: " + adhoc.CAVEAT + "." in render_markdown(board) and "not tuned alike" in adhoc.CAVEAT
    for table in ("benchmarks", "aggregate"):
        rows = list(csv.reader(io.StringIO(csv_text(board, table))))
        assert rows[0][-1] == adhoc.CAVEAT_COLUMN and rows[0][:-1] == next(
            csv.reader(io.StringIO(render_csv(board, table)))
        )
        assert len(rows) > 1 and {r[-1] for r in rows[1:]} == {adhoc.CSV_CAVEAT}
        assert "not tuned alike" in adhoc.CSV_CAVEAT


def test_a_sweep_folder_is_left_as_it_was(frame):
    board, _ = build(frame)
    assert adhoc.CAVEAT not in board.notes and csv_text(board) == render_csv(board)
    mixed = frame.copy()
    mixed.loc[mixed.index[0], "phase"] = "run"  # one ad-hoc run beside eval runs: not an ad-hoc folder
    assert not adhoc.is_adhoc(mixed) and adhoc.as_evaluations(mixed)[1] is False


def test_several_configurations_of_one_optimizer_are_named(frame):
    rows = _as_adhoc(frame)
    pick = (rows["dataset"] == "diabetes") & (rows["optimizer"] == "muon")
    first = rows.index[pick][0]
    rows.loc[first, "hparams"] = json.dumps({"lr": 0.5})
    board, _ = build(rows)
    (note,) = [n for n in board.notes if n.startswith("these entries pool runs of several configurations")]
    assert note.endswith("(hparams 'mixed'): muon on tabular_mlp/diabetes")  # adamw's superseded run is not kept
    (row,) = [r for r in board.rows if r["dataset"] == "diabetes" and r["optimizer"] == "muon"]
    assert row["hparams"] == "mixed"


def test_the_cli_on_a_folder_of_adhoc_records(frame, tmp_path, capsys):
    """Records written by the store as `optbench run` writes them; before, this exited 2 ('no eval runs')."""
    keep = [c for c in records.COLUMNS if c in frame.columns]
    for row in _as_adhoc(frame[frame["dataset"] == "breast_cancer"]).to_dict("records"):
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items() if k in keep}
        records.write_run(tmp_path, clean, [])
    assert cli.main(["leaderboard", str(tmp_path), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["optimizer"] for r in rows} == set(frame.loc[frame["dataset"] == "breast_cancer", "optimizer"])
    assert {r["caveat"] for r in rows} == {adhoc.CSV_CAVEAT}
    assert cli.main(["leaderboard", str(tmp_path)]) == 0
    assert "not tuned alike" in capsys.readouterr().out
