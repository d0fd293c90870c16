"""The SLURM launcher's core (``harness.sweep.slurm``, ``harness.sweep.slurm_job``).

Validation and the job callable need no SLURM. The rest submits to a real SLURM: the single-node
cluster of ``cluster/slurm/start-local.sh`` (``.ci/run`` starts it). Those tests are skipped only
when ``sbatch`` is absent and ``OPTBENCH_REQUIRE_SLURM`` is unset; with it set (as in CI) a
missing SLURM fails them.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness.errors import UserError
from harness.sweep import slurm as ls

# ---------------------------------------------------------------------------------------------
# Resources: validation (no SLURM)
# ---------------------------------------------------------------------------------------------


def test_resources_become_submitit_parameters():
    r = ls.SlurmResources(
        partition="gpu",
        account="lab-1",
        qos="high",
        time_min=120,
        cpus_per_worker=8,
        mem_gb=1.5,
        gpus_per_worker=2,
        extra_sbatch=["--constraint=a100", "--exclusive"],
    )
    assert r.extra_sbatch == ("--constraint=a100", "--exclusive")  # a list becomes a tuple: hashable
    assert hash(r) == hash(dataclasses.replace(r))
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.time_min = 5  # type: ignore[misc]
    p = r.executor_parameters(array_parallelism=4)
    assert p == {
        "job_name": "optbench-worker",
        "time": 120,
        "cpus_per_task": 8,
        "nodes": 1,
        "ntasks_per_node": 1,
        "signal_delay_s": 90,
        "array_parallelism": 4,
        "partition": "gpu",
        "account": "lab-1",
        "qos": "high",
        "mem": "1536M",
        "gpus_per_node": 2,
        "additional_parameters": {"constraint": "a100", "exclusive": True},
    }
    bare = ls.SlurmResources().executor_parameters(array_parallelism=1)
    assert not {"partition", "account", "qos", "mem", "gpus_per_node"} & set(bare)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"time_min": 0}, "time_min must be an integer >= 1, got 0"),
        ({"time_min": 1.5}, "time_min must be an integer"),
        ({"cpus_per_worker": True}, "cpus_per_worker must be an integer >= 1, got True"),
        ({"gpus_per_worker": -1}, "gpus_per_worker must be an integer >= 0"),
        ({"nodes": 0}, "nodes must be an integer >= 1"),
        ({"max_requeues": -1}, "max_requeues must be an integer >= 0"),
        ({"mem_gb": 0}, "mem_gb must be a number > 0"),
        ({"mem_gb": "4G"}, "mem_gb must be a number > 0"),
        ({"mem_gb": float("nan")}, "mem_gb must be a number > 0"),
        ({"partition": "a b"}, "partition must be a name"),
        ({"account": ""}, "account must be a name"),
        ({"job_name": None}, "job_name must be a name"),
        ({"time_min": 1, "signal_delay_s": 60}, r"signal_delay_s \(60 s\) must be shorter than the time limit"),
        ({"extra_sbatch": "--exclusive"}, "must be a list of options"),
        ({"extra_sbatch": ["-p debug"]}, "not one sbatch option in the long form"),
        ({"extra_sbatch": ["--constraint a100"]}, "not one sbatch option in the long form"),
        ({"extra_sbatch": [3]}, "not one sbatch option"),
        ({"extra_sbatch": ["--partition=x"]}, "--partition is set by the resource 'partition'"),
        ({"extra_sbatch": ["--mem=4G"]}, "--mem is set by the resource 'mem_gb'"),
        ({"extra_sbatch": ["--array=0-3"]}, "--array is set by the launcher"),
        ({"extra_sbatch": ["--signal=USR1@60"]}, "--signal is set by the launcher"),
        ({"extra_sbatch": ["--constraint=a", "--constraint=b"]}, "--constraint is given twice"),
    ],
)
def test_bad_resources_are_user_errors(changes, message):
    with pytest.raises(UserError, match=message):
        ls.SlurmResources(**changes)


def test_resources_from_a_sweep_mapping():
    r = ls.SlurmResources.from_mapping({"partition": "debug", "time_min": 30, "extra_sbatch": ["--exclusive"]})
    assert (r.partition, r.time_min, r.extra_sbatch) == ("debug", 30, ("--exclusive",))
    with pytest.raises(UserError, match=r"slurm: unknown key\(s\) 'gpus', 'time'; known: partition, account"):
        ls.SlurmResources.from_mapping({"time": 30, "gpus": 1})
    with pytest.raises(UserError, match="must be a mapping"):
        ls.SlurmResources.from_mapping(["debug"])  # type: ignore[arg-type]


def test_worker_command_is_absolute(tmp_path, monkeypatch):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("suite: x\n")
    monkeypatch.chdir(tmp_path)
    argv = ls.worker_command("s.yaml", "opt.journal", ["--out", "res"])
    assert argv == [
        sys.executable,
        "-m",
        "harness.cli",
        "worker",
        str(sweep),
        "--storage",
        str(tmp_path / "opt.journal"),
        "--out",
        "res",
    ]
    url = "postgresql://u:p@db/optbench"
    assert ls.worker_command(sweep, url)[-2:] == ["--storage", url]


def test_submit_workers_refuses_bad_input_before_writing(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("suite: x\n")
    folder = tmp_path / "jobs"
    r = ls.SlurmResources()
    for args, message in (
        ((sweep, "x.journal", 0), "integer >= 1, got 0"),
        ((sweep, "x.journal", True), "integer >= 1, got True"),
        ((tmp_path / "nope.yaml", "x.journal", 2), "sweep file .*nope.yaml not found"),
        ((sweep, "", 2), "need a storage every node can reach"),
    ):
        with pytest.raises(UserError, match=message):
            ls.submit_workers(*args, r, folder)
    assert not folder.exists()


def test_missing_submitit_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit -> ImportError
    with pytest.raises(UserError, match=r"pip install 'optbench\[slurm\]'"):
        ls.submit_commands([["true"]], ls.SlurmResources(), tmp_path / "jobs")
    assert not (tmp_path / "jobs").exists()


def test_missing_slurm_commands_are_a_user_error(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, ... here
    with pytest.raises(UserError, match="needs SLURM's `sbatch` on PATH.*start-local.sh"):
        ls.submit_commands([["true"]], ls.SlurmResources(), tmp_path / "jobs")
    with pytest.raises(UserError, match="`scancel`"):
        ls.cancel(["12_0"])
    assert not (tmp_path / "jobs").exists()


def test_squeue_ranges_and_follow_instructions(tmp_path):
    assert ls._expand("12_[0-2,5%2]") == ["12_0", "12_1", "12_2", "12_5"]
    assert ls._expand("12_3") == ["12_3"] and ls._expand("40") == ["40"]
    assert ls._array_ids(["12_0", "12_1", "13"]) == ["12", "13"]
    text = ls.follow_instructions(["12_0", "12_1"], tmp_path)
    assert "SLURM job array 12 (2 worker(s))" in text
    assert "squeue -j 12 " in text and "scancel 12\n" in text and "sacct -j 12 " in text
    assert str(tmp_path / "12_0") in text


# ---------------------------------------------------------------------------------------------
# The job callable, run here (no SLURM)
# ---------------------------------------------------------------------------------------------


def test_command_job_runs_fails_and_pickles_without_its_process(tmp_path):
    pytest.importorskip("submitit")
    from harness.sweep.slurm_job import CommandFailed, CommandJob

    mark = tmp_path / "ran"
    ok = CommandJob([sys.executable, "-c", f"open({str(mark)!r}, 'w').write('yes')"], env={"X": "1"})
    assert ok() == 0 and mark.read_text() == "yes"
    assert pickle.loads(pickle.dumps(ok)).argv == ok.argv  # no Popen in the pickle
    with pytest.raises(CommandFailed, match="exited with code 3"):
        CommandJob([sys.executable, "-c", "raise SystemExit(3)"])()


def test_checkpoint_stops_the_command_and_resubmits_it(tmp_path):
    """What submitit's requeue handler calls: the child gets SIGTERM (optbench worker: release the
    trial), and the same callable comes back to be pickled for the requeued job."""
    pytest.importorskip("submitit")
    from harness.sweep.slurm_job import CommandFailed, CommandJob

    started, stopped = tmp_path / "started", tmp_path / "stopped"
    script = textwrap.dedent(f"""
        import signal, sys, time
        def stop(*_):
            open({str(stopped)!r}, "w").write("sigterm")
            sys.exit(130)
        signal.signal(signal.SIGTERM, stop)
        open({str(started)!r}, "w").write("x")
        time.sleep(60)
    """)
    job = CommandJob([sys.executable, "-c", script], stop_grace_s=20)
    errors: list[BaseException] = []

    def run():
        try:
            job()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 30
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists()
    delayed = job.checkpoint()
    thread.join(30)
    assert stopped.read_text() == "sigterm"
    assert len(errors) == 1 and isinstance(errors[0], CommandFailed) and "code 130" in str(errors[0])
    assert delayed.function is job
    again = pickle.loads(pickle.dumps(delayed.function))
    assert again.argv == job.argv and again._proc is None


# ---------------------------------------------------------------------------------------------
# A real SLURM
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def slurm():
    required = bool(os.environ.get("OPTBENCH_REQUIRE_SLURM"))
    if shutil.which("sbatch") is None:
        if required:
            pytest.fail("OPTBENCH_REQUIRE_SLURM is set but SLURM's sbatch is not on PATH")
        pytest.skip("no SLURM here (sbatch); sudo cluster/slurm/start-local.sh starts one")
    try:
        import submitit  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("OPTBENCH_REQUIRE_SLURM is set but submitit is not installed (the slurm extra)")
        pytest.skip("submitit not installed (pip install 'optbench[slurm]')")
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.strip(), f"SLURM does not answer: {proc.stderr}"
    return ls.SlurmResources(time_min=10, signal_delay_s=30, mem_gb=0.5)


def test_what_the_cluster_cannot_give_is_refused_before_anything_runs(tmp_path, slurm):
    folder = tmp_path / "jobs"
    known = ls.partitions()
    assert known  # sinfo answers
    with pytest.raises(UserError, match=f"unknown SLURM partition 'no-such-partition'; known: {known[0]}"):
        ls.submit_commands([["true"]], dataclasses.replace(slurm, partition="no-such-partition"), folder)
    with pytest.raises(UserError, match="sbatch refused the job array: .*error"):
        ls.submit_commands([["true"]] * 2, dataclasses.replace(slurm, cpus_per_worker=100_000), folder)
    assert not folder.exists()
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="sbatch refused"):
        ls.submit_commands([["true"]], dataclasses.replace(slurm, mem_gb=1_000_000), folder)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# Each task: note its start, note a SIGTERM (as optbench worker releases its trial), wait for GO,
# then write its result. SLURM_RESTART_COUNT tells a requeued start from the first.
TASK = textwrap.dedent("""
    import os, signal, sys, time
    base, go = sys.argv[1], sys.argv[2]
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "0")
    def log(text):
        with open(f"{base}.{task}.log", "a") as f:
            f.write(text + "\\n")
    def on_term(*_):
        log("sigterm")
        sys.exit(130)
    signal.signal(signal.SIGTERM, on_term)
    log(f"start restart={os.environ.get('SLURM_RESTART_COUNT', '0')} job={os.environ['SLURM_JOB_ID']}")
    deadline = time.time() + 120
    while not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.1)
    log(f"done {int(task) ** 2 + 7}")
""")


def _log(base: Path, task: int) -> str:
    path = Path(f"{base}.{task}.log")
    return path.read_text() if path.exists() else ""


@pytest.mark.slow  # real SLURM/PostgreSQL processes: CI runs it with the slow tests (make test-slow)
def test_array_of_two_one_scancelled_the_other_finishes(tmp_path, slurm):
    base, go = tmp_path / "task", tmp_path / "go"
    t0 = time.monotonic()
    ids = ls.submit_commands([[sys.executable, "-c", TASK, str(base), str(go)]] * 2, slurm, tmp_path / "jobs")
    array = ids[0].split("_")[0]
    assert ids == [f"{array}_0", f"{array}_1"]
    wait_until(lambda: "start" in _log(base, 0) and "start" in _log(base, 1), 60, "both tasks to start")
    started = time.monotonic() - t0
    states = ls.job_states(ids)
    assert {s.state for s in states.values()} == {"RUNNING"} and all(s.node for s in states.values())

    ls.cancel([ids[1]])
    wait_until(lambda: "sigterm" in _log(base, 1), 30, "task 1's command to get the cancel's SIGTERM")
    go.write_text("go")
    wait_until(
        lambda: [s.state for s in ls.job_states(ids).values()] == ["COMPLETED", "CANCELLED"],
        60,
        "task 0 to complete and task 1 to end cancelled",
    )
    first, second = _log(base, 0).splitlines(), _log(base, 1).splitlines()
    assert len(first) == 2 and first[0].startswith("start restart=0 job=") and first[1] == "done 7"
    # The cancel reached the command itself (optbench worker releases its trial on it); no result.
    assert len(second) == 2 and second[0].startswith("start restart=0 job=") and second[1] == "sigterm"
    out = (tmp_path / "jobs" / ids[0] / f"{ids[0]}_0_log.err").read_text()
    assert "optbench slurm job: running" in out
    print(f"array of 2 started in {started:.1f}s, finished in {time.monotonic() - t0:.1f}s")


@pytest.mark.slow  # real SLURM/PostgreSQL processes: CI runs it with the slow tests (make test-slow)
def test_preempted_task_is_requeued_and_finishes(tmp_path, slurm):
    """submitit's preemption as ``job._interrupt()`` sends it: SIGTERM to the job's processes, then
    its USR2. The command stops on the SIGTERM; the job lingers, gets the USR2, checkpoints and
    requeues itself (``scontrol requeue``); SLURM starts it again (SLURM_RESTART_COUNT=1) after the
    cluster's cred_expire, and it finishes."""
    base, go = tmp_path / "task", tmp_path / "go"
    (job_id,) = ls.submit_commands([[sys.executable, "-c", TASK, str(base), str(go)]], slurm, tmp_path / "jobs")
    wait_until(lambda: "start restart=0" in _log(base, 0), 60, "the task to start")
    t0 = time.monotonic()
    for sig in ("SIGTERM", "USR2"):
        subprocess.run(["scancel", "--signal", sig, job_id], check=True, timeout=30)
    wait_until(lambda: "start restart=1" in _log(base, 0), 90, "the requeued task to start again")
    requeued = time.monotonic() - t0
    go.write_text("go")
    wait_until(lambda: ls.job_states([job_id])[job_id].state == "COMPLETED", 60, "the requeued task to complete")
    assert _log(base, 0).splitlines() == [
        f"start restart=0 job={job_id}",
        "sigterm",
        f"start restart=1 job={job_id}",
        "done 7",
    ]
    err = (tmp_path / "jobs" / job_id / f"{job_id}_0_log.err").read_text()
    assert "requeue signal; command stopped" in err
    print(f"preempted -> running again after {requeued:.1f}s")


@pytest.mark.slow  # real SLURM/PostgreSQL processes: CI runs it with the slow tests (make test-slow)
def test_submit_workers_runs_optbench_workers_to_a_complete_sweep(tmp_path, slurm):
    """Two ``optbench worker`` array tasks on one journal (one node: its file locking holds) finish
    a tiny prepared sweep: every planned run recorded once."""
    from test_sweep import records, write_sweep

    from harness.sweep import local as sweep_local
    from harness.sweep import schema as sweep_schema

    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=3, eval_seeds=2)
    sweep, out = sweep_schema.load(sweep_file), tmp_path / "out"
    url, _ = sweep_local.prepare(sweep, out, str(tmp_path / "optuna.journal"))
    t0 = time.monotonic()
    ids = ls.submit_workers(
        sweep_file,
        url,
        2,
        slurm,
        tmp_path / "jobs",
        extra_args=["--out", str(out), "--progress", "plain", "--no-preflight"],
    )
    assert len(ids) == 2
    wait_until(
        lambda: all(s.state == "COMPLETED" for s in ls.job_states(ids).values()),
        120,
        f"both workers to complete ({ls.job_states(ids)})",
    )
    df = records(out)
    assert len(df) == sweep.planned_runs == 5 and df["run_id"].is_unique
    logs = "".join((tmp_path / "jobs" / i / f"{i}_0_log.err").read_text() for i in ids)
    assert logs.count("optbench slurm job: running") == 2 and " worker " in logs
    print(f"2 SLURM workers: {sweep.planned_runs} runs in {time.monotonic() - t0:.1f}s")


def test_a_multi_task_worker_gets_torch_distributed_variables(tmp_path, slurm):
    """tasks_per_node=2: both tasks run the command, each with its RANK and one rendezvous
    (MASTER_ADDR = the job's first node, MASTER_PORT from the job id)."""
    script = (
        "import os; keys = 'RANK LOCAL_RANK WORLD_SIZE LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT'.split(); "
        f"open(os.path.join({str(tmp_path)!r}, 'rank' + os.environ['RANK']), 'w')"
        ".write(' '.join(os.environ[k] for k in keys))"
    )
    resources = dataclasses.replace(slurm, tasks_per_node=2)
    (job_id,) = ls.submit_commands([[sys.executable, "-c", script]], resources, tmp_path / "jobs")
    wait_until(lambda: ls.job_states([job_id])[job_id].state == "COMPLETED", 60, "the 2-task job to complete")
    node = ls.job_states([job_id])[job_id].node
    got = sorted((tmp_path / f"rank{r}").read_text().split() for r in (0, 1))
    port = str(20000 + int(job_id) % 20000)
    assert got == [["0", "0", "2", "2", node, port], ["1", "1", "2", "2", node, port]]


@pytest.mark.slow
def test_real_preemption_requeues_the_worker(tmp_path, slurm):
    """A job in the higher-priority partition ``urgent`` (cluster/slurm/slurm.conf.in) takes the
    whole node: the worker gets the preemption signal (USR2, preempt_send_user_signal), stops its
    command, requeues itself, and finishes after the urgent job."""
    if "urgent" not in ls.partitions():
        pytest.skip("no 'urgent' partition (the local cluster of cluster/slurm/start-local.sh has one)")
    cpus = int(
        subprocess.run(
            ["sinfo", "-h", "-p", "debug", "-o", "%c"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.split()[0]
    )
    base, go = tmp_path / "task", tmp_path / "go"
    resources = dataclasses.replace(slurm, cpus_per_worker=cpus)
    (job_id,) = ls.submit_commands([[sys.executable, "-c", TASK, str(base), str(go)]], resources, tmp_path / "jobs")
    wait_until(lambda: "start restart=0" in _log(base, 0), 60, "the worker to start")
    subprocess.run(
        [
            "sbatch",
            "-p",
            "urgent",
            "-c",
            str(cpus),
            "--mem=100M",
            "-o",
            str(tmp_path / "urgent.out"),
            "--wrap",
            "echo urgent ran",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    wait_until(lambda: "start restart=1" in _log(base, 0), 120, "the preempted worker to start again")
    go.write_text("go")
    wait_until(lambda: ls.job_states([job_id])[job_id].state == "COMPLETED", 60, "the worker to complete")
    assert (tmp_path / "urgent.out").read_text() == "urgent ran\n"
    assert _log(base, 0).splitlines() == [
        f"start restart=0 job={job_id}",
        "sigterm",
        f"start restart=1 job={job_id}",
        "done 7",
    ]


@pytest.mark.slow
def test_time_limit_requeues_the_worker(tmp_path, slurm):
    """``time_min=1``, the signal 30 s before: the worker is stopped and requeued before SLURM's
    time limit kills it, and runs again."""
    base, go = tmp_path / "task", tmp_path / "go"
    resources = dataclasses.replace(slurm, time_min=1, signal_delay_s=30)
    (job_id,) = ls.submit_commands([[sys.executable, "-c", TASK, str(base), str(go)]], resources, tmp_path / "jobs")
    wait_until(lambda: "start restart=0" in _log(base, 0), 60, "the worker to start")
    wait_until(lambda: "start restart=1" in _log(base, 0), 150, "the worker to be requeued at its time limit")
    go.write_text("go")
    wait_until(lambda: ls.job_states([job_id])[job_id].state == "COMPLETED", 60, "the worker to complete")
    err = (tmp_path / "jobs" / job_id / f"{job_id}_0_log.err").read_text()
    assert "requeue signal; command stopped" in err and "timed-out" in err
