"""Checkpoints: a run stopped after a checkpoint and resumed in a new process writes the same record
as the uninterrupted run (every task, tiny size, CPU); SIGKILL mid-run; wall-clock cadence; cleanup;
and the file format (atomic writes, every RNG)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import tasks
from harness.results import store as records
from harness.run import checkpoint as ckpt
from harness.run.checkpoint import CheckpointPolicy
from harness.run.loop import run
from harness.run.resolve import resolve

ROOT = Path(__file__).resolve().parents[1]
TASKS = sorted(tasks.REGISTRY)
STEPS = 30
STOP_AT = 17  # not a multiple of any tiny eval cadence: the resumed part starts mid-interval


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _spec(task: str, optimizer: str = "softsignum"):
    # softsignum with alpha_sign 0.5: the stop falls in the sign phase, the switch after the resume,
    # so the optimizer's own schedule state crosses the checkpoint too.
    spec, _ = resolve(
        task=task,
        optimizer=optimizer,
        size="tiny",
        steps=STEPS,
        seed=3,
        hparams={"alpha_sign": 0.5} if optimizer == "softsignum" else {},
    )
    return spec


# The first part of each run, in another process: train to STOP_AT, save the checkpoint, then stop
# with an exception (no record). The test process resumes it.
PART_ONE = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    from harness.run import checkpoint as ckpt
    from harness.run.checkpoint import CheckpointPolicy
    from harness.run.loop import run
    from harness.run.resolve import resolve
    from harness.spec import RunSpec

    class Stop(Exception):
        pass

    real_save = ckpt.save
    def save(path, state):
        real_save(path, state)
        raise Stop
    ckpt.save = save
    out, stop_at = sys.argv[1], int(sys.argv[2])
    for text in sys.argv[3:]:
        spec = RunSpec.from_json(text)
        try:
            run(spec, out_dir=out, checkpoints=CheckpointPolicy(at_steps={stop_at}))
        except Stop:
            pass
        else:
            raise SystemExit("the run did not stop at its checkpoint")
""")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """One subprocess runs the first STOP_AT steps of every task's spec and leaves their checkpoints."""
    out = tmp_path_factory.mktemp("interrupted")
    specs = {name: _spec(name) for name in TASKS}
    script = out / "part_one.py"
    script.write_text(PART_ONE)
    proc = subprocess.run(
        [sys.executable, str(script), str(out), str(STOP_AT), *(s.to_json() for s in specs.values())],
        env=_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, specs


def _same_record(a: dict, b: dict) -> None:
    """Everything but timings, timestamps and the resume bookkeeping."""
    skip = {
        "train_seconds",
        "eval_seconds",
        "optimizer_seconds",
        "wall_seconds",
        "peak_memory_bytes",
        "started_at",
        "finished_at",
        "resumed_at_step",
    }
    assert {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def _curves(result) -> list[tuple]:
    """Every curve point but the training seconds at each evaluation (a timing)."""
    return sorted(
        (c["split"], c["name"], c["step"], c["value"])
        for c in result.curves
        if (c["split"], c["name"]) != ("train", "seconds")
    )


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
@pytest.mark.parametrize("task", TASKS)
def test_resume_in_a_new_process_gives_the_identical_record(task, interrupted, tmp_path):
    out, specs = interrupted
    spec = specs[task]
    assert ckpt.saved_steps(out, spec.run_id) == [STOP_AT]
    assert not records.is_finished(out, spec.run_id)
    resumed = run(spec, out_dir=out)
    whole = run(spec, out_dir=tmp_path)  # uninterrupted, same process as the resume
    assert resumed.row["resumed_at_step"] == STOP_AT and whole.row["resumed_at_step"] == 0
    assert resumed.row["status"] == "ok" and resumed.row["steps_done"] == STEPS
    _same_record(resumed.row, whole.row)
    assert _curves(resumed) == _curves(whole)
    assert len(resumed.curve("train", "loss")) == STEPS
    # The finished run's checkpoints are gone; its record is the one on disk.
    assert ckpt.saved_steps(out, spec.run_id) == []
    assert records.read_runs_file(records.run_path(out, spec.run_id))["run_id"] == spec.run_id


SIGKILL_SELF = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from harness.run import checkpoint as ckpt
    from harness.run.checkpoint import CheckpointPolicy
    from harness.run.loop import run
    from harness.spec import RunSpec

    real_save = ckpt.save
    def save(path, state):
        real_save(path, state)
        if state["step"] >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a preempted node would
    ckpt.save = save
    run(RunSpec.from_json(sys.argv[2]), out_dir=sys.argv[1], checkpoints=CheckpointPolicy(at_steps={10, 20}))
""")


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_sigkill_mid_run_then_resume_in_a_new_process(tmp_path):
    spec = _spec("tabular_mlp", "signum")
    script = tmp_path / "kill.py"
    script.write_text(SIGKILL_SELF)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(script), str(out), spec.to_json(), "20"],
        env=_env(),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert ckpt.saved_steps(out, spec.run_id) == [10, 20]  # killed after step 20's was written, before 10's went
    assert not records.is_finished(out, spec.run_id)
    resumed = run(spec, out_dir=out)
    whole = run(spec, out_dir=tmp_path / "whole")
    assert resumed.row["resumed_at_step"] == 20
    _same_record(resumed.row, whole.row)
    assert _curves(resumed) == _curves(whole)
    assert not (out / "checkpoints").exists()


@pytest.mark.parametrize("seconds_per_reading, expect_saves", [(0.0, False), (10.0, True)])
def test_checkpoints_on_a_wall_clock_cadence(tmp_path, monkeypatch, seconds_per_reading, expect_saves):
    # A fake clock: frozen, no checkpoint ever falls due; 10 s per reading with a 5 s cadence, one
    # falls due at every step whose losses the loop has verified (here the evals, every 20 steps), but
    # not at the last step (the run is about to finish).
    import harness.run.loop as loop

    ticks = iter(range(10**6))
    monkeypatch.setattr(loop.time, "monotonic", lambda: seconds_per_reading * next(ticks))
    saved = []
    real_save = ckpt.save
    monkeypatch.setattr(ckpt, "save", lambda path, state: saved.append(state["step"]) or real_save(path, state))
    spec = _spec("tabular_mlp", "adamw").with_(steps=60)
    res = run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(every_seconds=5))
    assert res.row["status"] == "ok"
    if not expect_saves:
        assert saved == []
    else:
        assert saved == [20, 40]
    assert ckpt.saved_steps(tmp_path, spec.run_id) == []  # deleted when the run finished


def test_kept_checkpoints_survive_the_run(tmp_path):
    spec = _spec("tabular_mlp", "signum")
    run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps={5}, keep_steps={12}))
    assert ckpt.saved_steps(tmp_path, spec.run_id) == [12]
    loaded = ckpt.load(ckpt.path_for(tmp_path, spec.run_id, 12))
    assert loaded["step"] == 12 and loaded["run_id"] == spec.run_id and loaded["optimizer_name"] == "signum"
    assert len(loaded["loop"]["losses"]) == 12
    # Re-running the finished spec skips it and leaves the kept checkpoint alone.
    assert run(spec, out_dir=tmp_path).skipped
    assert ckpt.saved_steps(tmp_path, spec.run_id) == [12]


def test_a_diverged_run_never_checkpoints_its_diverged_state(tmp_path):
    spec, _ = resolve(task="tabular_mlp", optimizer="sgd", size="tiny", steps=40, hparams={"lr": 1e6})
    saved = []
    real_save = ckpt.save
    ckpt_save = lambda path, state: saved.append(state["step"]) or real_save(path, state)  # noqa: E731
    import harness.run.checkpoint as module

    old, module.save = module.save, ckpt_save
    try:
        res = run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps=set(range(1, 40))))
    finally:
        module.save = old
    assert res.row["status"] == "diverged"
    for step in saved:
        loaded_losses = [v for v in res.curve("train", "loss")[:step]]
        assert all(math.isfinite(v) for v in loaded_losses), step
    assert not (tmp_path / "checkpoints").exists()


def test_a_corrupt_checkpoint_is_moved_aside_and_the_previous_one_used(tmp_path):
    spec = _spec("tabular_mlp", "signum")
    whole = run(spec, out_dir=tmp_path / "whole")
    out = tmp_path / "out"
    run(spec, out_dir=out, checkpoints=CheckpointPolicy(keep_steps={10, 20}))
    records.run_path(out, spec.run_id).unlink()  # as if the run had been killed after step 20
    newest = ckpt.path_for(out, spec.run_id, 20)
    newest.write_bytes(newest.read_bytes()[:100])  # cut short
    with pytest.warns(UserWarning, match="unreadable checkpoint moved aside"):
        resumed = run(spec, out_dir=out)
    assert resumed.row["resumed_at_step"] == 10
    _same_record(resumed.row, whole.row)
    assert not (out / "checkpoints").exists()  # the corrupt file went with the others


def test_checkpoint_files_are_atomic_and_restore_every_rng(tmp_path):
    path = tmp_path / "c" / "step-3.pt"
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ckpt.capture_rng()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.save(path, {"rng": state, "step": 3})
    assert [p.name for p in path.parent.iterdir()] == ["step-3.pt"]
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    ckpt.restore_rng(ckpt.load(path)["rng"])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]

    # A failed write leaves the previous file and no temporary file behind.
    class Boom(Exception):
        pass

    real = torch.save

    def failing(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise Boom

    torch.save = failing
    try:
        with pytest.raises(Boom):
            ckpt.save(path, {"rng": state, "step": 4})
    finally:
        torch.save = real
    assert [p.name for p in path.parent.iterdir()] == ["step-3.pt"] and ckpt.load(path)["step"] == 3
    path.write_bytes(json.dumps({"not": "a checkpoint"}).encode())
    with pytest.raises(ValueError, match="not an optbench checkpoint"):
        ckpt.load(path)


def test_policy_validates():
    with pytest.raises(ValueError, match="every_seconds"):
        CheckpointPolicy(every_seconds=0)
    policy = CheckpointPolicy(at_steps=[3], keep_steps=(7,))
    assert policy.wants(3) and policy.wants(7) and not policy.wants(4)


# ------------------------------------------------------------------------------------ branching


def _shared(spec_child, parent_name: str):
    """The parent's spec: same task, data, seed, budget; the child's hyperparameters that the parent
    has (the paper's protocol: SoftX starts from X tuned with the same shared hyperparameters)."""
    import optimizers

    parent_defaults = optimizers.REGISTRY[parent_name].defaults
    hp = {k: v for k, v in spec_child.hparams.items() if k in parent_defaults}
    return spec_child.with_(optimizer=parent_name, hparams=optimizers.REGISTRY[parent_name].resolve(hp))


@pytest.mark.parametrize(
    "child, task", [("softsignum", "tabular_mlp"), ("softmuon", "llm"), ("hardswitchsign", "cifar_resnet")]
)
def test_a_branched_run_equals_the_unbranched_run(tmp_path, child, task):
    import optimizers
    from optimizers._switch import sign_phase_steps

    spec, _ = resolve(
        task=task,
        optimizer=child,
        size="tiny",
        steps=STEPS,
        seed=2,
        hparams={"alpha_sign": 0.6, "lr": 3e-3 if child != "softmuon" else 0.02},
    )
    parent_name = optimizers.REGISTRY[child].branch_from
    parent = _shared(spec, parent_name)
    s = sign_phase_steps(0.6, STEPS)
    run(parent, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps={s}))
    branch = ckpt.path_for(tmp_path, parent.run_id, s)
    branched = run(spec, out_dir=tmp_path, branch_from=branch)
    scratch = run(spec)
    assert branched.row["branched_from"] == parent.run_id and branched.row["branch_step"] == s
    # Its own run_id, naming the parent: the same result may differ in the last bits off CPU.
    assert scratch.row["run_id"] == spec.run_id != branched.row["run_id"]
    assert branched.row["run_id"] == spec.with_(branched_from=parent.run_id, branch_step=s).run_id
    for key in (
        "status",
        "steps_done",
        "val_metric",
        "test_metric",
        "best_val_metric",
        "final_train_loss",
        "objective",
        "metrics",
    ):
        assert branched.row[key] == scratch.row[key], key
    # Train/val/test curves are identical; before S they are the parent's (its optimizer
    # diagnostics before S, SoftX's own "opt" samples, are not part of a branch).
    keep = {"train", "val", "test"}
    assert [c for c in _curves(branched) if c[0] in keep] == [c for c in _curves(scratch) if c[0] in keep]
    # The branch samples its own diagnostics after S (the parent, a sign method, had none to log).
    if child != "hardswitchsign":
        taus = [c for c in branched.curves if c["split"] == "opt" and c["name"] == "tau"]
        # (~100 samples per run: here every step after S, not only the two eval steps)
        assert len({c["step"] for c in taus if c["step"] > s}) == STEPS - s, taus
    # The kept parent checkpoint is still there for the next branch; the child left none.
    assert ckpt.saved_steps(tmp_path, parent.run_id) == [s] and ckpt.saved_steps(tmp_path, spec.run_id) == []


def test_branching_refuses_a_parent_with_other_data_or_budget(tmp_path):
    from harness.errors import UserError

    spec, _ = resolve(task="tabular_mlp", optimizer="softsignum", size="tiny", steps=STEPS, seed=2)
    parent = _shared(spec, "signum")
    run(parent.with_(seed=5), out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps={10}))
    with pytest.raises(UserError, match="differs in seed"):
        run(spec, out_dir=tmp_path, branch_from=ckpt.path_for(tmp_path, parent.with_(seed=5).run_id, 10))
    # An optimizer that is not the parent before a switch says so (AdamW from a Signum checkpoint).
    adamw, _ = resolve(task="tabular_mlp", optimizer="adamw", size="tiny", steps=STEPS, seed=5)
    with pytest.raises(UserError, match="adamw is no other optimizer before a switch"):
        run(adamw, out_dir=tmp_path, branch_from=ckpt.path_for(tmp_path, parent.with_(seed=5).run_id, 10))


def _cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=str(ROOT),
        env=env or _env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # minutes on 2 cores: CI runs it with the slow tests (make test-slow)
def test_branch_through_the_cli(tmp_path):
    out = str(tmp_path / "out")
    common = [
        "--task",
        "tabular_mlp",
        "--size",
        "tiny",
        "--steps",
        "30",
        "--seed",
        "4",
        "--out",
        out,
        "--set",
        "lr=3e-3",
    ]
    parent = _cli("run", "--optimizer", "signum", "--keep-checkpoint", "27", *common)
    assert parent.returncode == 0, parent.stderr
    (folder,) = (tmp_path / "out" / "checkpoints").iterdir()
    point = folder / "step-27.pt"
    assert point.is_file()
    child = _cli("run", "--optimizer", "softsignum", "--branch-from", str(point), *common)
    assert child.returncode == 0, child.stderr
    df = records.read_runs(out)
    soft = df[df["optimizer"] == "softsignum"].iloc[0]
    assert soft["branched_from"] == folder.name and soft["branch_step"] == 27
    # (That a branch equals the run from scratch is tested in-process above.)
    bad = _cli(
        "run", "--optimizer", "signum", "--keep-checkpoint", "31", "--branch-from", str(tmp_path / "no.pt"), *common
    )
    assert bad.returncode == 2 and "steps 1..30" in bad.stderr
