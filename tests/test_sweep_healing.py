"""Sweeps that heal themselves (issue 11): one test per defect, each built on the exact scenario that
lost data, wedged the sweep or reported success with a record missing, then the end-to-end story (a
sweep killed at random moments, records corrupted and deleted, the journal torn, resumed to the same
leaderboard as an uninterrupted sweep).

Real components throughout: the real CLI (in process through ``harness.cli.main`` where a process
boundary does not matter, as a subprocess where it does), a real journal file, real parquet records,
real SIGKILLs, and a real read-only mount for the unwritable-output cases.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_sweep import ROOT, WRAPPER, _env, records, run_inprocess, storage_trials, wait_for, write_sweep

from harness.cli import main
from harness.errors import UserError
from harness.results import store as rec
from harness.sweep import local as sweep_local
from harness.sweep import optuna_api
from harness.sweep import resolve as sweep_resolve
from harness.sweep import schema as sweep_schema
from harness.sweep import slots as sweep_slots
from harness.sweep import space as sweep_space
from harness.sweep import storage as sweep_storage
from harness.sweep import worker as sweep_worker


def sweep_cli(capsys, *args) -> tuple[int, str]:
    """``optbench sweep ...`` in this process: (exit code, stderr)."""
    capsys.readouterr()
    code = main(["sweep", *map(str, args), "--progress", "none"])
    return code, capsys.readouterr().err


def run_ids(out: Path) -> set[str]:
    return {p.name[: -len(".parquet")] for p in (out / "runs").glob("*.parquet")}


# ---------------------------------------------------------------------------------------------
# 1. A lost or corrupt run record is re-created
# ---------------------------------------------------------------------------------------------


def test_lost_or_corrupt_record_is_queued_again(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=3, eval_seeds=2)
    out = tmp_path / "out"
    code, _ = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0
    df = records(out)
    planned = set(df["run_id"])
    truncated = rec.run_path(out, df[(df["phase"] == "tune") & (df["trial"] == 1)]["run_id"].iloc[0])
    truncated.write_bytes(truncated.read_bytes()[:100])
    gone = df[df["phase"] == "eval"].iloc[0]
    rec.run_path(out, gone["run_id"]).unlink()
    untouched = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet") if p != truncated}

    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0, err
    assert "5/5 runs recorded (3 tune, 2 eval; 0 diverged, 0 failed)" in err
    assert f"{truncated} of t/tabular_mlp/synthetic/adamw tune slot 1 is unreadable" in err
    assert f"moved it to {truncated.name}.corrupt" in err and "is missing" in err
    assert truncated.with_name(truncated.name + ".corrupt").is_file()  # moved aside, never silently skipped
    assert run_ids(out) == planned  # the same run_ids: the same configurations re-run
    assert {p: t for p, t in untouched.items() if (out / "runs" / p).exists()} == {
        p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.parquet") if p.name in untouched
    }
    again = records(out).set_index("run_id")
    assert again.loc[gone["run_id"], "test_metric"] == gone["test_metric"]  # bit-identical re-run, same process


# ---------------------------------------------------------------------------------------------
# 2. A torn or garbage journal tail is cut back, never appended to
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["torn", "garbage"])
def test_damaged_journal_tail_is_repaired(tmp_path, capsys, damage):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=2, eval_seeds=1)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    journal = out / "optuna.journal"
    data = journal.read_bytes()
    if damage == "torn":  # a power loss in the middle of the last append
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
        damaged = data[: len(data) - len(last) // 2]
    else:  # garbage bytes, not UTF-8, some of them newlines
        rng = random.Random(0)
        damaged = data + b"\xff\xfe" + bytes(rng.randrange(256) for _ in range(300)) + b"\n\x80junk\n"
    journal.write_bytes(damaged)
    write_sweep(sweep_file, optimizers=["adamw"], trials=3, eval_seeds=1)  # the re-run appends new entries

    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0, err
    assert "warning: Optuna journal" in err and "cut back to its last complete entry" in err
    backups = list(out.glob("optuna.journal.damaged-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == damaged
    lines = journal.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and isinstance(json.loads(line), dict) for line in lines)
    assert "4/4 runs recorded" in err
    code, err = sweep_cli(capsys, sweep_file, "--out", out)  # and it stays whole
    assert code == 0 and "warning" not in err and "4/4 runs recorded" in err


def test_journal_damaged_in_the_middle_is_refused_with_the_way_out(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    journal = out / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3][:10]  # a line cut short, and whole entries after it: not a torn tail
    journal.write_bytes(b"".join(lines))
    before = journal.read_bytes()
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 2 and "Traceback" not in err
    assert "line 4 is damaged" in err and f"mv {journal} {journal}.damaged" in err
    assert journal.read_bytes() == before  # refused: not cut
    # The way out it names works: the records are the truth, so nothing is trained again.
    journal.rename(f"{journal}.damaged")
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()}
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "2/2 runs recorded" in err
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").iterdir()} == stamps


def test_repair_keeps_a_whole_journal_untouched(tmp_path):
    journal = tmp_path / "j"
    journal.write_bytes(b'{"op_code": 0}\n{"op_code": 1}\n')
    assert (
        sweep_storage.repair_journal_tail(journal) is None
        and journal.read_bytes() == b'{"op_code": 0}\n{"op_code": 1}\n'
    )
    journal.write_bytes(b'{"op_code": 0}\n{"op_co')
    assert "cut back" in sweep_storage.repair_journal_tail(journal)
    assert journal.read_bytes() == b'{"op_code": 0}\n'


# ---------------------------------------------------------------------------------------------
# 3. Kills from outside do not give a run up
# ---------------------------------------------------------------------------------------------


def _killed_inside_a_run(sweep_file: Path, url: str, out: Path) -> str:
    """Fork a worker whose run blocks, and SIGKILL it there (as the OOM killer or a scheduler
    would). Returns the run_id it was running. Fork, not a new interpreter: torch is imported."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a real Worker with a run that never returns
        try:
            os.close(read)
            from harness.run import loop

            def stall(spec, **kwargs):
                os.write(write, spec.run_id.encode())
                time.sleep(3600)

            loop.run = stall
            sweep_worker.Worker(sweep_schema.load(sweep_file), url, out, poll_seconds=0.05).run()
        finally:
            os._exit(1)
    os.close(write)
    try:
        run_id = os.read(read, 64).decode()
    finally:
        os.close(read)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert run_id, "the forked worker died before it started a run"
    return run_id


def test_repeated_outside_kills_do_not_give_a_run_up(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    out = tmp_path / "out"
    url, _ = sweep_local.prepare(sweep_schema.load(sweep_file), out, None)
    killed = [_killed_inside_a_run(sweep_file, url, out) for _ in range(sweep_slots.MAX_RETRY + 1)]
    assert len(set(killed)) == 1  # the same run every time: its re-queued copy is claimed next
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0, err
    assert "2/2 runs recorded (1 tune, 1 eval; 0 diverged, 0 failed) in" in err and "given up (" not in err
    assert f"has lost its worker {sweep_slots.MAX_RETRY + 1} times without a Python exception" in err
    assert killed[0] in run_ids(out)
    trials = storage_trials(url, "t/tabular_mlp/synthetic/adamw")
    assert [t.state.name for t in trials] == ["FAIL"] * (sweep_slots.MAX_RETRY + 1) + ["COMPLETE"]
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 1  # the same configuration


# ---------------------------------------------------------------------------------------------
# A run that raises: recorded as failed, retried, given up, shown
# ---------------------------------------------------------------------------------------------


def test_a_run_that_raises_is_retried_then_given_up_and_shown(tmp_path, capsys, monkeypatch):
    from harness import leaderboard
    from harness.run import loop

    real_run, calls = loop.run, []

    def run(spec, **kwargs):
        calls.append((spec.phase, spec.trial, spec.seed))
        if spec.phase == "eval" and spec.seed == 2:
            raise RuntimeError("CUDA out of memory (simulated)\nsecond line")
        if spec.phase == "tune" and spec.trial == 1 and calls.count(("tune", 1, spec.seed)) == 1:
            raise ValueError("a transient failure")  # raises once, then succeeds on the retry
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=2, eval_seeds=2)
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0, err  # every planned run has a readable record: one of them says it failed
    assert "4/4 runs recorded (2 tune, 2 eval; 0 diverged, 1 failed)" in err
    assert "1 given up (failed on every attempt): t/tabular_mlp/synthetic/adamw eval slot seed=2" in err
    assert "(4 attempts raised; RuntimeError: CUDA out of memory (simulated))" in err
    assert calls.count(("eval", 0, 2)) == sweep_slots.MAX_RETRY + 1 and calls.count(("tune", 1, 0)) == 2
    df = records(out)
    failed = df[df["status"] == "failed"]
    assert list(failed["seed"]) == [2] and list(failed["phase"]) == ["eval"]
    assert failed["status_detail"].iloc[0] == "RuntimeError: CUDA out of memory (simulated)"
    assert (df[df["phase"] == "tune"]["status"] == "ok").all()
    board, _ = leaderboard.build(out)
    (row,) = board.rows
    assert (row["n_seeds"], row["n_failed"]) == (1, 1)
    markdown = leaderboard.render_markdown(board)
    assert (
        "| synthetic | adamw | 1 | best | 1/2 |" in markdown and " † |" in markdown
    )  # seeds ok 1/2; † = a seed left out
    code, err = sweep_cli(capsys, sweep_file, "--out", out)  # given up stays given up: no 5th attempt
    assert code == 0 and calls.count(("eval", 0, 2)) == sweep_slots.MAX_RETRY + 1


# ---------------------------------------------------------------------------------------------
# 4. Lowering the budget is honoured exactly, in the sweep and in the leaderboard
# ---------------------------------------------------------------------------------------------


def metric_by_slot(monkeypatch) -> None:
    """Tune metric = the trial's slot (so the best of k trials is slot k-1); eval metric = 10 + the
    evaluated slot + seed / 100. Known values, so which runs a leaderboard used is visible in it."""
    from harness.run import loop

    real_run, real_evaluate = loop.run, loop._evaluate

    def run(spec, **kwargs):
        value = float(spec.trial) if spec.phase == "tune" else 10 + spec.trial + spec.seed / 100

        def evaluate(task, model, data, split, autocast):
            return {**real_evaluate(task, model, data, split, autocast), task.metric.name: value}

        monkeypatch.setattr(loop, "_evaluate", evaluate)
        try:
            return real_run(spec, **kwargs)
        finally:
            monkeypatch.setattr(loop, "_evaluate", real_evaluate)

    monkeypatch.setattr(loop, "run", run)


def test_lowering_the_budget_is_honoured_exactly(tmp_path, capsys, monkeypatch):
    from harness import leaderboard

    metric_by_slot(monkeypatch)
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=4, eval_seeds=3)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    tune = records(out).query("phase == 'tune'").set_index("trial")

    def board_row():
        board, notes = leaderboard.build(out)
        (row,) = board.rows
        return row, notes

    row, _ = board_row()
    assert (row["tune_trials"], row["n_seeds"], row["hparams"]) == (4, 3, tune.loc[3, "hparams"])

    write_sweep(sweep_file, optimizers=["adamw"], trials=2, eval_seeds=3)
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "5/5 runs recorded (2 tune, 3 eval;" in err
    row, notes = board_row()
    assert (row["tune_trials"], row["n_seeds"], row["hparams"]) == (2, 3, tune.loc[1, "hparams"])
    assert row["mean"] == pytest.approx(11 + 0.02)  # slot 1's evaluations on seeds 1, 2, 3
    assert any("outside the budget of" in n for n in notes)

    write_sweep(sweep_file, optimizers=["adamw"], trials=2, eval_seeds=2)
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "4/4 runs recorded (2 tune, 2 eval;" in err
    row, _ = board_row()
    assert (row["n_seeds"], row["mean"]) == (2, pytest.approx(11 + 0.015))  # the first 2 seeds

    n = len(records(out))
    write_sweep(sweep_file, optimizers=["adamw"], trials=4, eval_seeds=3)  # back up: nothing to run
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "7/7 runs recorded" in err and len(records(out)) == n
    row, _ = board_row()
    assert (row["tune_trials"], row["n_seeds"], row["hparams"]) == (4, 3, tune.loc[3, "hparams"])


# ---------------------------------------------------------------------------------------------
# 5. A refused sweep writes nothing; 7. search ranges checked before anything runs
# ---------------------------------------------------------------------------------------------


def test_refused_sweep_leaves_provenance_and_journal_untouched(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    out = tmp_path / "out"
    assert sweep_cli(capsys, sweep_file, "--out", out)[0] == 0
    provenance, journal = (out / "sweep.yaml").read_bytes(), (out / "optuna.journal").read_bytes()
    write_sweep(
        sweep_file,
        optimizers=["adamw"],
        trials=1,
        eval_seeds=1,
        tasks=[{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 13}],
    )
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 2 and "different steps" in err and "Traceback" not in err
    assert (out / "sweep.yaml").read_bytes() == provenance
    assert (out / "optuna.journal").read_bytes() == journal


def test_search_range_the_optimizer_refuses_fails_validation(tmp_path, capsys):
    text = textwrap.dedent("""\
        suite: x
        size: tiny
        tasks: [tabular_mlp]
        optimizers:
          - name: adamw
            search:
              weight_decay: {uniform: [-1, 1]}
        trials: 3
        eval_seeds: 1
        steps: 4
    """)
    with pytest.raises(UserError) as err:
        sweep_schema.loads(text, source="bad.yaml")
    message = str(err.value)
    assert message.startswith("bad.yaml: line 7:") and "optimizers[0].search.weight_decay" in message
    assert "weight_decay=-1.0" in message and "adamw" in message
    sweep_file, out = tmp_path / "s.yaml", tmp_path / "out"
    sweep_file.write_text(text)
    code, stderr = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 2 and "weight_decay=-1.0" in stderr and not out.exists()
    sweep_file.write_text(text.replace("[-1, 1]", "[0, 1]"))  # the corrected file: same --out, accepted
    code, stderr = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "4/4 runs recorded" in stderr
    # Categorical choices are probed too.
    with pytest.raises(UserError, match="betas"):
        sweep_schema.loads(
            text.replace("weight_decay: {uniform: [-1, 1]}", "betas: {choices: [[0.9, 0.999], [1.5, 0.9]]}")
        )


# ---------------------------------------------------------------------------------------------
# 6. A 0-byte record of a pending run
# ---------------------------------------------------------------------------------------------


def test_empty_record_file_of_a_pending_run_is_set_aside(tmp_path, capsys):
    import optimizers
    from harness.run.resolve import resolve

    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    out = tmp_path / "out"
    spec, _ = resolve(
        task="tabular_mlp",
        optimizer="adamw",
        dataset="synthetic",
        size="tiny",
        steps=12,
        hparams=dict(optimizers.REGISTRY["adamw"].defaults),
        seed=0,
        phase="tune",
        suite="t",
        study="t/tabular_mlp/synthetic/adamw",
        trial=0,
    )
    empty = rec.run_path(out, spec.run_id)
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "2/2 runs recorded" in err, err
    assert f"run record {empty} is unreadable" in err
    assert empty.with_name(empty.name + ".corrupt").stat().st_size == 0
    assert rec.record_state(out, spec.run_id) == ("ok", "")


# ---------------------------------------------------------------------------------------------
# 8. Unwritable outputs: exit 2 before any work
# ---------------------------------------------------------------------------------------------


def test_output_path_that_is_a_file_exits_2(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for argv, words in (
        (["sweep", sweep_file, "--out", a_file], "is a file, not a folder"),
        (["sweep", sweep_file, "--out", tmp_path / "o", "--storage", tmp_path], "is a folder"),
        (["run", "--task", "tabular_mlp", "--optimizer", "adamw", "--steps", "2", "--out", a_file], "is a file"),
        (["report", ROOT / "tests" / "data" / "leaderboard", "--out", a_file], "is a file"),
        (["leaderboard", ROOT / "tests" / "data" / "leaderboard", "--out", tmp_path], "is a folder"),
    ):
        capsys.readouterr()
        assert main([str(a) for a in argv]) == 2, argv
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err, err
    assert a_file.read_text() == "keep me" and not (tmp_path / "o").exists()


def _read_only_runner(folder: Path) -> list[str] | None:
    """A command prefix under which ``folder`` is read-only -- for root too: a private mount
    namespace with a read-only bind mount (unshare). None when neither that nor chmod can do it."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return []
    script = f'mount --bind "{folder}" "{folder}" && mount -o remount,ro,bind "{folder}" "{folder}" && exec "$@"'
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", "touch", str(folder / "x")], capture_output=True, text=True
    )
    if probe.returncode == 0 or "Read-only" not in probe.stderr:
        return None
    return ["unshare", "-m", "sh", "-c", script, "sh"]


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_read_only_outputs_exit_2_before_any_work(tmp_path):
    """The issue's list: --out on a read-only folder (sweep, run), leaderboard/report --out there,
    --storage there (after which sweep.yaml must not have been written). One interpreter runs all
    five commands inside the read-only mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    results = tmp_path / "results"
    shutil.copytree(
        ROOT / "tests" / "data" / "leaderboard", results, ignore=shutil.ignore_patterns("expected*", "*.py")
    )
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=1)
    ok = tmp_path / "ok"
    runner = _read_only_runner(ro)
    if runner is None:
        pytest.skip("cannot make a read-only folder here (root without mount namespaces)")
    commands = [
        ["sweep", str(sweep_file), "--out", str(ro / "out")],
        ["sweep", str(sweep_file), "--out", str(ok), "--storage", str(ro / "j.journal")],
        ["run", "--task", "tabular_mlp", "--optimizer", "adamw", "--steps", "200000", "--out", str(ro / "adhoc")],
        ["leaderboard", str(results), "--out", str(ro / "lb.md")],
        ["report", str(results), "--out", str(ro / "report")],
    ]
    code = textwrap.dedent(f"""
        import json, sys, time
        from harness.cli import main
        codes = []
        for argv in {commands!r}:
            t0 = time.monotonic()
            codes.append((main(argv), time.monotonic() - t0))
        print(json.dumps(codes))
    """)
    proc = subprocess.run(
        [*runner, sys.executable, "-c", code], env=_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    codes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [c for c, _ in codes] == [2] * 5, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("read-only file system") + proc.stderr.count("permission denied") >= 5, proc.stderr
    assert codes[2][1] < 30  # refused before training 200,000 steps
    assert not ok.exists() or not (ok / "sweep.yaml").exists()
    assert not any(ro.iterdir())


# ---------------------------------------------------------------------------------------------
# 9. The smaller ones
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_sigkill_of_one_of_two_workers_still_exits_0(tmp_path, capsys, monkeypatch):
    """`optbench sweep --workers 2`: worker 1 (a real subprocess) is SIGKILLed inside its first run;
    worker 0 (this process) re-runs that trial and finishes: every planned run recorded, exit 0."""
    from harness.run import loop
    from harness.sweep import local as sweep_local

    stalled = tmp_path / "stalled"
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(
        WRAPPER.replace(
            'Path(os.environ["STALLED"]).write_text(spec.run_id)',
            'Path(os.environ["STALLED"]).write_text(str(os.getpid()))',
        )
    )
    real_command, real_env = sweep_local.worker_command, sweep_local.worker_env
    monkeypatch.setattr(sweep_local, "worker_command", lambda *a: [sys.executable, str(wrapper), *real_command(*a)[3:]])
    monkeypatch.setattr(
        sweep_local,
        "worker_env",
        lambda i, n: {**real_env(i, n), **_env(), "STALL_AFTER": "0", "STALLED": str(stalled)},
    )
    real_run, killed = loop.run, []

    def run(spec, **kwargs):  # worker 0 waits until worker 1 is inside a run, which is then killed
        if not killed:
            wait_for(stalled.exists, 120, "worker 1 to stall inside its first run")
            os.kill(int(stalled.read_text()), signal.SIGKILL)
            killed.append(True)
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    sweep_file = write_sweep(tmp_path / "s.yaml", trials=2, eval_seeds=1)
    capsys.readouterr()
    code = main(["sweep", str(sweep_file), "--out", str(tmp_path / "out"), "--workers", "2", "--progress", "none"])
    err = capsys.readouterr().err
    assert killed and code == 0, err
    assert "6/6 runs recorded" in err and "a worker process exited with code -9; the others finished its runs" in err
    assert len(records(tmp_path / "out")) == 6


def test_infinite_csv_feature_is_named_and_treated_as_missing(tmp_path, capsys):
    rng = random.Random(0)
    lines = ["a,b,c,y"] + [
        f"{rng.random()},{rng.random()},{'inf' if i in (5, 9) else rng.random()},{i % 2}" for i in range(80)
    ]
    table = tmp_path / "t.csv"
    table.write_text("\n".join(lines) + "\n")
    with pytest.warns(UserWarning, match=r"infinite values in numerical column\(s\) 'c' \(2\) are treated as missing"):
        code = main(
            [
                "run",
                "--task",
                "tabular_mlp",
                "--optimizer",
                "adamw",
                "--dataset",
                f"path:{table}",
                "--set",
                "task.target=y",
                "--set",
                "task.scaling=quantile",
                "--steps",
                "3",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert code == 0, capsys.readouterr().err
    assert len(records(tmp_path / "o")) == 1
    # A sweep over the same file names the column too, at preflight (before anything runs).
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        optimizers=["adamw"],
        trials=1,
        eval_seeds=1,
        tasks=[
            {
                "task": "tabular_mlp",
                "size": "tiny",
                "datasets": [f"path:{table}"],
                "steps": 3,
                "options": {"target": "y", "scaling": "standard"},
            }
        ],
    )  # another preprocessing: not the cached one
    with pytest.warns(UserWarning, match=r"column\(s\) 'c' \(2\)"):
        sweep_resolve.preflight(sweep_schema.load(sweep_file))


def test_storage_urls_name_the_right_driver_and_scheme(tmp_path):
    for url in ("mysql://u@127.0.0.1:1/db", "MySQL://u@127.0.0.1:1/db", "mariadb://u@127.0.0.1:1/db"):
        assert sweep_storage.is_rdb_url(url)
        with pytest.raises(UserError) as err:
            sweep_storage.open_storage(url)
        message = str(err.value)
        assert "psycopg2" not in message and "NoSuchModuleError" not in message, message
        assert "MySQL driver" in message or "cannot open storage" in message, message
    with pytest.raises(UserError, match="unknown storage URL scheme 'redis'"):
        sweep_storage.open_storage("redis://localhost/0")


def test_finite_space_never_runs_a_configuration_twice(tmp_path, capsys):
    search = {"lr": {"choices": [1e-3, 3e-3]}, "weight_decay": {"choices": [0.01, 0.1]}}
    sweep_file = write_sweep(
        tmp_path / "s.yaml", optimizers=[{"name": "adamw", "search": search}], trials=4, eval_seeds=1
    )
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "5/5 runs recorded (4 tune, 1 eval;" in err, err
    tune = records(out).query("phase == 'tune'")
    assert sorted(tune["trial"]) == [0, 1, 2, 3] and tune["hparams"].nunique() == 4
    write_sweep(sweep_file, optimizers=[{"name": "adamw", "search": search}], trials=5, eval_seeds=1)
    with pytest.raises(UserError, match="5 trials, but its search space has only 4 distinct configuration"):
        sweep_schema.load(sweep_file)


def test_record_files_get_the_usual_file_mode(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = rec.write_run(
        tmp_path, {"run_id": "r1", "status": "ok"}, [{"step": 1, "split": "train", "name": "loss", "value": 1.0}]
    )
    for file in (path, rec.curves_dir(tmp_path) / "r1.parquet"):
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() would make it: 0644 under umask 022


# ---------------------------------------------------------------------------------------------
# QMC by slot index, and the Optuna adapter
# ---------------------------------------------------------------------------------------------


def test_qmc_configuration_is_a_function_of_the_slot_alone():
    import optimizers

    space = optimizers.REGISTRY["signum"].search_space
    points = [sweep_space.qmc_params(space, 7, k) for k in range(6)]
    assert points == [sweep_space.qmc_params(space, 7, k) for k in range(6)]  # recomputed in any order: the same
    assert len({json.dumps(p, sort_keys=True) for p in points}) == 6
    decoded = [sweep_space.hparams_from_params(p, space, {}) for p in points]
    assert all(space[k].contains(v) for hp in decoded for k, v in hp.items())
    assert sweep_space.qmc_params(space, 8, 1) != points[1]  # the seed scrambles


def test_optuna_adapter_against_the_installed_optuna(tmp_path):
    """Every private Optuna detail optbench relies on, exercised against the installed Optuna: this
    fails loudly (not the sweep, quietly) when an upgrade changes one of them."""
    import optuna
    from optuna.trial import TrialState

    storage = sweep_storage.open_storage(str(tmp_path / "j.journal"))
    assert optuna_api.study_user_attrs(storage, "s") is None
    study = optuna.create_study(study_name="s", storage=storage)
    study.set_user_attr("k", 1)
    assert optuna_api.study_user_attrs(storage, "s") == {"k": 1}
    asked = study.ask()
    (frozen,) = study.get_trials(deepcopy=False)
    assert isinstance(optuna_api.trial_id(asked), int) and optuna_api.trial_id(asked) == optuna_api.trial_id(frozen)
    study.enqueue_trial({"x": 0.25}, user_attrs={"slot": 1})
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))[0]
    assert waiting.params == {} and optuna_api.planned_params(waiting) == {"x": 0.25}
    tid = optuna_api.trial_id(waiting)
    assert optuna_api.set_state(storage, tid, TrialState.RUNNING) is True
    assert optuna_api.set_state(storage, tid, TrialState.RUNNING) is False  # already claimed
    optuna_api.set_system_attr(storage, tid, "a", 1)
    optuna_api.set_user_attr(storage, tid, "b", 2)
    assert optuna_api.set_state(storage, tid, TrialState.FAIL) is True
    failed = optuna_api.get_trial(storage, tid)
    assert (failed.system_attrs["a"], failed.user_attrs["b"]) == (1, 2)
    optuna_api.retry_callback()(study, failed)
    retry = study.get_trials(deepcopy=False)[-1]
    assert retry.state == TrialState.WAITING and optuna_api.retried_from(retry) == failed.number
    assert optuna_api.planned_params(retry) == {"x": 0.25} and retry.user_attrs["slot"] == 1
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        optuna_api.set_state(storage, tid, TrialState.RUNNING)


# ---------------------------------------------------------------------------------------------
# End to end: killed 5 times, records corrupted and deleted, journal torn -> the same leaderboard
# ---------------------------------------------------------------------------------------------

E2E_SWEEP = {
    "suite": "e2e",
    "tasks": [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 300}],
    "optimizers": ["adamw", "signum"],
    "trials": 4,
    "eval_seeds": 2,
    "sampler": "qmc",
    "heartbeat": {"interval": 1, "grace": 3},
}


def _leaderboard_text(out: Path) -> str:
    from harness import leaderboard

    board, _ = leaderboard.build(out)
    return (
        leaderboard.render_csv(board) + leaderboard.render_csv(board, "aggregate") + leaderboard.render_markdown(board)
    )


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_killed_five_times_then_damaged_resumes_to_the_uninterrupted_leaderboard(tmp_path, capsys):
    started = time.monotonic()
    sweep_file = tmp_path / "e2e.yaml"
    sweep_file.write_text(json.dumps(E2E_SWEEP))
    reference = tmp_path / "reference"
    sweep, _, _, _ = run_inprocess(sweep_file, reference)
    assert len(run_ids(reference)) == sweep.planned_runs == 12

    out, rng, kills, log = tmp_path / "out", random.Random(11), 0, tmp_path / "sweep.log"
    attempts, at_kill = 0, []
    while kills < 5:
        attempts += 1
        assert attempts < 12, "the sweep kept finishing before it could be killed"
        with open(log, "w") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "harness.cli",
                    "sweep",
                    str(sweep_file),
                    "--out",
                    str(out),
                    "--progress",
                    "plain",
                ],
                env=_env(),
                cwd=str(ROOT),
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        wait_for(lambda p=proc: "runs planned" in log.read_text() or p.poll() is not None, 120, "the sweep to start")
        time.sleep(rng.uniform(0.0, 0.6))  # a random moment of the work: a run, a record, a journal write
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
            at_kill.append(len(run_ids(out)) if (out / "runs").is_dir() else 0)
        proc.wait()
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "12/12 runs recorded" in err, err
    assert sum(n < sweep.planned_runs for n in at_kill) >= 3, at_kill  # most kills interrupted work
    assert run_ids(out) == run_ids(reference)
    assert _leaderboard_text(out) == _leaderboard_text(reference)

    # Then: one record corrupted, one deleted, the journal's last line torn; resumed again.
    ids = sorted(run_ids(out))
    corrupt, deleted = rec.run_path(out, ids[0]), rec.run_path(out, ids[1])
    corrupt.write_bytes(corrupt.read_bytes()[: corrupt.stat().st_size // 2])
    deleted.unlink()
    journal = out / "optuna.journal"
    data = journal.read_bytes()
    journal.write_bytes(data[:-25])
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "12/12 runs recorded (8 tune, 4 eval; 0 diverged, 0 failed)" in err, err
    assert "cut back to its last complete entry" in err and "is unreadable" in err and "is missing" in err
    assert run_ids(out) == run_ids(reference)  # exactly the planned records
    assert _leaderboard_text(out) == _leaderboard_text(reference)
    print(
        f"\ne2e: {sweep.planned_runs} planned runs, {kills} kills in {attempts} starts (records on disk at each "
        f"kill: {at_kill}), {time.monotonic() - started:.1f}s wall",
        file=sys.__stderr__,
    )


def test_lock_left_by_a_writer_killed_mid_append_costs_seconds_not_half_a_minute(tmp_path):
    """A writer SIGKILLed inside a journal append leaves Optuna's ``<journal>.lock`` behind; with
    Optuna's own lock every later writer waits its 30 s grace period (and a sweep killed at random
    moments often hits an append). The crash-safe lock breaks it after 3 s."""
    import optuna

    journal = tmp_path / "optuna.journal"
    sweep_storage.open_storage(str(journal))  # creates the file
    os.symlink(journal, f"{journal}.lock")  # what a writer killed inside an append leaves
    started = time.monotonic()
    optuna.create_study(study_name="s", storage=sweep_storage.open_storage(str(journal)))  # appends
    waited = time.monotonic() - started
    assert 2.5 < waited < 15, waited
    assert not Path(f"{journal}.lock").exists()


def test_a_live_writer_never_appends_to_a_line_torn_by_a_killed_one(tmp_path):
    """Two workers share a journal; one is killed inside an append and leaves a partial line. The
    other, still running, must not fuse its next entry onto it (that made every later read fail):
    its append first cuts the torn line back, with a warning and a backup."""
    import optuna

    journal = tmp_path / "optuna.journal"
    study = optuna.create_study(study_name="s", storage=sweep_storage.open_storage(str(journal)))
    with open(journal, "ab") as fh:  # what the killed worker left
        fh.write(b'{"op_code":8,"worker_id":"dead","trial_id":0,"user_attr')
    with pytest.warns(sweep_storage.SweepWarning, match="cut back to its last complete entry"):
        study.set_user_attr("after", 1)  # the live worker appends
    lines = journal.read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") and json.loads(line) for line in lines)
    assert optuna.load_study(study_name="s", storage=sweep_storage.open_storage(str(journal))).user_attrs == {
        "after": 1
    }
    assert len(list(tmp_path.glob("optuna.journal.damaged-*"))) == 1
