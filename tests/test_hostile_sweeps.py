"""Issue 17, whole sweeps: no run given up for good by a lost file, no parent checkpoint trusted
blindly, no result filed under data it did not train on, no sweep stopped by its own progress output.
Real components: the CLI (in this process through ``harness.cli.main``; a subprocess where the pipe
is the point), a real journal, real parquet records and checkpoints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_hostile_runs import write_table
from test_sweep import ROOT, _env, records, write_sweep

from harness.cli import main
from harness.results import store as rec


def sweep_cli(capsys, *args) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["sweep", *map(str, args), "--progress", "none"])
    return code, capsys.readouterr().err


def stamps(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in rec.runs_dir(out).glob("*.parquet")}


# ---------------------------------------------------------------------------------------------
# Given up is a state the records can lose and get back
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_given_up_runs_lost_record_is_written_again_from_the_journal(tmp_path, capsys, monkeypatch, damage):
    """Before: every re-run exited 1 with "re-run the same command to resume", forever. Now the
    re-run writes the failure record again from the journal (the run is not retried: given up stays
    given up), moves an unreadable file aside, and exits 0 with exactly the planned records."""
    from harness.run import loop

    real_run, calls = loop.run, []

    def run(spec, **kwargs):
        calls.append((spec.phase, spec.seed))
        if spec.phase == "eval" and spec.seed == 2:
            raise RuntimeError("simulated out of memory")
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, eval_seeds=2)
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "1 given up" in err, err
    df = records(out)
    (failed_id,) = df[df["status"] == "failed"]["run_id"]
    original = df.set_index("run_id").loc[failed_id]
    path = rec.run_path(out, failed_id)
    if damage == "deleted":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:200])
    attempts = len(calls)

    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0, err
    assert "3/3 runs recorded (1 tune, 2 eval; 0 diverged, 1 failed)" in err
    assert "re-run the same command" not in err
    assert "eval slot seed=2" in err and "RuntimeError: simulated out of memory" in err  # names the run and its error
    assert len(calls) == attempts  # not tried again
    again = records(out).set_index("run_id")
    assert len(again) == 3 and again.loc[failed_id, "status"] == "failed"
    for column in ("status_detail", "spec", "study", "seed", "trial", "hparams"):
        assert again.loc[failed_id, column] == original[column], column
    if damage == "truncated":
        assert path.with_name(path.name + ".corrupt").stat().st_size == 200
    code, err = sweep_cli(capsys, sweep_file, "--out", out)  # and it stays settled
    assert code == 0 and "warning" not in err and len(calls) == attempts


# ---------------------------------------------------------------------------------------------
# A branch falls back the same way whatever is wrong with the parent's checkpoint
# ---------------------------------------------------------------------------------------------

BRANCHED = [
    "signum",
    {"name": "softsignum", "branch_from": "signum", "search": {"alpha_sign": {"choices": [0.5, 0.75]}}},
]


@pytest.mark.parametrize("damage", ["truncated", "another step"])
def test_a_damaged_parent_checkpoint_falls_back_to_a_run_from_scratch(tmp_path, capsys, monkeypatch, damage):
    """The parent's kept checkpoint is damaged just before the first SoftSignum run starts from it:
    cut short, or replaced by the parent's checkpoint at another branch point. Before: the child
    failed 4 times and was given up (or silently started from the wrong step). Now it runs from
    scratch with a warning, every record is ok, and a re-run runs nothing."""
    from harness.run import loop

    real_run, damaged = loop.run, []

    def run(spec, **kwargs):
        parent = kwargs.get("branch_from")
        if parent is not None and not damaged:
            parent = Path(parent)
            if damage == "truncated":
                parent.write_bytes(parent.read_bytes()[:500])
            else:  # S of alpha 0.75 copied over S of alpha 0.5 (or the reverse)
                other = next(p for p in parent.parent.glob("step-*.pt") if p != parent)
                parent.write_bytes(other.read_bytes())
            damaged.append((spec.seed, float(spec.hparams["alpha_sign"])))
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    tasks = [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 20}]
    sweep_file = write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=BRANCHED, trials=2, eval_seeds=1)
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and damaged, err
    assert "6/6 runs recorded (4 tune, 2 eval; 0 diverged, 0 failed)" in err and "given up" not in err
    assert "from scratch instead" in err
    df = records(out)
    assert len(df) == 6 and set(df["status"]) == {"ok"}
    soft = df[df["optimizer"] == "softsignum"]
    scratch = soft[soft["branched_from"] == ""]
    assert len(scratch) == 1 and float(scratch["hp_alpha_sign"].iloc[0]) == damaged[0][1]
    for _, row in soft[soft["branched_from"] != ""].iterrows():  # the others started from their own S
        assert row["branch_step"] == int(row["hp_alpha_sign"] * row["steps"])
    before = stamps(out)
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and "6/6 runs recorded" in err and stamps(out) == before


def test_a_child_that_failed_branched_then_ran_from_scratch_leaves_one_record(tmp_path, capsys, monkeypatch):
    """A branched SoftSignum run raises on its own (a failure record under its branched run_id), and
    its parent checkpoint is gone before the retry, which then runs from scratch (another run_id):
    the earlier failure record is moved aside, so the slot has one record and the sweep exactly the
    planned ones."""
    from harness.run import loop

    real_run, failed = loop.run, []

    def run(spec, **kwargs):
        parent = kwargs.get("branch_from")
        if parent is not None and not failed:
            failed.append(spec.run_id)
            Path(parent).unlink()
            raise RuntimeError("a failure of the child's own")
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    tasks = [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 20}]
    sweep_file = write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=BRANCHED, trials=2, eval_seeds=1)
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 0 and failed, err
    assert "6/6 runs recorded (4 tune, 2 eval; 0 diverged, 0 failed)" in err
    assert f"{failed[0]}.parquet of an earlier attempt is superseded" in err
    df = records(out)
    assert len(df) == 6 and set(df["status"]) == {"ok"} and failed[0] not in set(df["run_id"])
    assert rec.run_path(out, failed[0]).with_suffix(".parquet.superseded").is_file()


# ---------------------------------------------------------------------------------------------
# Data identity is checked when a run ends, not only when it starts
# ---------------------------------------------------------------------------------------------


def test_a_data_file_edited_during_a_sweep_files_nothing_under_the_old_content(tmp_path, capsys, monkeypatch):
    """The path: CSV is rewritten after the second run started. Before: that run was filed under the
    old content's study with the new content's name. Now it is recorded as failed, saying why, and the
    sweep stops (exit 2) naming the file, instead of training more runs on content its studies are
    not for."""
    from harness.run import loop

    data = tmp_path / "table.csv"
    write_table(data)
    real_run, calls = loop.run, []

    def run(spec, **kwargs):
        calls.append(spec.run_id)
        if len(calls) == 2:  # the run has its data and its name: the file changes under it
            write_table(data, seed=1)
        return real_run(spec, **kwargs)

    monkeypatch.setattr(loop, "run", run)
    tasks = [
        {
            "task": "tabular_mlp",
            "size": "tiny",
            "datasets": [f"path:{data}"],
            "steps": 20,
            "options": {"target": "label"},
        }
    ]
    sweep_file = write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=["adamw"], trials=3, eval_seeds=1)
    out = tmp_path / "out"
    code, err = sweep_cli(capsys, sweep_file, "--out", out)
    assert code == 2 and "Traceback" not in err, err
    assert f"the data file {data} changed since this sweep started" in err
    df = records(out)
    for _, row in df.iterrows():  # every record trained on the content its study is named by
        assert row["study"].split("/")[2] == row["dataset"]
    assert len(calls) == 2 and list(df["status"]).count("ok") == 1
    failed = df[df["status"] == "failed"].iloc[0]
    assert "changed while the run trained" in failed["status_detail"]


# ---------------------------------------------------------------------------------------------
# Output into a closed pipe never stops a sweep's workers
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_a_sweep_whose_progress_reader_is_gone_finishes_every_run(tmp_path):
    """``optbench sweep --progress json --workers 2 | head -1``, deterministically: the reader is gone
    before the first event. Before: a BrokenPipeError traceback, and the sweep stopped part-way."""
    sweep_file = write_sweep(tmp_path / "s.yaml", trials=2, eval_seeds=2)  # adamw + signum: 8 runs
    out = tmp_path / "out"
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli",
                "sweep",
                str(sweep_file),
                "--out",
                str(out),
                "--workers",
                "2",
                "--progress",
                "json",
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=str(ROOT),
            text=True,
            timeout=300,
        )
    finally:
        os.close(write)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "8/8 runs recorded" in proc.stderr
    assert len(records(out)) == 8


# ---------------------------------------------------------------------------------------------
# Sweep files: seeds every part accepts, names a folder can have
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"seed": 2**63}, "'seed' must be an integer in [0, 2147483647]"),
        ({"seed": 2**31 - 2, "eval_seeds": 3}, "'eval_seeds' must be an integer in [1, 1]"),
        ({"eval_seeds": [1, 2**40]}, "'eval_seeds[1]' must be an integer in [0, 2147483647]"),
        ({"seed": 2**31 - 1500, "eval_seeds": [1], "replicates": 3}, "replicate 2 would tune with seed"),
        ({"suite": "s" * 300}, "'suite' must be a name of 1 to 64 letters"),
    ],
)
def test_sweep_values_no_part_can_take_exit_2_before_anything_is_written(tmp_path, capsys, monkeypatch, changes, words):
    monkeypatch.chdir(tmp_path)  # the default results folder, results/<suite>, would be here
    sweep_file = write_sweep(tmp_path / "s.yaml", optimizers=["adamw"], trials=1, **{"eval_seeds": 1, **changes})
    code, err = sweep_cli(capsys, sweep_file)
    assert code == 2 and "Traceback" not in err, err
    assert words in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


# ---------------------------------------------------------------------------------------------
# check --out on a read-only folder
# ---------------------------------------------------------------------------------------------


def test_check_out_read_only_exits_2_before_measuring(tmp_path):
    from test_sweep_healing import _read_only_runner

    ro = tmp_path / "ro"
    ro.mkdir()
    runner = _read_only_runner(ro)
    if runner is None:
        pytest.skip("cannot make a read-only folder here (root without mount namespaces)")
    code = textwrap.dedent(f"""
        import json
        from harness.cli import main
        print(json.dumps(main(["check", "--device", "cpu", "--quick", "--out", {str(ro / "c")!r}])))
    """)
    proc = subprocess.run(
        [*runner, sys.executable, "-c", code], env=_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    exit_code = json.loads(proc.stdout.strip().splitlines()[-1])
    assert exit_code == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "cannot write the check output folder (--out)" in proc.stderr
    # refused before measuring: no section of the check ran (each prints its "== <section>" header)
    assert "==" not in proc.stdout, proc.stdout[-2000:]
    assert not any(ro.iterdir())
