"""``<out>/plan.json``: the sweep's budget as the results folder records it, and the leaderboard that
reads it without importing the sweep (``harness.results.budget``).

- ``optbench sweep`` writes it (with ``sweep.yaml``) before any work, and it holds what the sweep plans;
  a refused sweep file leaves it untouched;
- ``within_budget`` keeps exactly the rows of the last accepted budget (lowered trials and eval seeds,
  a ``transfer_from`` study, an untuned SoftX branch, studies the sweep does not plan);
- a folder with ``sweep.yaml`` but no ``plan.json`` (a sweep run before it existed), or a ``plan.json``
  that cannot be trusted, is refused (exit 2) naming the command that writes it, which then works;
- the leaderboard is computed in an interpreter where ``harness.sweep`` cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from test_sweep import _env, records, write_sweep
from test_sweep_healing import metric_by_slot, sweep_cli

from harness.cli import main
from harness.errors import UserError
from harness.results import budget
from harness.sweep import local as sweep_local
from harness.sweep import schema as sweep_schema
from harness.sweep.resolve import preflight


def test_prepare_writes_the_planned_budget_before_any_run(tmp_path, capsys):
    base = {"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12}
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        trials=2,
        eval_seeds=[7, 9],
        optimizers=["signum", {"name": "softsignum", "branch_from": "signum"}],
        tasks=[{**base, "name": "a"}, {**base, "name": "b", "transfer_from": "a"}],
    )
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    sweep_local.prepare(sweep, out, None)
    assert not (out / "runs").exists()  # written before any work
    plan = json.loads((out / "plan.json").read_text())
    info = preflight(sweep)
    assert plan == {
        "format": budget.PLAN_FORMAT,
        "suite": "t",
        "sweep_sha256": budget.sweep_digest(sweep_file.read_text()),
        "studies": [
            {
                "study": p.study,
                "trials": p.trials,
                "eval_seeds": [7, 9],
                "transfer_from": p.transfer_from,
                "branch_from": p.branch_from,
                "direction": info[p.study].direction,
                "budget": 1.0,
                "delay": 0,
                "cell": {},
            }
            for p in sweep.studies
        ],
    }
    by_study = {s["study"]: s for s in plan["studies"]}
    assert by_study["t/a/synthetic/softsignum"]["branch_from"] == "t/a/synthetic/signum"
    assert by_study["t/b/synthetic/signum"]["transfer_from"] == "t/a/synthetic/signum"
    assert by_study["t/b/synthetic/signum"]["trials"] == 0 and by_study["t/a/synthetic/signum"]["trials"] == 2
    assert {s["direction"] for s in plan["studies"]} == {"max"}  # tabular_mlp: accuracy
    assert budget.read_plan(out) == plan
    assert (out / "sweep.yaml").read_text() == sweep_file.read_text()
    assert not list(out.glob(".*.tmp"))  # the atomic writes left no temporary file

    # A refused sweep file (a changed step budget) writes nothing: plan.json stays the accepted one.
    before = (out / "plan.json").read_bytes()
    write_sweep(
        sweep_file, trials=2, eval_seeds=[7, 9], optimizers=["signum"], tasks=[{**base, "name": "a", "steps": 13}]
    )
    assert main(["sweep", str(sweep_file), "--out", str(out), "--progress", "none"]) == 2
    assert "different steps" in capsys.readouterr().err
    assert (out / "plan.json").read_bytes() == before


def frame_of(rows: list[tuple]) -> pd.DataFrame:
    """Run rows (study, phase, trial, seed, status, objective, direction): what the filter reads."""
    return pd.DataFrame(rows, columns=["study", "phase", "trial", "seed", "status", "objective", "direction"])


def test_within_budget_rules_on_known_rows():
    plan = {
        "format": budget.PLAN_FORMAT,
        "suite": "s",
        "sweep_sha256": "",
        "studies": [
            {
                "study": "A",
                "trials": 3,
                "eval_seeds": [1, 2],
                "transfer_from": None,
                "branch_from": None,
                "direction": "min",
            },
            {
                "study": "T",
                "trials": 0,
                "eval_seeds": [1],
                "transfer_from": "A",
                "branch_from": None,
                "direction": "min",
            },
            {
                "study": "C",
                "trials": 0,
                "eval_seeds": [1, 2],
                "transfer_from": None,
                "branch_from": "A",
                "direction": "min",
            },
            {
                "study": "U",
                "trials": 0,
                "eval_seeds": [5],
                "transfer_from": None,
                "branch_from": None,
                "direction": "max",
            },
        ],
    }
    rows = [
        ("A", "tune", 0, 0, "ok", 0.5, "min"),
        ("A", "tune", 1, 0, "pruned", 0.1, "min"),  # pruned: never the best
        ("A", "tune", 2, 0, "ok", 0.3, "min"),  # the best of slots 0..2
        ("A", "tune", 3, 0, "ok", 0.0, "min"),  # beyond the budget: out, and not the best
        ("A", "eval", 2, 1, "ok", 0.3, "min"),
        ("A", "eval", 2, 2, "ok", 0.3, "min"),
        ("A", "eval", 2, 3, "ok", 0.3, "min"),  # a seed the plan does not list
        ("A", "eval", 3, 1, "ok", 0.0, "min"),  # evaluates slot 3, not the best within budget
        ("T", "eval", 2, 1, "ok", 0.4, "min"),  # transfer: the donor's best slot
        ("T", "eval", 0, 1, "ok", 0.4, "min"),
        ("C", "eval", 2, 2, "ok", 0.2, "min"),  # untuned branch: its parent's best slot
        ("C", "eval", 3, 2, "ok", 0.2, "min"),
        ("U", "eval", None, 5, "ok", 1.0, "max"),  # untuned, no donor: every listed seed
        ("U", "eval", None, 6, "ok", 1.0, "max"),
        ("Z", "tune", 0, 0, "ok", 0.0, "min"),  # a study the sweep does not plan
    ]
    kept, dropped = budget.within_budget(frame_of(rows), plan)
    assert list(kept.index) == [0, 1, 2, 4, 5, 8, 10, 12]
    assert dropped == len(rows) - 8
    # Ties go to the lowest slot; a failed run is never the best; no complete run: no eval row counts.
    tie = frame_of(
        [
            ("A", "tune", 0, 0, "failed", 0.0, "min"),
            ("A", "tune", 1, 0, "ok", 0.3, "min"),
            ("A", "tune", 2, 0, "ok", 0.3, "min"),
            ("A", "eval", 1, 1, "ok", 0, "min"),
            ("A", "eval", 2, 1, "ok", 0, "min"),
        ]
    )
    assert list(budget.within_budget(tie, plan)[0].index) == [0, 1, 2, 3]
    none = frame_of([("A", "tune", 0, 0, "failed", None, "min"), ("A", "eval", 0, 1, "ok", 0, "min")])
    assert list(budget.within_budget(none, plan)[0].index) == [0]
    assert budget.within_budget(frame_of([]), plan)[1] == 0


def test_lowered_budget_filters_the_same_rows_through_plan_json(tmp_path, capsys, monkeypatch):
    """Tune metric = the slot (accuracy: higher is better), eval metric = 10 + evaluated slot + seed/100
    (``metric_by_slot``): lowered from 3 trials / 2 seeds to 2 / 1, the budget keeps tune slots 0, 1 and
    slot 1's evaluation on seed 1 only."""
    metric_by_slot(monkeypatch)
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=3, eval_seeds=2)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    write_sweep(sweep_file, optimizers=["adamw"], trials=2, eval_seeds=1)
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "3/3 runs recorded (2 tune, 1 eval;" in err
    plan = budget.read_plan(out)
    assert [(s["trials"], s["eval_seeds"]) for s in plan["studies"]] == [(2, [1])]
    frame = records(out)
    assert len(frame) == 3 + 2 + 1  # every run stays on disk
    kept, dropped = budget.within_budget(frame, plan)
    got = sorted(zip(kept["phase"], kept["trial"].astype(int), kept["seed"].astype(int)))
    assert got == [("eval", 1, 1), ("tune", 0, 0), ("tune", 1, 0)] and dropped == 3
    from harness import leaderboard

    board, notes = leaderboard.build(out)
    (row,) = board.rows
    assert (row["tune_trials"], row["n_seeds"], row["mean"]) == (2, 1, pytest.approx(11.01))
    assert any(f"3 run record(s) outside the budget of {out / 'plan.json'}" in n for n in notes)


def test_folder_without_plan_json_is_refused_until_the_sweep_command_runs_again(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    (out / "plan.json").unlink()  # as a results folder of a sweep run before plan.json existed
    with pytest.raises(UserError, match="holds a sweep file .* but not the budget written with it"):
        budget.read_plan(out)
    capsys.readouterr()
    assert main(["leaderboard", str(out), "--out", str(tmp_path / "board.md")]) == 2
    err = capsys.readouterr().err
    assert "re-run the optbench sweep (or suite) command" in err and "Traceback" not in err
    assert not (tmp_path / "board.md").exists()

    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    code, err = sweep_cli(capsys, sweep_file, "--out", out)  # the way out the message names
    assert code == 0 and "2/2 runs recorded" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps  # nothing ran again
    assert budget.read_plan(out)["studies"][0]["study"] == "t/tabular_mlp/synthetic/adamw"
    assert main(["leaderboard", str(out), "--out", str(tmp_path / "board.md")]) == 0


@pytest.mark.parametrize(
    "damage,words",
    [
        ("format", "has format 99, this optbench reads format 1"),
        ("json", "cannot read the budget of the sweep"),
        ("keys", "studies[0] lacks one of study, trials, eval_seeds"),
        ("sweep.yaml", "was not written with the sweep file"),
    ],
)
def test_untrustworthy_plan_json_is_refused(tmp_path, damage, words):
    sweep = sweep_schema.load(write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1))
    out = tmp_path / "out"
    sweep_local.prepare(sweep, out, None)
    path = out / "plan.json"
    plan = json.loads(path.read_text())
    if damage == "format":
        path.write_text(json.dumps({**plan, "format": 99}))
    elif damage == "json":
        path.write_text(path.read_text()[:40])
    elif damage == "keys":
        path.write_text(json.dumps({**plan, "studies": [{"study": "x"}]}))
    else:
        (out / "sweep.yaml").write_text((out / "sweep.yaml").read_text().replace('"trials": 1', '"trials": 5'))
    with pytest.raises(UserError) as err:
        budget.read_plan(out)
    assert words in str(err.value) and "re-run the optbench sweep (or suite) command" in str(err.value)


BLOCKED = """
import json, sys
sys.modules["harness.sweep"] = None  # any import of the sweep now fails
from harness import leaderboard
board, notes = leaderboard.build(sys.argv[1])
paths = leaderboard.write(sys.argv[1], sys.argv[2])
print(json.dumps({"rows": [[r["optimizer"], r["tune_trials"], r["n_seeds"]] for r in board.rows], "notes": notes,
                  "paths": sorted(str(p) for p in paths),
                  "sweep": sorted(m for m in sys.modules if m.startswith("harness.sweep") and sys.modules[m])}))
"""


def test_leaderboard_needs_no_sweep_module(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", trials=2, eval_seeds=1)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    write_sweep(sweep_file, trials=1, eval_seeds=1)  # lowered: the budget must come from plan.json
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED, str(out), str(tmp_path / "board")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert sorted(got["rows"]) == [["adamw", 1, 1], ["signum", 1, 1]]
    assert got["sweep"] == []
    assert any("outside the budget of" in n for n in got["notes"])
    assert (tmp_path / "board" / "leaderboard.md").is_file()
