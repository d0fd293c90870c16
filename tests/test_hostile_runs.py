"""Issue 17, one run at a time: the probes that lost or mislabelled a run's result, or ended in a
traceback, tried again through the public entry points (``optbench`` in this process through
``harness.cli.main``, as a subprocess where a process boundary matters, and ``harness.run.loop.run``).

- a checkpoint says whose it is: another run's checkpoint in a run's folder is moved aside, never
  resumed from (another seed's: the wrong model under the right name; another optimizer's: a wedge);
- ``--branch-from`` accepts only the child's own first S steps, and a branched run has its own run_id;
- checkpoints do not pile up during a run;
- a ``path:`` file edited during a run voids the run;
- bad input, a full disk and a closed output pipe end in one clear message, never a traceback.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.cli import main
from harness.results import store as records
from harness.run import checkpoint as ckpt
from harness.run.checkpoint import CheckpointPolicy
from harness.run.loop import run
from harness.run.resolve import resolve
from harness.spec import DataChanged, dataset_id

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--task", "tabular_mlp", "--size", "tiny"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OPTBENCH_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    )
    return env


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``optbench ARGV`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------------------------------------
# A checkpoint says whose it is
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stray", ["another seed", "another optimizer"])
def test_a_checkpoint_of_another_run_is_moved_aside_not_resumed(tmp_path, capsys, stray):
    """A checkpoint of seed 2 (or of Signum) placed in the seed-1 AdamW run's folder: before, the run
    resumed from it silently (seed 1's record holding seed 2's model) or crashed with a KeyError on
    every re-run. Now it is moved aside with a warning and the run trains from scratch."""
    out, clean = tmp_path / "out", tmp_path / "clean"
    victim = [*TINY, "--optimizer", "adamw", "--steps", "20", "--seed", "1"]
    donor = [
        *TINY,
        "--optimizer",
        "signum" if stray == "another optimizer" else "adamw",
        "--steps",
        "20",
        "--seed",
        "1" if stray == "another optimizer" else "2",
        "--keep-checkpoint",
        "10",
    ]
    assert cli(capsys, "run", *donor, "--out", tmp_path / "donor")[0] == 0
    (donor_ckpt,) = (tmp_path / "donor" / "checkpoints").glob("*/step-10.pt")
    spec, _ = resolve(task="tabular_mlp", optimizer="adamw", size="tiny", steps=20, seed=1)
    planted = ckpt.path_for(out, spec.run_id, 10)
    planted.parent.mkdir(parents=True)
    shutil.copy(donor_ckpt, planted)

    code, stdout, err = cli(capsys, "run", *victim, "--out", out)
    assert code == 0 and "Traceback" not in err, err
    assert f"checkpoint {planted} is not this run's: it belongs to run {donor_ckpt.parent.name}" in err
    assert "moved it aside to step-10.pt.foreign" in err
    assert cli(capsys, "run", *victim, "--out", clean)[0] == 0
    got, want = (
        records.read_runs_file(records.run_path(out, spec.run_id)),
        records.read_runs_file(records.run_path(clean, spec.run_id)),
    )
    assert got["resumed_at_step"] == 0 and got["seed"] == 1
    assert (got["test_metric"], got["final_train_loss"]) == (want["test_metric"], want["final_train_loss"])
    assert not (out / "checkpoints").exists()  # the stray file went with the finished run's folder


# ---------------------------------------------------------------------------------------------
# --branch-from: only the child's own first S steps; a branched run has its own run_id
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def signum_parent(tmp_path, capsys):
    """A Signum run at lr 3e-4, 40 steps, seed 4, that kept its checkpoints at steps 20, 36 and 40."""
    out = tmp_path / "out"
    code, _, err = cli(
        capsys,
        "run",
        *TINY,
        "--optimizer",
        "signum",
        "--steps",
        "40",
        "--seed",
        "4",
        "--set",
        "lr=3e-4",
        "--keep-checkpoint",
        "20,36,40",
        "--out",
        out,
    )
    assert code == 0, err
    (folder,) = (out / "checkpoints").iterdir()
    return out, folder


CHILD = [*TINY, "--optimizer", "softsignum", "--steps", "40", "--seed", "4", "--set", "alpha_sign=0.5"]  # S = 20


@pytest.mark.parametrize(
    "step, extra, words",
    [
        (20, ["--set", "lr=1e-3"], ["the parent trained with lr=0.0003 (this run: 0.001)", "--set lr=0.0003"]),
        (36, ["--set", "lr=3e-4"], ["the checkpoint is at step 36", "switches at step 20 of 40"]),
        (40, ["--set", "lr=3e-4"], ["the checkpoint is at step 40", "switches at step 20 of 40"]),
    ],
)
def test_branch_from_refuses_a_parent_that_is_not_the_childs_first_steps(signum_parent, capsys, step, extra, words):
    out, folder = signum_parent
    before = files_under(out)
    code, _, err = cli(capsys, "run", *CHILD, *extra, "--branch-from", folder / f"step-{step}.pt", "--out", out)
    assert code == 2 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert files_under(out) == before  # nothing written


def test_a_branched_run_has_its_own_run_id(signum_parent, capsys):
    """Branched and from-scratch runs of one spec are two results (equal on CPU, not bit for bit
    everywhere): two run_ids, two records; the branched one names its parent."""
    out, folder = signum_parent
    args = [*CHILD, "--set", "lr=3e-4", "--out", out]
    assert cli(capsys, "run", *args, "--branch-from", folder / "step-20.pt")[0] == 0
    code, stdout, _ = cli(capsys, "run", *args)
    assert code == 0 and "already finished" not in stdout
    df = records.read_runs(out)
    soft = df[df["optimizer"] == "softsignum"].set_index("branched_from")
    assert len(soft) == 2 and soft["run_id"].is_unique
    assert soft.loc[folder.name, "branch_step"] == 20 and soft.loc["", "branch_step"] == 0
    assert soft.loc[folder.name, "test_metric"] == soft.loc["", "test_metric"]  # same result (CPU)


@pytest.mark.parametrize("content", [b"", b"suite: x\ntasks: [tabular_mlp]\n", "cut"])
def test_branch_from_an_unreadable_file_exits_2(signum_parent, tmp_path, capsys, content):
    out, folder = signum_parent
    bad = tmp_path / "bad.pt"
    if content == "cut":
        bad.write_bytes((folder / "step-20.pt").read_bytes()[:300])
    else:
        bad.write_bytes(content)
    before = files_under(out)
    code, _, err = cli(capsys, "run", *CHILD, "--set", "lr=3e-4", "--branch-from", bad, "--out", out)
    assert code == 2 and "Traceback" not in err, err
    assert f"--branch-from {bad}: not an optbench checkpoint" in err
    assert files_under(out) == before


# ---------------------------------------------------------------------------------------------
# Checkpoints do not pile up
# ---------------------------------------------------------------------------------------------


def test_checkpoints_do_not_pile_up_during_a_run(tmp_path, monkeypatch):
    """A checkpoint after every step of 60, branch points 7 and 30 kept: on disk at any time the newest
    and the kept ones that are older (never more than 3); after the run only the kept ones."""
    spec, _ = resolve(task="tabular_mlp", optimizer="signum", size="tiny", steps=60, seed=0)
    seen: list[list[int]] = []
    real_save = ckpt.save

    def save(path, state):  # observes the folder after each write; changes nothing
        result = real_save(path, state)
        seen.append(ckpt.saved_steps(tmp_path, spec.run_id))
        return result

    monkeypatch.setattr(ckpt, "save", save)
    res = run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps=set(range(1, 61)), keep_steps={7, 30}))
    assert res.row["status"] == "ok" and len(seen) == 60
    # After save n, before the older ones are deleted: at most newest, the previous one and the kept.
    assert max(len(s) for s in seen) <= 4
    assert seen[-1][-1] == 60 and ckpt.saved_steps(tmp_path, spec.run_id) == [7, 30]
    # What the next save found: the previous newest, and the kept ones older than it, nothing else.
    for step, found in enumerate(seen[1:], start=2):
        assert set(found) == {s for s in (7, 30) if s < step} | {step - 1, step}, (step, found)


# ---------------------------------------------------------------------------------------------
# A path: file edited during a run voids the run
# ---------------------------------------------------------------------------------------------


def write_table(path: Path, seed: int = 0, rows: int = 200) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 3))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] > 0).astype(int)}).to_csv(
        path, index=False
    )


def test_a_data_file_changed_during_a_run_voids_it(tmp_path):
    data = tmp_path / "table.csv"
    write_table(data)
    spec, task = resolve(
        task="tabular_mlp",
        optimizer="adamw",
        dataset=f"path:{data}",
        size="tiny",
        steps=30,
        task_options={"target": "label"},
    )
    before = dataset_id(f"path:{data}")

    edits = []

    def edit_mid_run(step, metrics):  # at the first evaluation, with steps still to go
        if not edits:
            edits.append(step)
            write_table(data, seed=1)
        return False

    out = tmp_path / "out"
    with pytest.raises(DataChanged, match="changed while the run trained") as err:
        run(spec, out_dir=out, task=task, on_eval=edit_mid_run)
    assert edits and edits[0] < 30
    assert before in str(err.value) and dataset_id(f"path:{data}") in str(err.value)
    assert not records.runs_dir(out).exists() or not any(records.runs_dir(out).iterdir())


# ---------------------------------------------------------------------------------------------
# One clear message and exit 2 (bad input) or 1 (a full disk), never a traceback
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--seed", str(2**63)], ["invalid seed", "[0, 2**31 - 1]"]),
        (["--seed", str(2**31)], ["invalid seed", "[0, 2**31 - 1]"]),
        (["--steps", str(10**12)], ["invalid steps", "[1, 100,000,000]"]),
        (["--steps", "1e12"], ["invalid steps", "[1, 100,000,000]"]),
        (["--checkpoint-every", "nan"], ["--checkpoint-every must be a number of seconds >= 0"]),
    ],
)
def test_impossible_values_exit_2_before_anything_is_written(tmp_path, capsys, argv, words):
    out = tmp_path / "out"
    code, _, err = cli(capsys, "run", *TINY, "--optimizer", "adamw", *argv, "--out", out)
    assert code == 2 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    assert not out.exists()


def test_none_is_a_choice_of_a_task_option(tmp_path, capsys):
    code, _, err = cli(
        capsys,
        "run",
        *TINY,
        "--optimizer",
        "adamw",
        "--steps",
        "3",
        "--set",
        "task.num_embeddings=none",
        "--out",
        tmp_path,
    )
    assert code == 0, err
    assert '"num_embeddings": "none"' in records.read_runs(tmp_path)["task_options"].iloc[0]


def test_a_full_disk_exits_1_naming_the_file_with_nothing_half_written(tmp_path, capsys, monkeypatch):
    """The writers of checkpoints and records, each told "no space left" half-way through a write
    (patched at the write site: a real small file system is in the next test)."""
    import pyarrow.parquet as pq
    import torch

    def full(real):
        def write(obj, where, *args, **kwargs):
            Path(where).write_bytes(b"partial")  # what a writer leaves when the disk fills mid-file
            raise OSError(errno.ENOSPC, "No space left on device")

        return write

    out = tmp_path / "out"
    monkeypatch.setattr(torch, "save", full(torch.save))
    code, _, err = cli(
        capsys, "run", *TINY, "--optimizer", "adamw", "--steps", "10", "--keep-checkpoint", "5", "--out", out
    )
    assert code == 1 and "Traceback" not in err, err
    spec, _ = resolve(task="tabular_mlp", optimizer="adamw", size="tiny", steps=10)
    assert f"no space left on the device to write {ckpt.path_for(out, spec.run_id, 5)} (it needs about" in err
    assert files_under(out) == []  # no partial checkpoint, no record
    monkeypatch.undo()
    monkeypatch.setattr(pq, "write_table", full(pq.write_table))
    code, _, err = cli(capsys, "run", *TINY, "--optimizer", "adamw", "--steps", "10", "--out", out)
    assert code == 1 and "no space left on the device to write" in err and "Traceback" not in err, err
    assert files_under(out) == []


def _small_filesystem_runner(folder: Path, kilobytes: int) -> list[str] | None:
    """A command prefix under which ``folder`` is a real ``kilobytes``-KB tmpfs (a private mount
    namespace: root only). None where that cannot be made."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return None
    script = f'mount -t tmpfs -o size={kilobytes}k optbench-full "{folder}" && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True, text=True)
    return ["unshare", "-m", "sh", "-c", script, "sh"] if probe.returncode == 0 else None


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_a_really_full_disk_during_run_and_sweep_exits_1(tmp_path):
    """On a real 256 KB file system that a filler leaves almost full: ``optbench run`` (a checkpoint)
    and ``optbench sweep`` stop with exit 1 and one message, and leave no partial file; with the space
    back, the same sweep command finishes."""
    disk = tmp_path / "disk"
    disk.mkdir()
    runner = _small_filesystem_runner(disk, 256)
    if runner is None:
        pytest.skip("no private tmpfs here (needs root and unshare); the patched test above covers the message")
    sweep_file = tmp_path / "s.yaml"
    sweep_file.write_text(
        '{"suite": "t", "tasks": [{"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], '
        '"steps": 6}], "optimizers": ["adamw"], "trials": 2, "eval_seeds": 1}'
    )
    code = textwrap.dedent(f"""
        import json, os
        from harness.cli import main
        disk = {str(disk)!r}
        with open(os.path.join(disk, "filler"), "wb") as fh:  # leave ~24 KB
            fh.write(b"x" * (232 * 1024))
        codes = [main(["run", "--task", "tabular_mlp", "--optimizer", "adamw", "--steps", "6", "--keep-checkpoint",
                       "3", "--out", os.path.join(disk, "run")])]
        sweep = ["sweep", {str(sweep_file)!r}, "--out", os.path.join(disk, "sweep"), "--progress", "none"]
        codes.append(main(sweep))
        leftovers = [os.path.join(d, f) for d, _, fs in os.walk(disk) for f in fs if f.endswith(".tmp")]
        os.remove(os.path.join(disk, "filler"))  # space again: the same command finishes the sweep
        codes.append(main(sweep))
        print(json.dumps([codes, leftovers]))
    """)
    proc = subprocess.run(
        [*runner, sys.executable, "-c", code], env=_env(), cwd=str(ROOT), capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    codes, leftovers = json.loads(proc.stdout.strip().splitlines()[-1])
    assert codes == [1, 1, 0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and leftovers == []
    assert proc.stderr.count("no space left on the device to write") == 2, proc.stderr
    assert "3/3 runs recorded" in proc.stderr


# ---------------------------------------------------------------------------------------------
# Output into a closed pipe ends quietly
# ---------------------------------------------------------------------------------------------


def test_list_into_a_closed_pipe_ends_quietly():
    """``optbench list | head -1``, deterministically: the reader is gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness.cli", "list"],
            stdout=write,
            stderr=subprocess.PIPE,
            env=_env(),
            cwd=str(ROOT),
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 1
