"""``optbench plan``: the runs, steps, space and time a sweep will take, counted from the validated
sweep file and priced from a pilot results folder (the committed leaderboard fixture: its records
say 2.5 s wall, 2.0 s training and 0.2 s evaluation per run, so each price is known by hand)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import plugins
from harness.errors import UserError
from harness.sweep import estimate, schema

ROOT = Path(__file__).resolve().parents[1]
PILOT = ROOT / "tests" / "data" / "leaderboard"


def _sweep(tmp_path: Path, steps: str = "steps: 100", extra: str = "") -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(
        textwrap.dedent(f"""
        suite: planned
        size: small
        trials: 3
        eval_seeds: 2
        optimizers:
          - adamw
          - signum
          - {{name: softsignum, branch_from: signum}}
        tasks:
          - task: tabular_mlp
            datasets: [diabetes]
            {steps}
        {extra}
    """)
    )
    return path


def test_runs_and_steps_per_phase_with_softx_branches(tmp_path):
    sweep = schema.load(_sweep(tmp_path))
    runs = estimate.planned_runs(sweep)
    phases = {p: [r for r in runs if r.phase == p] for p in estimate.PHASES}
    assert len(runs) == sweep.planned_runs == 12
    assert len(phases["tune"]) == 6 and len(phases["eval"]) == 4  # adamw + signum: 3 trials, 2 seeds each
    # softsignum shares signum's tuned configuration (no trials of its own): its 2 eval runs start
    # from signum's eval checkpoints
    assert len(phases["branch"]) == 2
    alpha = plugins.optimizer("softsignum").defaults["alpha_sign"]
    assert {r.steps for r in phases["branch"]} == {100 - math.floor(alpha * 100)}
    assert {r.steps for r in phases["tune"] + phases["eval"]} == {100}


def test_a_pilot_prices_each_run_by_its_setup_and_steps(tmp_path):
    pilot = estimate.read_pilot(PILOT)
    sweep = schema.load(_sweep(tmp_path))
    runs = estimate.planned_runs(sweep, pilot.budgets)
    setup, per_step = pilot.price(runs[0])
    assert setup == pytest.approx(0.3)  # 2.5 - 2.0 - 0.2
    # adamw on diabetes ran every step: 2.2 s over 100 steps
    assert per_step == pytest.approx(2.2 / 100)
    lines = estimate.summary(sweep, pilot, [1, 2])
    tune_line = next(line for line in lines if line.strip().startswith("tune"))
    assert tune_line.split()[1:3] == ["6", "600"]
    assert any("wall time on the pilot's device (cpu)" in line and "2 workers" in line for line in lines)
    assert any(
        "branch-point checkpoints kept" in line and line.split("storage: ")[1].startswith("2 ") for line in lines
    )  # signum's 2 eval runs keep their checkpoint at S


def test_task_defaults_come_from_the_pilot_or_are_named_unknown(tmp_path):
    sweep = schema.load(_sweep(tmp_path, steps=""))
    assert all(r.steps is None for r in estimate.planned_runs(sweep))
    lines = estimate.summary(sweep, None, [1])
    assert any("leave steps to the task's default" in line for line in lines)
    priced = estimate.summary(sweep, estimate.read_pilot(PILOT), [1])
    assert not any("task's default" in line for line in priced)  # the pilot ran diabetes at 100 steps
    other = schema.load(_sweep(tmp_path, steps="").parent / "plan.yaml")
    assert estimate.planned_runs(other, {("tabular_mlp", "small", "diabetes"): 40})[0].steps == 40


def test_a_pilot_without_the_sweeps_tasks_says_which_are_missing(tmp_path):
    path = tmp_path / "other.yaml"
    path.write_text(
        "suite: o\nsize: small\ntrials: 2\neval_seeds: 1\noptimizers: [adamw]\n"
        "tasks:\n  - task: lstm_lm\n    datasets: [pydoc]\n    steps: 50\n"
    )
    lines = estimate.summary(schema.load(path), estimate.read_pilot(PILOT), [1])
    assert any(line.startswith("wall time: unknown") and "lstm_lm (small)" in line for line in lines)


def test_margin_lists_what_each_comparison_needs():
    lines = estimate.settle(PILOT, "0.005")
    rows = [line for line in lines[2:] if line.startswith("  ") and "/" in line]
    assert rows, lines
    verdicts = {line.split()[2] for line in rows}
    assert verdicts <= {"better", "worse", "equivalent", "inconclusive"}
    with pytest.raises(UserError, match="invalid --margin"):
        estimate.settle(PILOT, "lots")


def test_bad_input_exits_2_naming_the_problem(tmp_path):
    with pytest.raises(UserError, match="worker counts"):
        estimate._workers("0,2")
    with pytest.raises(UserError, match="no run records"):
        estimate.read_pilot(tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPTBENCH_OFFLINE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_plans_without_running_and_refuses_what_the_sweep_refuses(tmp_path):
    good = _cli("plan", str(_sweep(tmp_path)), "--pilot", str(PILOT), "--workers", "1,4")
    assert good.returncode == 0, good.stderr
    assert "12 planned runs" in good.stdout and "4 workers" in good.stdout
    assert not (ROOT / "results" / "planned").exists()  # nothing run, nothing written
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "suite: x\ntrials: 2\neval_seeds: 1\noptimizers: [adamw, nosuch]\n"
        "tasks:\n  - task: tabular_mlp\n    datasets: [synthetic]\n"
    )
    refused = _cli("plan", str(bad))
    assert refused.returncode == 2 and "nosuch" in refused.stderr and "Traceback" not in refused.stderr
