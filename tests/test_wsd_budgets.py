"""WSD schedules and budget branches on the run path (issue 21 items 1-3): a run asks for wsd over any
task's schedule; a budget run (T = round(b K) steps) branched from the full run's checkpoint at its
decay start D(T) equals, bit for bit on CPU, the same spec run from scratch (every task, tiny size);
SoftX at a budget branches from X's stable phase; what cannot branch is refused naming why; the CLI
flags and their exit-2 messages."""

from __future__ import annotations

import math

import pytest

import tasks
from harness.cli import main
from harness.errors import UserError
from harness.results import store as records
from harness.run import checkpoint as ckpt
from harness.run import schedules
from harness.run.checkpoint import CheckpointPolicy
from harness.run.lineage import BranchRefused, branch_step, budget_keep_steps, parent_spec
from harness.run.loop import run
from harness.run.resolve import resolve
from harness.spec import RunSpec

WSD = {"kind": "wsd", "decay_fraction": 0.25}

# Outcome columns a branched run must share with the run from scratch (its ids and timings aside).
SAME = (
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


def _curves(result, splits=("train", "val", "test", "opt")) -> list[tuple]:
    """Every curve point but the training seconds (a timing)."""
    return sorted(
        (c["split"], c["name"], c["step"], c["value"])
        for c in result.curves
        if c["split"] in splits and (c["split"], c["name"]) != ("train", "seconds")
    )


def assert_same_run(branched, scratch, splits=("train", "val", "test", "opt")) -> None:
    for key in SAME:
        a, b = branched.row[key], scratch.row[key]
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), (key, a, b)
    assert _curves(branched, splits) == _curves(scratch, splits)


def _spec(task: str, optimizer: str, steps: int, budget: float = 1.0, schedule=None, **kw) -> RunSpec:
    spec, _ = resolve(
        task=task,
        optimizer=optimizer,
        size="tiny",
        steps=steps,
        seed=1,
        budget=budget,
        schedule=WSD if schedule is None else schedule,
        **kw,
    )
    return spec


# ------------------------------------------------------------------------------------ the schedule


def test_a_wsd_override_is_completed_over_the_tasks_schedule_and_names_the_run():
    plain = _spec("tabular_mlp", "adamw", 80, schedule={})
    wsd = _spec("tabular_mlp", "adamw", 80, schedule={"kind": "wsd", "decay_fraction": 0.2, "decay_shape": "sqrt"})
    # the task's warmup (a fraction of the full budget) and floor are kept; the spec holds the whole schedule
    assert wsd.schedule == {
        "kind": "wsd",
        "warmup_steps": round(0.05 * 80),
        "min_lr_ratio": 0.0,
        "decay_fraction": 0.2,
        "decay_shape": "sqrt",
    }
    assert plain.schedule == {} and "schedule" not in plain.to_json() and wsd.run_id != plain.run_id
    # asking for the task's own schedule by name is the same run; budget 1.0 is no budget
    assert _spec("tabular_mlp", "adamw", 80, schedule={"kind": "cosine"}).run_id == plain.run_id
    assert _spec("tabular_mlp", "adamw", 80, budget=1.0, schedule={}).run_id == plain.run_id
    assert RunSpec.from_json(wsd.to_json()) == wsd


def test_the_loop_trains_with_the_wsd_factors_over_the_budgets_steps():
    spec = _spec(
        "tabular_mlp",
        "adamw",
        80,
        budget=0.5,
        schedule={"kind": "wsd", "decay_fraction": 0.5, "decay_shape": "sqrt", "min_lr_ratio": 0.1},
    )
    res = run(spec)
    sched = schedules.Schedule.from_mapping(spec.schedule)
    lr = spec.hparams["lr"]
    logged = {c["step"]: c["value"] for c in res.curves if (c["split"], c["name"]) == ("train", "lr")}
    assert spec.train_steps == 40 and res.row["steps_done"] == 40 and sorted(logged) == [20, 40]
    # the LR logged at eval step n is the one step n - 1 (0-based) trained with: at 20 still the peak
    # (the decay of the 40 steps starts at 20), at 40 the floor
    assert logged == {n: lr * schedules.lr_factor(n - 1, 40, sched) for n in (20, 40)}
    assert logged[20] == lr and logged[40] == pytest.approx(0.1 * lr)


# -------------------------------------------------------- branch = scratch, every task at tiny size

# (task, optimizer, K, budgets, extra): each tiny; an eval falls before some branch point where the task
# evaluates often enough, so the parent's curves travel into the branch; one case under a gradient delay.
CASES = {
    "tabular_mlp": ("adamw", 80, [0.25, 0.5, 0.75], {"schedule": {**WSD, "decay_shape": "sqrt"}}),
    "gnn_graphland": ("signum", 40, [0.5], {}),
    "lstm_lm": ("muon", 30, [0.5], {"delay": 1}),
    "llm": ("adamw", 30, [0.5], {}),
    "cifar_resnet": ("sgd", 16, [0.5], {}),
}


def test_every_task_has_a_case():
    assert set(CASES) == set(tasks.REGISTRY)


@pytest.mark.parametrize("task", sorted(CASES))
def test_a_budget_run_branched_from_the_full_run_equals_it_from_scratch(task, tmp_path):
    optimizer, steps, budgets, extra = CASES[task]
    full = _spec(task, optimizer, steps, **extra)
    keep = budget_keep_steps(full, budgets)
    run(full, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps=keep))
    assert set(ckpt.saved_steps(tmp_path, full.run_id)) == keep
    for budget in budgets:
        child = _spec(task, optimizer, steps, budget=budget, **extra)
        assert parent_spec(child) == full.with_(trial=None)
        step = branch_step(child, full)
        assert step == schedules.decay_start(child.train_steps, schedules.Schedule.from_mapping(full.schedule))
        branched = run(child, out_dir=tmp_path, branch_from=ckpt.path_for(tmp_path, full.run_id, step))
        scratch = run(child)
        assert branched.row["branched_from"] == full.run_id and branched.row["branch_step"] == step
        assert branched.row["run_id"] == child.with_(branched_from=full.run_id, branch_step=step).run_id
        assert scratch.row["run_id"] == child.run_id != full.run_id
        assert scratch.row["steps_done"] == child.train_steps == schedules.budget_steps(steps, budget) < steps
        assert_same_run(branched, scratch)
        # a real decay branch: its last step trained at the decayed LR, where the full run was at the peak
        t, lr, sched = child.train_steps, child.hparams["lr"], schedules.Schedule.from_mapping(full.schedule)
        last = [c["value"] for c in branched.curves if (c["split"], c["name"], c["step"]) == ("train", "lr", t)]
        assert last == [lr * schedules.lr_factor(t - 1, t, sched)]
        assert last[0] < lr == lr * schedules.lr_factor(t - 1, steps, sched)
    # the kept branch points outlive the branches; the children left none
    assert set(ckpt.saved_steps(tmp_path, full.run_id)) == keep


# -------------------------------------------------------------------------------- SoftX under WSD


@pytest.mark.parametrize("child_name, parent_name", [("softsignum", "signum"), ("softmuon", "muon")])
@pytest.mark.parametrize("alpha", [0.9, 0.5])  # switch after / before the budget run's decay start
def test_softx_budget_runs_branch_from_xs_stable_phase(child_name, parent_name, alpha, tmp_path):
    """SoftX keeps its switch S(T) = floor(alpha T) under wsd. At budget b it starts from X's full run
    after min(S(T), D(T)) steps: X's stable phase, where X's full run and SoftX's T-step run take the
    same steps. With alpha 0.9 the soft phase lies inside the decay window (S(30) = 27 > D(30) = 22)."""
    steps, lr = 60, 3e-3 if child_name == "softsignum" else 0.02
    child = _spec("tabular_mlp", child_name, steps, budget=0.5, hparams={"alpha_sign": alpha, "lr": lr})
    parent = parent_spec(child)
    assert parent.optimizer == parent_name and parent.budget == 1.0 and parent.hparams["lr"] == lr
    s, d = math.floor(alpha * 30 + 1e-9), 30 - 8
    step = branch_step(child, parent)
    assert step == min(s, d) == (22 if alpha == 0.9 else 15)
    full_child = child.with_(budget=1.0)
    keep = {step, branch_step(full_child, parent)}  # the full SoftX run branches at its switch S(K)
    run(parent, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps=keep))
    branched = run(child, out_dir=tmp_path, branch_from=ckpt.path_for(tmp_path, parent.run_id, step))
    assert (branched.row["branched_from"], branched.row["branch_step"]) == (parent.run_id, step)
    # the parent (a sign method) had no diagnostics to log: compare the train, val and test curves
    assert_same_run(branched, run(child), splits=("train", "val", "test"))
    # and the full SoftX run under wsd, branched from X at its switch as before, equals it from scratch
    whole = run(
        full_child,
        out_dir=tmp_path,
        branch_from=ckpt.path_for(tmp_path, parent.run_id, branch_step(full_child, parent)),
    )
    assert whole.row["branch_step"] == math.floor(alpha * steps + 1e-9)
    assert_same_run(whole, run(full_child), splits=("train", "val", "test"))


def test_softx_budget_runs_do_not_branch_from_their_own_full_run(tmp_path):
    child = _spec("tabular_mlp", "softsignum", 60, budget=0.5)
    with pytest.raises(BranchRefused, match="branches from signum's run .*not from a longer softsignum run"):
        branch_step(child, child.with_(budget=1.0))


# ---------------------------------------------------------------------------------------- refused


def _full_with_checkpoint(tmp_path, **kw):
    full = _spec("tabular_mlp", "adamw", 60, **kw)
    run(full, out_dir=tmp_path, checkpoints=CheckpointPolicy(keep_steps=budget_keep_steps(full, [0.5])))
    return full, ckpt.path_for(tmp_path, full.run_id, 22)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"schedule": {**WSD, "decay_shape": "sqrt"}}, r"differs in schedule"),
        ({"hparams": {"lr": 0.5}}, r"the parent trained with lr="),
        ({"delay": 1}, r"differs in delay"),
        ({"seed": 7}, r"differs in seed"),
    ],
)
def test_a_budget_branch_refuses_a_parent_that_is_not_its_first_steps(tmp_path, change, message):
    _, point = _full_with_checkpoint(tmp_path)
    base = dict(task="tabular_mlp", optimizer="adamw", size="tiny", steps=60, seed=1, budget=0.5, schedule=WSD)
    base.update(change)
    child, _ = resolve(**base)
    with pytest.raises(BranchRefused, match=message):
        run(child, out_dir=tmp_path, branch_from=point)
    assert not (tmp_path / "runs" / f"{child.run_id}.parquet").exists()


def test_a_budget_branch_refuses_the_wrong_step_a_shorter_parent_and_a_schedule_without_decay(tmp_path):
    full, point = _full_with_checkpoint(tmp_path)
    other = _spec("tabular_mlp", "adamw", 60, budget=0.75)  # T = 45: branches at 45 - 11 = 34, not 22
    with pytest.raises(
        BranchRefused, match="checkpoint is at step 22, but a budget-0.75 run of 45 steps branches at step 34"
    ):
        run(other, out_dir=tmp_path, branch_from=point)
    with pytest.raises(BranchRefused, match="at budget 0.25 cannot start a adamw run at budget 0.5"):
        branch_step(_spec("tabular_mlp", "adamw", 60, budget=0.5), full.with_(budget=0.25))
    cosine = _spec("tabular_mlp", "adamw", 60, budget=0.5, schedule={})
    with pytest.raises(BranchRefused, match="only under a wsd schedule"):
        branch_step(cosine, cosine.with_(budget=1.0))
    with pytest.raises(BranchRefused, match="branches from nothing"):
        parent_spec(full)


def test_keep_steps_are_the_decay_starts_and_bad_budgets_are_named():
    full = _spec("tabular_mlp", "adamw", 100)
    assert budget_keep_steps(full, [0.25, 0.5]) == {25 - 6, 50 - 13}
    with pytest.raises(UserError, match="this run has the task's own schedule"):
        budget_keep_steps(full.with_(schedule={}), [0.5])
    with pytest.raises(UserError, match="budget 1 is not below this run's budget 1"):
        budget_keep_steps(full, [1.0])
    with pytest.raises(UserError, match=r"budget 0.05 \(5 of 100 steps\)"):
        budget_keep_steps(full, [0.05])
    with pytest.raises(UserError, match="decays from its first step"):
        budget_keep_steps(full.with_(schedule={**full.schedule, "warmup_steps": 0, "decay_fraction": 1.0}), [0.5])


# -------------------------------------------------------------------------------------------- CLI


def _run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(
        [
            "run",
            "--task",
            "tabular_mlp",
            "--optimizer",
            "adamw",
            "--steps",
            "60",
            "--seed",
            "1",
            "--no-progress",
            "--checkpoint-every",
            "0",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def test_budget_branches_through_the_cli(tmp_path, capsys):
    out = tmp_path / "out"
    wsd = ["--out", str(out), "--schedule", "wsd", "--decay-fraction", "0.25"]
    code, _, err = _run_cli(capsys, *wsd, "--keep-budgets", "0.5,0.25")
    assert code == 0, err
    full = _spec("tabular_mlp", "adamw", 60)
    assert ckpt.saved_steps(out, full.run_id) == [11, 22]
    # the parent named by its results folder, by its run_id, or by the checkpoint file
    for budget, source in (("0.5", str(out)), ("0.25", full.run_id)):
        code, stdout, err = _run_cli(capsys, *wsd, "--budget", budget, "--branch-from", source)
        assert code == 0, err
        assert f"budget={budget}" in stdout and "starting from" in err
    df = records.read_runs(out).set_index("budget")
    assert df.loc[0.5, "branched_from"] == full.run_id and df.loc[0.5, "branch_step"] == 22
    assert df.loc[0.25, "branch_step"] == 11 and df.loc[0.25, "steps_done"] == 15


def test_softx_budget_runs_find_xs_run_in_the_results_folder(tmp_path, capsys):
    out = tmp_path / "out"
    wsd = ["--out", str(out), "--schedule", "wsd", "--decay-fraction", "0.25", "--set", "lr=3e-3"]
    code, _, err = main_run(capsys, "signum", *wsd, "--keep-budgets", "0.5", "--keep-checkpoint", "54")
    assert code == 0, err
    for budget, step in (("0.5", 22), ("1", 54)):  # at D(30) = 22 <= S(30) = 27; the full run at S(60) = 54
        code, _, err = main_run(
            capsys, "softsignum", *wsd, "--set", "alpha_sign=0.9", "--budget", budget, "--branch-from", str(out)
        )
        assert code == 0 and f"steps after {step} only" in err, err
    soft = records.read_runs(out).query("optimizer == 'softsignum'").set_index("budget")
    assert soft.loc[0.5, "branch_step"] == 22 and soft.loc[1.0, "branch_step"] == 54
    assert set(soft["branched_from"]) == {records.read_runs(out).query("optimizer == 'signum'")["run_id"].item()}


def main_run(capsys, optimizer: str, *args: str) -> tuple[int, str, str]:
    code = main(
        [
            "run",
            "--task",
            "tabular_mlp",
            "--optimizer",
            optimizer,
            "--steps",
            "60",
            "--seed",
            "1",
            "--no-progress",
            "--checkpoint-every",
            "0",
            *args,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--schedule", "wsd"], "schedule wsd needs decay_fraction"),
        (["--decay-fraction", "0.2"], "decay_fraction apply to schedule wsd only, not 'cosine'"),
        (["--schedule", "wsd", "--decay-fraction", "0.2", "--decay-shape", "cosine"], "invalid choice: 'cosine'"),
        (["--schedule", "step"], "invalid choice: 'step' (choose from"),
        (["--schedule", "wsd", "--decay-fraction", "0.2", "--warmup-steps", "55"], "inside the 55-step warmup"),
        (["--schedule", "wsd", "--decay-fraction", "0.01"], "is 1 step; it needs at least 2"),
        (["--budget", "1.5"], "a budget is a fraction of the task's steps in (0, 1], got 1.5"),
        (["--budget", "0"], "in (0, 1], got 0.0"),
        (["--keep-budgets", "0.5"], "--keep-budgets: budget branches start from the stable phase of a wsd schedule"),
        (["--schedule", "wsd", "--decay-fraction", "0.2", "--keep-budgets", "half"], "--keep-budgets takes fractions"),
        (["--budget", "0.5", "--branch-from", "0123456789abcdef0123"], "only under a wsd schedule"),
        (
            [
                "--schedule",
                "wsd",
                "--decay-fraction",
                "0.2",
                "--budget",
                "0.5",
                "--branch-from",
                "0123456789abcdef0123",
            ],
            "no checkpoints of run 0123456789abcdef0123",
        ),
        (["--branch-from", "nowhere"], "no such checkpoint, folder or run_id"),
    ],
)
def test_bad_schedule_and_budget_flags_exit_2_naming_the_valid_choices(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    try:
        code, _, err = _run_cli(capsys, "--out", str(out), *args)
    except SystemExit as exc:  # argparse's own exit 2 for a choice outside the list
        code, err = exc.code, capsys.readouterr().err
    assert code == 2 and message in err, err
    assert not out.exists() or not any(out.rglob("*.parquet"))


def test_a_missing_branch_point_says_how_to_keep_it(tmp_path, capsys):
    out = tmp_path / "out"
    wsd = ["--out", str(out), "--schedule", "wsd", "--decay-fraction", "0.25"]
    assert _run_cli(capsys, *wsd, "--keep-budgets", "0.25")[0] == 0
    code, _, err = _run_cli(capsys, *wsd, "--budget", "0.5", "--branch-from", str(out))
    assert code == 2 and "kept no checkpoint at step 22" in err and "--keep-budgets 0.5" in err, err
