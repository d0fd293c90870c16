"""``optbench suite --launcher slurm`` end to end, on a real SLURM and a real PostgreSQL.

The SLURM is the single-node cluster of ``cluster/slurm/start-local.sh`` (``.ci/run`` starts it and
sets ``OPTBENCH_REQUIRE_SLURM=1``); the PostgreSQL server is started by the test on loopback, as
``tests/test_sweep_postgres.py`` does (``.ci/run`` installs the binaries). Without ``sbatch``,
submitit or PostgreSQL's binaries the tests are skipped, saying which is missing, unless
``OPTBENCH_REQUIRE_SLURM`` is set: then they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import records, storage_trials, write_sweep
from test_sweep_postgres import _pg_bindir
from test_sweep_postgres import postgres_url as _postgres_url  # noqa: F401 -- the module-scoped server

from harness.sweep import schema as sweep_schema
from harness.sweep import slots as sweep_slots

REQUIRED = bool(os.environ.get("OPTBENCH_REQUIRE_SLURM"))


def _missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"OPTBENCH_REQUIRE_SLURM is set but {what}")
    pytest.skip(what)


@pytest.fixture
def cluster(request):
    """(PostgreSQL URL) once SLURM answers and a server is up; skipped (or failed) otherwise."""
    if shutil.which("sbatch") is None:
        _missing("no SLURM here (sbatch); sudo cluster/slurm/start-local.sh starts one")
    try:
        import submitit  # noqa: F401
    except ImportError:
        _missing("submitit is not installed (pip install 'optbench[slurm]')")
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0 or not proc.stdout.strip():
        _missing(f"SLURM does not answer (sinfo: {proc.stderr.strip()}); sudo cluster/slurm/start-local.sh")
    if _pg_bindir() is None:
        _missing("no PostgreSQL binaries (initdb, pg_ctl); .ci/run installs the Debian postgresql package")
    return request.getfixturevalue("_postgres_url")


def _suite(sweep_file: Path, out: Path, url: str, workers: int = 2, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    argv = [
        sys.executable,
        "-m",
        "harness.cli",
        "suite",
        str(sweep_file),
        "--out",
        str(out),
        "--workers",
        str(workers),
        *extra,
        "--launcher",
        "slurm",
        "--storage",
        url,
        "--mem-gb",
        "0.5",
        "--time",
        "10",
        "--slurm-poll",
        "1",
        "--progress",
        "plain",
    ]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(
                f"the suite exited ({proc.returncode}) while waiting for {what}:\n"
                f"{proc.stdout.read() if proc.stdout else ''}"
            )
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _trials(url: str, sweep) -> dict[str, list]:
    """study name -> its trials, for every study the storage has so far."""
    out = {}
    for plan in sweep.studies:
        for name in (plan.study, plan.eval_study):
            try:
                out[name] = storage_trials(url, name)
            except KeyError:  # an eval study not created yet
                pass
    return out


def _held_by(url: str, sweep, worker: int):
    """(study, trial) of a RUNNING trial whose owner is ``worker``, or None."""
    from optuna.trial import TrialState

    for name, trials in _trials(url, sweep).items():
        for t in trials:
            if t.state == TrialState.RUNNING and (t.system_attrs.get(sweep_slots.OWNER) or {}).get("worker") == worker:
                return name, t
    return None


def _submitted(out: Path, proc: subprocess.Popen, what: str) -> list[str]:
    """The SLURM job ids the suite wrote to ``<out>/launch.json``, once it has."""
    path = out / "launch.json"
    launch = _wait(lambda: json.loads(path.read_text()) if path.exists() else None, 120, what, proc)
    return launch["slurm"][0]["job_ids"]


def _released_and_run_again(url: str, study: str, held):
    """Assert that trial ``held`` of ``study`` was given back and its slot completed once by a later
    trial; return (slot, that trial)."""
    trials = storage_trials(url, study)
    assert trials[held.number].system_attrs.get(sweep_slots.RELEASED) == held.number
    slot = held.user_attrs.get(sweep_slots.SLOT)
    again = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get(sweep_slots.SLOT) == slot]
    assert len(again) == 1 and again[0].number > held.number
    return slot, again[0]


def _check_records(out: Path, sweep) -> dict:
    df = records(out)
    keys = [(r.study, r.phase, r.trial if r.phase == "tune" else r.seed) for r in df.itertuples()]
    files = sorted(p.name for p in (out / "runs").iterdir())
    return {
        "planned": sweep.planned_runs,
        "recorded": len(df),
        "files": len(files),
        "duplicate_run_ids": len(df) - df["run_id"].nunique(),
        "duplicate_slots": len(keys) - len(set(keys)),
    }


@pytest.mark.slow  # 74 s on the shared 2-core machine: three processes importing torch at once
def test_slurm_suite_survives_a_scancelled_worker(tmp_path, cluster):
    """Two SLURM workers on PostgreSQL; worker 1 is scancelled in the middle of a run. Its trial is
    released (SIGTERM) and run by worker 0; every planned run is recorded once and the leaderboard
    is written by the submitting process."""
    url = cluster
    # 3000 steps (about 5 s a run): the scancel must land while worker 1 is inside its run. At 300 steps
    # (0.5 s) the run could finish before SIGTERM arrived, and nothing was released (a CI failure).
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        suite="e2e",
        optimizers=["adamw"],
        trials=3,
        eval_seeds=2,
        tasks=[{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 3000}],
    )
    sweep, out = sweep_schema.load(sweep_file), tmp_path / "out"
    t0 = time.monotonic()
    proc = _suite(sweep_file, out, url)
    try:
        job_ids = _submitted(out, proc, "the workers to be submitted")
        launch = json.loads((out / "launch.json").read_text())
        assert launch["slurm"][0]["worker_ids"] == [0, 1] and len(job_ids) == 2
        held = _wait(lambda: _held_by(url, sweep, 1), 120, "worker 1 to hold a run", proc)
        subprocess.run(["scancel", job_ids[1]], check=True, timeout=30)
        cancelled_at = time.monotonic() - t0
        text, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            subprocess.run(["scancel", *{j.split("_")[0] for j in job_ids}], timeout=30)
    wall = time.monotonic() - t0
    print(text)
    assert proc.returncode == 0, text
    assert f"submitted 2 SLURM worker(s): {job_ids[0]}, {job_ids[1]}" in text
    # The follower polls squeue every few seconds: a cancelled task is seen as CANCELLED, or only as
    # COMPLETING when its worker stops within one poll (it checkpoints its step and exits on SIGTERM).
    assert re.search(rf"worker {re.escape(job_ids[1])} (CANCELLED|COMPLETING)", text), text
    assert f"{sweep.planned_runs}/{sweep.planned_runs} runs recorded" in text
    assert (out / "leaderboard.md").is_file() and "adamw" in (out / "leaderboard.md").read_text()

    counts = _check_records(out, sweep)
    assert counts == {"planned": 5, "recorded": 5, "files": 5, "duplicate_run_ids": 0, "duplicate_slots": 0}
    # The cancel reached the run: worker 1's trial was released, and its slot was run again by worker 0.
    study, held = held
    slot, again = _released_and_run_again(url, study, held)
    assert (again.system_attrs.get(sweep_slots.OWNER) or {}).get("worker") == 0
    err = (out / "slurm" / job_ids[1] / f"{job_ids[1]}_0_log.err").read_text()
    assert "SIGTERM" in err
    print(
        f"E2E: jobs {job_ids}; scancel {job_ids[1]} at {cancelled_at:.1f}s (it held {study} slot {slot}); "
        f"planned {counts['planned']}, recorded {counts['recorded']}, record files {counts['files']}, "
        f"duplicate run_ids {counts['duplicate_run_ids']}, duplicate slots {counts['duplicate_slots']}; "
        f"wall {wall:.1f}s"
    )


@pytest.mark.slow
def test_ctrl_c_leaves_the_workers_running_and_the_same_command_follows_them(tmp_path, cluster):
    """Ctrl-C on the submitting process: exit 130, the jobs keep running, the lines say how to follow
    (optbench status) and cancel (scancel); ``optbench status`` sees them; the same command run again
    submits nothing, follows them to the end and writes the leaderboard."""
    url = cluster
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        suite="ctrlc",
        optimizers=["adamw"],
        trials=3,
        eval_seeds=2,
        tasks=[{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 1000}],
    )
    out = tmp_path / "out"
    proc = _suite(sweep_file, out, url)
    job_ids: list[str] = []
    try:
        job_ids = _submitted(out, proc, "the workers to be submitted")
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, text
        array = job_ids[0].split("_")[0]
        assert f"optbench status {out}" in text and f"scancel {array}" in text and "keep running" in text
        squeue = subprocess.run(
            ["squeue", "-h", "-j", array, "-o", "%i %T"], capture_output=True, text=True, timeout=30
        ).stdout
        assert squeue.strip(), "the workers should still be queued or running"

        status = subprocess.run(
            [sys.executable, "-m", "harness.cli", "status", str(out), "--json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stderr
        seen = json.loads(status.stdout)
        assert seen["planned"] == 5 and seen["launcher"] == "slurm"
        assert {t["job_id"] for t in seen["slurm"]} == set(job_ids)

        again = _suite(sweep_file, out, url)
        text2, _ = again.communicate(timeout=300)
        print(text, text2, sep="\n")
        assert again.returncode == 0, text2
        assert "still alive" in text2 and "submitting none" in text2 and "submitted" not in text2
        assert "5/5 runs recorded" in text2 and (out / "leaderboard.md").is_file()
        assert len(json.loads((out / "launch.json").read_text())["slurm"]) == 1
        assert len(records(out)) == 5 and records(out)["run_id"].is_unique
    finally:
        if job_ids:
            subprocess.run(["scancel", job_ids[0].split("_")[0]], timeout=30)


@pytest.mark.slow
def test_a_preempted_worker_is_requeued_and_resumes_its_run_from_the_checkpoint(tmp_path, cluster):
    """A real optbench worker, preempted in the middle of a run by a job of the higher-priority
    partition ``urgent``: it checkpoints the step it is at and gives the trial back (SIGTERM), the
    job requeues itself (USR2), and after the urgent job the requeued worker claims the same slot and
    resumes the run from that checkpoint. Every planned run is recorded once."""
    from harness.sweep import slurm as ls

    url = cluster
    if "urgent" not in ls.partitions():
        pytest.skip("no 'urgent' partition (the local cluster of cluster/slurm/start-local.sh has one)")
    cpus = subprocess.run(
        ["sinfo", "-h", "-p", "debug", "-o", "%c"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()[0]
    # 12,000 steps (about 20 s a run): the preemption lands well inside the tune run
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        suite="preempt",
        optimizers=["adamw"],
        trials=1,
        eval_seeds=1,
        tasks=[{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 12000}],
    )
    sweep, out = sweep_schema.load(sweep_file), tmp_path / "out"
    proc = _suite(sweep_file, out, url, workers=1, extra=("--cpus-per-worker", cpus))
    job_ids: list[str] = []
    try:
        job_ids = _submitted(out, proc, "the worker to be submitted")
        study, held = _wait(lambda: _held_by(url, sweep, 0), 120, "the worker to hold a run", proc)
        time.sleep(4)  # into the training steps
        subprocess.run(
            [
                "sbatch",
                "-p",
                "urgent",
                "-c",
                cpus,
                "--mem=100M",
                "-o",
                str(tmp_path / "urgent.out"),
                "--wrap",
                "sleep 2; echo urgent ran",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        text, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if job_ids:
            subprocess.run(["scancel", *{j.split("_")[0] for j in job_ids}], timeout=30)
    print(text)
    assert proc.returncode == 0, text
    assert f"{sweep.planned_runs}/{sweep.planned_runs} runs recorded" in text
    assert (tmp_path / "urgent.out").read_text() == "urgent ran\n"
    counts = _check_records(out, sweep)
    assert counts == {"planned": 2, "recorded": 2, "files": 2, "duplicate_run_ids": 0, "duplicate_slots": 0}

    # The preempted trial was given back, and its slot was run again, from the checkpoint.
    slot, _ = _released_and_run_again(url, study, held)
    df = records(out)
    row = df[(df["study"] == study) & (df["phase"] == held.user_attrs.get("phase", "tune"))].iloc[0]
    assert 0 < int(row["resumed_at_step"]) < int(row["steps"]) and int(row["steps_done"]) == int(row["steps"])
    err = (out / "slurm" / job_ids[0] / f"{job_ids[0]}_0_log.err").read_text()
    assert "requeue signal; command stopped" in err, err[-3000:]
    print(
        f"PREEMPT: job {job_ids[0]}; {study} slot {slot} preempted and resumed at step "
        f"{int(row['resumed_at_step'])} of {int(row['steps'])}; recorded {counts['recorded']}/{counts['planned']}"
    )
