"""The delayed-gradient condition on the run path (issue 22 items 1-2, what tests/test_delay.py does not
cover at the module level): delay 0 is the run of before (same run_ids, bit-identical records, checked
against the harness as it was before the condition was wired in); a delayed run killed after a
checkpoint resumes to the uninterrupted record; SoftX branches from X under the same delay only; the
ring counts as optimizer state; ``optbench run --delay``."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
import torch

from harness.cli import main
from harness.results import store as records
from harness.run import checkpoint as ckpt
from harness.run.checkpoint import CheckpointPolicy
from harness.run.delay import GradientDelay
from harness.run.lineage import BranchRefused, switch_step
from harness.run.loop import run
from harness.run.resolve import resolve
from harness.spec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
# The commit before the delay, the wsd schedules and the budgets reached the run path.
BEFORE = "68179788155a02e2a8e5bff1580c86b5dacb5093"

OUTCOME = (
    "run_id",
    "spec",
    "status",
    "steps",
    "steps_done",
    "val_metric",
    "test_metric",
    "best_val_metric",
    "best_val_step",
    "objective",
    "steps_to_target",
    "final_train_loss",
    "metrics",
    "optimizer_state_bytes",
    "param_count",
)


def _curves(result_or_list) -> list[tuple]:
    """Every curve point but the training seconds at each evaluation (a timing, new since BEFORE)."""
    curves = getattr(result_or_list, "curves", result_or_list)
    return sorted(
        (c["split"], c["name"], c["step"], c["value"])
        for c in curves
        if (c["split"], c["name"]) != ("train", "seconds")
    )


def _same_outcome(a: dict, b: dict, keys=OUTCOME) -> None:
    for key in keys:
        x, y = a[key], b[key]
        assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), (key, x, y)


def _spec(task: str, optimizer: str, steps: int, delay: int = 0, **hparams) -> RunSpec:
    spec, _ = resolve(
        task=task, optimizer=optimizer, size="tiny", steps=steps, seed=2, delay=delay, hparams=hparams or None
    )
    return spec


# ---------------------------------------------------------------------------- delay 0: as before

BEFORE_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(1)
    import harness
    assert harness.__file__.startswith(sys.argv[1]), harness.__file__  # the old tree, not this checkout
    from harness.run.loop import resolve, run
    out = []
    for task, optimizer, steps, hparams in json.loads(sys.argv[2]):
        spec, _ = resolve(task=task, optimizer=optimizer, size="tiny", steps=steps, seed=2, hparams=hparams or None)
        res = run(spec)
        out.append({"row": {k: res.row[k] for k in json.loads(sys.argv[3])}, "curves": res.curves})
    print(json.dumps(out))
""")

BEFORE_CASES = [("tabular_mlp", "adamw", 40, {}), ("tabular_mlp", "softsignum", 30, {"alpha_sign": 0.5})]


def _git(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=str(ROOT), capture_output=True, timeout=60, **kw)


def test_runs_at_delay_0_are_the_runs_of_before(tmp_path):
    """The same specs run by the harness of commit BEFORE (in a subprocess, from ``git archive``) and by
    this one: the same run_ids and bit-identical outcomes and curves, at delay 0 and without the field.
    Skipped where the history is not there, or once a release that changes results (a new result epoch,
    ``harness.results.versions``) lies between BEFORE and now: until then any code change (a refactor, a
    reformat, a split module) must leave these records bit-identical."""
    if shutil.which("git") is None or _git("cat-file", "-e", f"{BEFORE}^{{commit}}").returncode != 0:
        pytest.skip("needs the git history (commit BEFORE)")
    from harness.results import versions

    then = _git("show", f"{BEFORE}:pyproject.toml", text=True).stdout
    then_version = next(line.split('"')[1] for line in then.splitlines() if line.startswith("version = "))
    if versions.result_epoch(then_version) != versions.result_epoch(versions.package_version()):
        pytest.skip(f"a change to results is declared between {then_version} (BEFORE) and now (CHANGELOG.md)")
    archive = _git("archive", "--format=tar", BEFORE, "harness", "tasks", "optimizers")
    assert archive.returncode == 0, archive.stderr
    old = tmp_path / "before"
    old.mkdir()
    (tmp_path / "before.tar").write_bytes(archive.stdout)
    with tarfile.open(tmp_path / "before.tar") as tar:
        tar.extractall(old, filter="data")
    env = dict(os.environ, PYTHONPATH=str(old), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-c", BEFORE_SCRIPT, str(old), json.dumps(BEFORE_CASES), json.dumps(OUTCOME)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = json.loads(proc.stdout)
    for (task, optimizer, steps, hparams), then in zip(BEFORE_CASES, before):
        spec = _spec(task, optimizer, steps, **hparams)
        assert "delay" not in spec.to_json() and spec.with_(delay=0).run_id == spec.run_id
        for now in (run(spec), run(spec.with_(delay=0))):
            _same_outcome(now.row, then["row"])
            assert _curves(now) == _curves(then["curves"])


def test_delay_0_builds_no_ring_and_checkpoints_none(tmp_path, monkeypatch):
    def never(self):
        raise AssertionError("GradientDelay.apply called at delay 0")

    monkeypatch.setattr(GradientDelay, "apply", never)
    spec = _spec("tabular_mlp", "signum", 30)
    saved = []
    real_save = ckpt.save
    monkeypatch.setattr(ckpt, "save", lambda path, state: saved.append(state) or real_save(path, state))
    assert run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps={10})).row["status"] == "ok"
    assert [s["step"] for s in saved] == [10] and "delay" not in saved[0]


# ----------------------------------------------------------------- resume: killed after a checkpoint


class Stop(Exception):
    pass


@pytest.mark.parametrize(
    "task, optimizer, d, stop",
    [
        ("tabular_mlp", "adamw", 1, 7),
        ("tabular_mlp", "signum", 2, 1),  # inside the start-up zeros
        ("tabular_mlp", "softsignum", 1, 13),  # the resume crosses the switch at 15
        ("lstm_lm", "muon", 1, 11),
    ],
)
def test_a_resumed_delayed_run_equals_the_uninterrupted_one(tmp_path, monkeypatch, task, optimizer, d, stop):
    spec = _spec(task, optimizer, 30, delay=d, **({"alpha_sign": 0.5} if optimizer == "softsignum" else {}))
    whole = run(spec)
    real_save = ckpt.save

    def save_then_die(path, state):
        real_save(path, state)
        raise Stop

    monkeypatch.setattr(ckpt, "save", save_then_die)
    with pytest.raises(Stop):
        run(spec, out_dir=tmp_path, checkpoints=CheckpointPolicy(at_steps={stop}))
    monkeypatch.setattr(ckpt, "save", real_save)
    saved = ckpt.load(ckpt.path_for(tmp_path, spec.run_id, stop))
    assert saved["delay"]["delay"] == d and saved["delay"]["steps"] == stop
    resumed = run(spec, out_dir=tmp_path)
    assert resumed.row["resumed_at_step"] == stop
    _same_outcome(resumed.row, whole.row)
    assert _curves(resumed) == _curves(whole)
    # the delay mattered: the synchronous run is another result
    assert run(spec.with_(delay=0)).row["final_train_loss"] != whole.row["final_train_loss"]


KILLED = textwrap.dedent("""
    import os, signal, sys, torch
    torch.set_num_threads(1)
    from harness.run import checkpoint as ckpt
    from harness.run.checkpoint import CheckpointPolicy
    from harness.run.loop import run
    from harness.spec import RunSpec

    real_save = ckpt.save
    def save(path, state):
        real_save(path, state)
        os.kill(os.getpid(), signal.SIGKILL)
    ckpt.save = save
    run(RunSpec.from_json(sys.argv[2]), out_dir=sys.argv[1], checkpoints=CheckpointPolicy(at_steps={int(sys.argv[3])}))
""")


@pytest.mark.slow  # a second interpreter; the in-process resume above is the default guard
def test_a_delayed_run_killed_after_a_checkpoint_resumes_in_a_new_process(tmp_path):
    spec = _spec("tabular_mlp", "adamw", 40, delay=1)
    env = dict(
        os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILLED, str(tmp_path), spec.to_json(), "23"],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert ckpt.saved_steps(tmp_path, spec.run_id) == [23] and not records.is_finished(tmp_path, spec.run_id)
    resumed = run(spec, out_dir=tmp_path)
    whole = run(spec)
    assert resumed.row["resumed_at_step"] == 23
    _same_outcome(resumed.row, whole.row)
    assert _curves(resumed) == _curves(whole)


# ------------------------------------------------------------------------------- SoftX under delay


def _parent_of(child: RunSpec, parent_name: str, **changes) -> RunSpec:
    import optimizers

    defaults = optimizers.REGISTRY[parent_name].defaults
    hp = optimizers.REGISTRY[parent_name].resolve({k: v for k, v in child.hparams.items() if k in defaults})
    return child.with_(optimizer=parent_name, hparams=hp, **changes)


@pytest.mark.parametrize("child_name, parent_name", [("softsignum", "signum"), ("softmuon", "muon")])
def test_softx_branched_under_delay_equals_it_from_scratch(tmp_path, child_name, parent_name):
    child = _spec("tabular_mlp", child_name, 30, delay=1, alpha_sign=0.6)
    parent = _parent_of(child, parent_name)
    s = switch_step(child)
    run(parent, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps={s}))
    point = ckpt.path_for(tmp_path, parent.run_id, s)
    assert ckpt.load(point)["delay"]["steps"] == s
    branched = run(child, out_dir=tmp_path, branch_from=point)
    scratch = run(child)
    assert (branched.row["branched_from"], branched.row["branch_step"]) == (parent.run_id, s)
    _same_outcome(branched.row, scratch.row, keys=OUTCOME[2:])
    keep = {"train", "val", "test"}  # the sign-method parent logged no diagnostics before S
    assert [c for c in _curves(branched) if c[0] in keep] == [c for c in _curves(scratch) if c[0] in keep]


def test_softx_refuses_a_parent_of_another_delay_or_without_the_ring(tmp_path):
    child = _spec("tabular_mlp", "softsignum", 30, delay=1, alpha_sign=0.6)
    s = switch_step(child)
    for parent in (_parent_of(child, "signum", delay=0), _parent_of(child, "signum", delay=2)):
        run(parent, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps={s}))
        with pytest.raises(BranchRefused, match=rf"differs in delay: delay \({parent.delay} vs 1\)"):
            run(child, out_dir=tmp_path, branch_from=ckpt.path_for(tmp_path, parent.run_id, s))
    # a checkpoint of the right delay whose ring was removed (written by hand) is refused too
    parent = _parent_of(child, "signum")
    run(parent, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps={s}))
    loaded = ckpt.load(ckpt.path_for(tmp_path, parent.run_id, s))
    del loaded["delay"]
    with pytest.raises(BranchRefused, match="holds no gradient-delay state"):
        run(child, out_dir=tmp_path, branch_from=loaded)
    assert not records.is_finished(tmp_path, child.with_(branched_from=parent.run_id, branch_step=s).run_id)


# -------------------------------------------------------------------------- state bytes and the CLI


@pytest.mark.parametrize("optimizer", ["adamw", "signum"])
def test_the_ring_counts_as_optimizer_state(optimizer):
    rows = {d: run(_spec("tabular_mlp", optimizer, 10, delay=d)).row for d in (0, 2)}
    ring = 2 * rows[0]["param_count"] * torch.tensor(0.0).element_size()  # two fp32 gradients per parameter
    assert rows[2]["optimizer_state_bytes"] - rows[0]["optimizer_state_bytes"] == ring


def test_delay_through_the_cli(tmp_path, capsys):
    out = tmp_path / "out"
    common = [
        "run",
        "--task",
        "tabular_mlp",
        "--optimizer",
        "adamw",
        "--steps",
        "20",
        "--seed",
        "2",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main([*common, "--delay", "1"]) == 0, capsys.readouterr().err
    assert "delay=1" in capsys.readouterr().out
    row = records.read_runs(out).iloc[0]
    assert row["run_id"] == _spec("tabular_mlp", "adamw", 20, delay=1).run_id
    assert int(row["delay"]) == 1
    assert main([*common, "--delay", "-1"]) == 2
    assert "invalid delay: -1 (must be an integer >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*common, "--delay", "1.5"])
    assert exc.value.code == 2 and "--delay: invalid int value: '1.5'" in capsys.readouterr().err
    assert len(records.read_runs(out)) == 1
