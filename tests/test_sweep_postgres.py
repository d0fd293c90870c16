"""The cluster path on a real PostgreSQL server: a worker killed with SIGKILL in the middle of a
trial has that trial re-run by another worker, found through Optuna's RDB heartbeat.

The server is started by the test on loopback (initdb into a fresh folder, pg_ctl on a free port,
trust auth). PostgreSQL refuses to run as root, so as root its binaries run as the ``postgres``
user via ``runuser``. Skipped only when no PostgreSQL binary exists (``.ci/run`` installs one).
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_sweep import records, run_inprocess, start_worker, storage_trials, wait_for, write_sweep

from harness.sweep import liveness as sweep_liveness
from harness.sweep import local as sweep_local
from harness.sweep import schema as sweep_schema
from harness.sweep import slots as sweep_slots
from harness.sweep import storage as sweep_storage


def _pg_bindir() -> Path | None:
    candidates = []
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
        candidates.append(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    candidates += [str(Path(p).parent) for p in (shutil.which("initdb"),) if p]
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("no PostgreSQL binaries (initdb, pg_ctl) found; .ci/run installs the Debian postgresql package")
    pytest.importorskip("psycopg2")
    as_root = os.geteuid() == 0
    # A folder the server user owns, outside pytest's root-only (0700) tmp tree.
    base = Path(tempfile.mkdtemp(prefix="optbench-pg-"))
    prefix: list[str] = []
    if as_root:
        shutil.chown(base, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    port = _free_port()

    def pg(*args: str) -> None:
        proc = subprocess.run(prefix + list(args), capture_output=True, text=True, timeout=120, cwd=str(base))
        assert proc.returncode == 0, f"{args[0]} failed: {proc.stdout}\n{proc.stderr}\n" + (
            log.read_text() if log.exists() else ""
        )

    try:
        pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        pg(
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-F -p {port} -k {base} -c listen_addresses=127.0.0.1",
            "start",
        )
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=60,
            )
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow  # real SLURM/PostgreSQL processes: CI runs it with the slow tests (make test-slow)
def test_postgres_sigkill_mid_trial_is_rerun_by_another_worker(tmp_path, postgres_url, monkeypatch):
    from optuna.trial import TrialState

    sweep_file = write_sweep(tmp_path / "s.yaml")  # heartbeat every 1 s, grace 3 s
    sweep = sweep_schema.load(sweep_file)
    out = tmp_path / "out"
    out.mkdir()
    stalled = tmp_path / "stalled"
    proc = start_worker(tmp_path, sweep_file, postgres_url, out, 0, STALL_AFTER=2, STALLED=stalled)
    wait_for(stalled.exists, 120, "the worker to stall inside its third run", [proc])
    proc.send_signal(signal.SIGKILL)
    proc.communicate()  # reap it and close its pipe
    first = sweep.studies[0].study
    orphan = [t for t in storage_trials(postgres_url, first) if t.state == TrialState.RUNNING]
    assert len(orphan) == 1, "the killed worker should leave its trial RUNNING"
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    assert len(kept) == 2

    # The replacement worker runs "on another machine": it cannot see the dead process, so only the
    # heartbeat (Optuna's RDB heartbeat table, grace 3 s) tells it the trial is orphaned.
    monkeypatch.setattr(sweep_liveness, "machine", lambda: ("another-host", "another-boot"))
    _, _, worker, _ = run_inprocess(sweep_file, out, worker_id=1, storage=postgres_url)
    df = records(out)
    assert len(df) == sweep.planned_runs and df["run_id"].is_unique
    assert worker.runs == sweep.planned_runs - 2
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir() if p.name in kept} == kept
    trials = storage_trials(postgres_url, first)
    dead = next(t for t in trials if t.number == orphan[0].number)
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert dead.state == TrialState.FAIL
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE and retry[0].params == dead.params
    assert stalled.read_text() in set(df["run_id"])
    for plan in sweep.studies:
        done = [t for t in storage_trials(postgres_url, plan.study) if t.state == TrialState.COMPLETE]
        assert sorted(t.user_attrs[sweep_slots.SLOT] for t in done) == list(range(plan.trials))


def test_unreachable_postgres_is_a_clean_user_error(tmp_path):
    from harness.errors import UserError

    sweep_file = write_sweep(tmp_path / "s.yaml")
    out = tmp_path / "out"
    with pytest.raises(UserError, match="cannot open storage postgresql://u:\\*\\*\\*@127.0.0.1"):
        sweep_local.prepare(sweep_schema.load(sweep_file), out, f"postgresql://u:secret@127.0.0.1:{_free_port()}/x")
    assert not out.exists()


def test_postgres_lost_record_and_raising_run_heal(tmp_path, postgres_url, monkeypatch):
    """Issue 11 on the RDB storage: a run that raises once is retried with the same configuration
    (its failure not a death), and a record deleted after the sweep is queued again and recreated
    with the same run_id (the lost-record mark is a study user attribute, as on a journal)."""
    from harness.run import loop

    real_run, raised = loop.run, []

    def run(spec, **kwargs):
        if spec.phase == "tune" and spec.trial == 1 and not raised:
            raised.append(spec.run_id)
            raise RuntimeError("transient")
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    sweep_file = write_sweep(tmp_path / "s.yaml", suite="pg-heal", optimizers=["adamw"], trials=2, eval_seeds=1)
    out = tmp_path / "out"
    sweep, _, _, _ = run_inprocess(sweep_file, out, storage=postgres_url)
    df = records(out)
    assert len(df) == sweep.planned_runs == 3 and raised[0] in set(df["run_id"])
    assert (df["status"] == "ok").all()
    trials = storage_trials(postgres_url, sweep.studies[0].study)
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE"]
    assert trials[1].user_attrs[sweep_slots.ERROR]["detail"] == "RuntimeError: transient"
    assert trials[2].params == trials[1].params
    gone = df[df["phase"] == "eval"]["run_id"].iloc[0]
    (out / "runs" / f"{gone}.parquet").unlink()
    with pytest.warns(sweep_storage.SweepWarning, match="is missing; the run is queued again"):
        _, _, worker, _ = run_inprocess(sweep_file, out, storage=postgres_url)
    assert worker.runs == 1 and set(records(out)["run_id"]) == set(df["run_id"])
