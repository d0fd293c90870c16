"""``optbench status`` and the time left (``harness.sweep.eta``), and the launcher flags' refusals.
No SLURM needed: the SLURM launcher end to end is ``tests/test_slurm_e2e.py``."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from test_sweep import write_sweep

from harness.cli import main
from harness.sweep import eta
from harness.sweep import local as sweep_local
from harness.sweep import schema as sweep_schema
from harness.sweep import status as sweep_status

# ---------------------------------------------------------------------------------------------
# The estimate
# ---------------------------------------------------------------------------------------------


def test_no_estimate_until_enough_runs_are_measured_or_without_workers():
    left, group = {"a": 4}, {"a": "g"}
    assert eta.estimate(left, {"a": [1.0] * (eta.MIN_MEASURED - 1)}, group, workers=2) is None
    assert eta.estimate(left, {"a": [1.0] * eta.MIN_MEASURED}, group, workers=0) is None
    assert eta.estimate(left, {"a": [1.0] * eta.MIN_MEASURED}, group, workers=1) is not None


def test_each_study_priced_by_its_own_mean_then_its_group_then_all():
    seconds = {"a": [2.0, 4.0], "b": [10.0], "c": []}
    group = {"a": "tab", "b": "llm", "c": "tab", "d": "new"}
    # a: 2 left x 3 s; b: 1 x 10 s; c (unmeasured, group tab = a's runs): 3 x 3 s; d (unknown group:
    # every run, mean 16/3 s): 3 x 16/3 s. Work 6 + 10 + 9 + 16 = 41 s over 2 workers.
    e = eta.estimate({"a": 2, "b": 1, "c": 3, "d": 3, "done": 0}, seconds, group, workers=2)
    assert e is not None
    assert e.seconds == pytest.approx(41 / 2) and e.measured == 3 and e.workers == 2 and e.guessed == 2
    assert e.text() == "~20s left (rough: 2 studies unmeasured)" and e.text(short=True) == "~20s left (rough)"


def test_time_left_is_never_below_the_dearest_run_and_workers_beyond_the_runs_do_not_help():
    e = eta.estimate({"a": 1, "b": 1}, {"a": [100.0], "b": [1.0, 1.0, 1.0]}, {}, workers=8)
    assert e is not None and e.workers == 2 and e.seconds == pytest.approx(100.0) and e.guessed == 0
    done = eta.estimate({"a": 0}, {"a": [1.0, 2.0, 3.0]}, {}, workers=3)
    assert done is not None and done.seconds == 0


@pytest.mark.parametrize(
    "seconds, text",
    [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (3600 * 2 + 300, "2h05m"), (86400 * 3 + 3600 * 4, "3d04h")],
)
def test_durations(seconds, text):
    assert eta.duration(seconds) == text


def _fake_sweep():
    def plan(name, opt):
        return SimpleNamespace(
            study=name,
            planned_runs=5,
            task="tabular_mlp",
            size="tiny",
            dataset_key="synthetic",
            steps=12,
            budget=1.0,
            optimizer=opt,
        )

    return SimpleNamespace(studies=[plan("t/x/adamw", "adamw"), plan("t/x/signum", "signum")])


def _event(study, phase, slots_done, seconds, worker=0, done=1, skipped=False, status="ok"):
    return SimpleNamespace(
        kind="run",
        study=study,
        phase=phase,
        slots_done=slots_done,
        seconds=seconds,
        worker=worker,
        done=done,
        total=10,
        skipped=skipped,
        status=status,
    )


def test_tally_from_progress_events():
    tally = eta.Tally.empty(_fake_sweep())
    tally.update(_event("t/x/adamw", "tune", 1, 2.0))
    tally.update(_event("t/x/adamw", "tune", 2, 4.0))
    tally.update(_event("t/x/adamw", "tune", 3, 0.01, skipped=True))  # resumed: counted done, not measured
    tally.update(_event("t/x/adamw", "eval", 1, 9.0, status="failed"))  # a raise: not a run's price
    assert tally.left() == {"t/x/adamw": 1, "t/x/signum": 5}
    assert tally.estimate(1) is None  # two measured runs
    tally.update(_event("t/x/adamw", "eval", 1, 3.0))
    e = tally.estimate(2)
    # adamw: 1 left x 3 s; signum (unmeasured, same task/size/dataset/steps): 5 x 3 s; over 2 workers.
    assert e is not None and e.seconds == pytest.approx(9.0) and e.guessed == 1


def test_progress_lines_show_the_time_left_once_runs_are_measured(capsys):
    from harness.sweep.cli import Progress

    progress = Progress("plain", 2, tally=eta.Tally.empty(_fake_sweep()))
    for k in range(1, 5):
        progress(
            SimpleNamespace(
                **vars(_event("t/x/adamw", "tune", k, 2.0, done=k)),
                trial=k,
                value=0.5,
                best=0.5,
                metric="accuracy",
                slots_total=3,
                detail="",
                slot=k,
            )
        )
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and "left" not in lines[0] and "left" not in lines[1]
    # Third measured run: 10 - 3 runs left... per study: adamw 2 left x 2 s, signum 5 x 2 s (guessed); one
    # worker has reported, so one worker shares them: 14 s.
    assert "3/10" in lines[2] and "~14s left (rough)]" in lines[2]
    assert "~12s left (rough)]" in lines[3]


# ---------------------------------------------------------------------------------------------
# optbench status
# ---------------------------------------------------------------------------------------------


def test_status_of_a_finished_sweep(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=2, eval_seeds=1)
    out = tmp_path / "out"
    assert main(["sweep", str(sweep_file), "--out", str(out), "--progress", "none"]) == 0
    launch = json.loads((out / sweep_status.LAUNCH_FILE).read_text())
    assert launch["launcher"] == "local" and launch["workers"] == 1
    assert launch["storage"] == str((out / "optuna.journal").resolve())
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "planned:   3 runs" in text and "recorded:  3 (2 tune, 1 eval; 0 diverged, 0 failed); complete" in text
    assert "running:   0" in text and "time left: none: every planned run is recorded" in text
    assert main(["status", str(out), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["planned"], data["recorded"], data["complete"], data["settled"]) == (3, 3, True, 3)
    assert data["measured_runs"] == 3 and data["slurm"] is None and data["time_left"] == "done"


def test_status_of_a_running_sweep_names_the_worker_and_its_node(tmp_path, capsys):
    """A trial held by a worker (as a worker marks it) shows with its worker id, node and pid; with
    nothing measured there is no estimate yet."""
    from harness.sweep.ledger import Ledger
    from harness.sweep.slots import OWNER, SLOT

    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=2, eval_seeds=1)
    sweep, out = sweep_schema.load(sweep_file), tmp_path / "out"
    url, info = sweep_local.prepare(sweep, out, None)
    study = Ledger(sweep, url, info=info).study(sweep.studies[0], "tune")
    study.enqueue_trial({}, user_attrs={SLOT: 0})
    trial = study.ask()
    study._storage.set_trial_system_attr(
        trial._trial_id, OWNER, {"number": trial.number, "host": "node-7", "pid": 4242, "worker": 3}
    )
    assert main(["status", str(out)]) == 0
    text = capsys.readouterr().out
    assert "recorded:  0 (0 tune, 0 eval" in text and "running:   1" in text
    assert f"worker 3 on node-7 (pid 4242): {sweep.studies[0].study} tune slot 0" in text
    assert f"time left: unknown until {eta.MIN_MEASURED} runs are measured (0 so far)" in text


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda p: p / "nowhere", "does not exist"),
        (lambda p: p, "has no plan.json and sweep.yaml"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a folder"),
    ],
)
def test_status_of_something_else_exits_2(tmp_path, capsys, make, why):
    target = make(tmp_path)
    assert main(["status", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"optbench status: error: {target} is not a sweep's results folder: it {why}" in err
    assert "give the --out folder of a sweep" in err


def test_launch_record_keeps_no_database_password(tmp_path):
    assert sweep_status.without_password("postgresql://u:s3cret@db:5432/x") == "postgresql://u@db:5432/x"
    assert sweep_status.without_password("postgresql://u@db/x") == "postgresql://u@db/x"
    sweep_status.record_launch(
        tmp_path,
        "slurm",
        "postgresql://u:s3cret@db/x",
        2,
        slurm_launch={"job_ids": ["1_0", "1_1"], "worker_ids": [0, 1], "folder": "/f"},
    )
    sweep_status.record_launch(
        tmp_path,
        "slurm",
        "postgresql://u:s3cret@db/x",
        1,
        slurm_launch={"job_ids": ["2"], "worker_ids": [2], "folder": "/f"},
    )
    text = (tmp_path / sweep_status.LAUNCH_FILE).read_text()
    assert "s3cret" not in text
    data = json.loads(text)
    assert data["storage"] == "postgresql://u@db/x" and [e["job_ids"] for e in data["slurm"]] == [["1_0", "1_1"], ["2"]]


# ---------------------------------------------------------------------------------------------
# Launcher flags: refused before anything is written
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--partition", "gpu"], "--partition only apply to --launcher slurm (choices: local, slurm)"),
        (["--gpus-per-worker", "1", "--sbatch-option=--exclusive"], "--gpus-per-worker, --sbatch-option only apply"),
        (["--launcher", "slurm", "--time", "0"], "time_min must be an integer >= 1, got 0"),
        (["--launcher", "slurm", "--mem-gb", "-1"], "mem_gb must be a number > 0"),
        (["--launcher", "slurm", "--sbatch-option=--array=0-3"], "--array is set by the launcher"),
        (["--launcher", "slurm", "--sbatch-option=--mem=4G"], "--mem is set by the resource 'mem_gb'"),
    ],
)
def test_bad_launcher_flags_exit_2_and_write_nothing(tmp_path, capsys, flags, message):
    sweep_file = write_sweep(tmp_path / "s.yaml")
    out = tmp_path / "out"
    assert main(["suite", str(sweep_file), "--out", str(out), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_slurm_launcher_without_slurm_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    sweep_file = write_sweep(tmp_path / "s.yaml")
    out = tmp_path / "out"
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    assert main(["sweep", str(sweep_file), "--out", str(out), "--launcher", "slurm", "--workers", "2"]) == 2
    assert "needs SLURM's `sbatch` on PATH" in capsys.readouterr().err
    assert not out.exists()
