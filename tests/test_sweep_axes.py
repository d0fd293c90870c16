"""Sweep-file conditions and axes (``harness.sweep.axes``): ``schedule``, ``delay`` (scalar or list),
``axes`` (conditions and hyperparameters, crossed into cells), ``reuse_tuning``, ``budgets`` (WSD decay
branches of the eval runs), ``budget_tuning`` and ``margin``. Validation messages, the plans they
expand into, ``plan.json``, and one tiny sweep run end to end whose budget branches equal runs from
scratch."""

from __future__ import annotations

import json

import pytest
from test_sweep import records, run_inprocess, write_sweep

from harness.errors import UserError
from harness.results import budget
from harness.sweep import local as sweep_local
from harness.sweep import schema as sweep_schema

WSD = {"kind": "wsd", "decay_fraction": 0.25}
BRANCHED = ["signum", {"name": "softsignum", "branch_from": "signum"}]


def _load(tmp_path, **changes):
    return sweep_schema.load(write_sweep(tmp_path / "s.yaml", **changes))


def _task(**extra):
    return {"task": "tabular_mlp", "size": "tiny", "datasets": ["synthetic"], "steps": 24, **extra}


def _studies(sweep):
    return {p.study: p for p in sweep.studies}


# ------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"tasks": [_task(axes={"nonsense": [1, 2]})]}, ["unknown axis 'nonsense'", "delay", "lr"]),
        ({"tasks": [_task(axes={"alpha_sign": []})]}, ["non-empty list"]),
        ({"tasks": [_task(axes={"lr": [0.1, 0.1]})]}, ["repeats the value 0.1"]),
        ({"tasks": [_task(axes={"schedule": ["cosine", "warmup-only"]})]}, ["unknown schedule 'warmup-only'", "wsd"]),
        ({"tasks": [_task(delay=[0, -1])]}, ["delay"]),
        ({"tasks": [_task(delay=[0, 1], axes={"delay": [0, 2]})]}, ["given twice"]),
        ({"tasks": [_task(budgets=[0.5, 1.0])]}, ["wsd", "decay_fraction"]),
        ({"tasks": [_task(budgets=[1.0], schedule=WSD)]}, ["below 1.0"]),
        ({"tasks": [_task(budgets=[0.5, 1.5], schedule=WSD)]}, ["(0, 1]"]),
        ({"tasks": [_task(budget_tuning="sometimes", schedule=WSD, budgets=[0.5])]}, ["full", "every"]),
        ({"tasks": [_task(schedule={"kind": "wsd", "decay_fraction": 2})]}, ["(0, 1]"]),
        ({"tasks": [_task(schedule={"kind": "wsd", "cooldown": 3})]}, ["cooldown", "decay_fraction"]),
        ({"margin": "a lot"}, ["margin", "absolute", "relative"]),
        ({"tasks": [_task(margin={"cora": 0.01})]}, ["cora", "synthetic"]),
        ({"tasks": [_task(reuse_tuning="yes")]}, ["true or false"]),
    ],
)
def test_bad_conditions_are_refused_with_the_valid_choices(tmp_path, changes, words):
    with pytest.raises(UserError) as exc:
        _load(tmp_path, **changes)
    text = str(exc.value)
    assert "s.yaml: line" in text
    for word in words:
        assert word in text, text


# ------------------------------------------------------------------------------------- expansion


def test_without_conditions_study_names_are_unchanged(tmp_path):
    sweep = _load(tmp_path, tasks=[_task()], optimizers=BRANCHED)
    assert [p.study for p in sweep.studies] == ["t/tabular_mlp/synthetic/signum", "t/tabular_mlp/synthetic/softsignum"]
    assert all(p.delay == 0 and p.budget == 1.0 and not p.cell and not p.schedule for p in sweep.studies)
    assert sweep.margins == {}


def test_a_delay_list_is_an_axis_with_its_own_tuned_studies_and_branches(tmp_path):
    sweep = _load(tmp_path, tasks=[_task(delay=[0, 1])], optimizers=["adamw", *BRANCHED])
    by = _studies(sweep)
    base = "t/tabular_mlp/synthetic"
    # delay 0 keeps the plain names (adding the axis keeps a sweep's studies); delay 1 is named
    assert set(by) == {f"{base}/{o}{s}" for o in ("adamw", "signum", "softsignum") for s in ("", "/delay=1")}
    assert by[f"{base}/adamw/delay=1"].delay == 1 and by[f"{base}/adamw/delay=1"].trials == 3
    assert by[f"{base}/adamw"].cell == {"delay": 0} and by[f"{base}/adamw/delay=1"].cell == {"delay": 1}
    # SoftX at delay 1 branches from X at delay 1 (the checkpoint carries the stale-gradient ring)
    assert by[f"{base}/softsignum/delay=1"].branch_from == f"{base}/signum/delay=1"
    assert by[f"{base}/softsignum"].branch_from == f"{base}/signum"


def test_a_scalar_delay_applies_to_every_study(tmp_path):
    sweep = _load(tmp_path, tasks=[_task()], delay=1, optimizers=["adamw"])
    (plan,) = sweep.studies
    assert plan.study.endswith("/adamw/delay=1") and plan.delay == 1 and plan.cell == {"delay": 1}


def test_hyperparameter_axes_split_only_the_optimizers_that_have_them(tmp_path):
    sweep = _load(
        tmp_path, tasks=[_task(axes={"alpha_sign": [0.5, 0.8], "min_lr_ratio": [0.0, 0.1]})], optimizers=BRANCHED
    )
    by = _studies(sweep)
    base = "t/tabular_mlp/synthetic"
    signums = sorted(s for s in by if "/signum" in s)
    softs = sorted(s for s in by if "/softsignum" in s)
    assert signums == [f"{base}/signum/min_lr_ratio=0", f"{base}/signum/min_lr_ratio=0.1"]  # no alpha_sign
    assert len(softs) == 4
    soft = by[f"{base}/softsignum/alpha_sign=0.8,min_lr_ratio=0.1"]
    assert soft.fixed["alpha_sign"] == 0.8 and "alpha_sign" not in soft.space
    assert soft.schedule == {"min_lr_ratio": 0.1}
    assert soft.branch_from == f"{base}/signum/min_lr_ratio=0.1"  # the parent of the same condition
    assert soft.cell == {"alpha_sign": 0.8, "min_lr_ratio": 0.1}


def test_a_schedule_axis_keeps_the_wsd_keys_for_its_wsd_cells(tmp_path):
    sweep = _load(
        tmp_path,
        tasks=[_task(schedule={"decay_fraction": 0.1}, axes={"schedule": ["cosine", "wsd"]})],
        optimizers=["adamw"],
    )
    cosine, wsd = sweep.studies
    assert cosine.schedule == {"kind": "cosine"} and wsd.schedule == {"kind": "wsd", "decay_fraction": 0.1}
    assert cosine.study.endswith("/adamw/schedule=cosine") and wsd.study.endswith("/adamw/schedule=wsd")


def test_a_shared_hyperparameter_axis_is_set_on_the_parent_and_followed_by_the_child(tmp_path):
    sweep = _load(tmp_path, tasks=[_task(axes={"momentum": [0.8, 0.95]})], optimizers=BRANCHED)
    by = _studies(sweep)
    base = "t/tabular_mlp/synthetic"
    assert by[f"{base}/signum/momentum=0.8"].fixed["momentum"] == 0.8
    child = by[f"{base}/softsignum/momentum=0.95"]
    assert "momentum" not in child.fixed and child.branch_from == f"{base}/signum/momentum=0.95"


def test_reuse_tuning_tunes_the_first_cell_only_and_the_leaderboard_says_so(tmp_path):
    from harness.leaderboard.cli import reuse_note

    sweep = _load(tmp_path, tasks=[_task(delay=[0, 1], reuse_tuning=True)], optimizers=["adamw"])
    first, second = sweep.studies
    assert (first.trials, first.transfer_from) == (3, None)
    assert (second.trials, second.transfer_from, second.delay) == (0, first.study, 1)
    sweep_local.prepare(sweep, tmp_path / "out", None)
    note = reuse_note(tmp_path / "out")
    assert note.startswith("1 cell(s) were not tuned") and "tabular_mlp/synthetic/adamw/delay=1 uses" in note
    assert reuse_note(tmp_path / "nothing-here") == ""


def test_budgets_add_untuned_decay_branches_of_the_full_plans(tmp_path):
    sweep = _load(tmp_path, tasks=[_task(schedule=WSD, budgets=[0.25, 0.5, 1.0])], optimizers=["adamw", *BRANCHED])
    by = _studies(sweep)
    base = "t/tabular_mlp/synthetic"
    for opt in ("adamw", "signum"):
        for b in (0.25, 0.5):
            plan = by[f"{base}/{opt}/budget={b:g}"]
            assert (plan.budget, plan.trials, plan.branch_from) == (b, 0, f"{base}/{opt}")
            assert plan.schedule == WSD
    soft = by[f"{base}/softsignum/budget=0.5"]
    # SoftX at budget b: from X's full run (its stable phase), evaluating SoftX's own configuration
    assert (soft.branch_from, soft.transfer_from, soft.trials) == (f"{base}/signum", f"{base}/softsignum", 0)
    assert len(sweep.studies) == 9


def test_budget_tuning_every_tunes_each_budget_from_scratch(tmp_path):
    sweep = _load(tmp_path, tasks=[_task(schedule=WSD, budgets=[0.5], budget_tuning="every")], optimizers=BRANCHED)
    by = _studies(sweep)
    base = "t/tabular_mlp/synthetic"
    half = by[f"{base}/signum/budget=0.5"]
    assert (half.trials, half.branch_from) == (3, None)
    assert by[f"{base}/softsignum/budget=0.5"].branch_from == f"{base}/signum/budget=0.5"


def test_margins_go_to_plan_json(tmp_path):
    sweep_file = write_sweep(
        tmp_path / "s.yaml",
        margin="1%",
        optimizers=["adamw"],
        tasks=[_task(), _task(name="other", datasets=["synthetic"], margin={"synthetic": 0.02})],
    )
    sweep = sweep_schema.load(sweep_file)
    sweep_local.prepare(sweep, tmp_path / "out", None)
    plan = budget.read_plan(tmp_path / "out")
    margins = budget.declared_margins(plan)
    assert margins["everywhere"] == {"kind": "relative", "value": 0.01}
    assert margins["benchmarks"] == [
        {"task": "tabular_mlp", "dataset": "synthetic", "margin": {"kind": "absolute", "value": 0.02}}
    ]
    assert {s["delay"] for s in plan["studies"]} == {0} and {s["budget"] for s in plan["studies"]} == {1.0}


# ------------------------------------------------------------------------------------ end to end


def test_a_budget_and_delay_sweep_records_every_condition_and_branches_equal_scratch(tmp_path):
    from harness.run.lineage import unbranched
    from harness.run.loop import run
    from harness.spec import RunSpec

    out = tmp_path / "out"
    tasks = [_task(steps=20, schedule={"kind": "wsd", "decay_fraction": 0.2}, budgets=[0.5, 1.0], delay=[0, 1])]
    sweep, _, _, _ = run_inprocess(
        write_sweep(tmp_path / "s.yaml", tasks=tasks, optimizers=BRANCHED, trials=1, eval_seeds=1, margin=0.02), out
    )
    df = records(out)
    assert len(df) == sweep.planned_runs == df["run_id"].nunique()
    ev = df[df["phase"] == "eval"]
    assert sorted(zip(ev["delay"], ev["budget"])) == sorted([(d, b) for d in (0, 1) for b in (0.5, 1.0)] * 2)
    assert {json.loads(c)["delay"] for c in ev["cell"]} == {0, 1}
    assert (ev["delay"] == [json.loads(c)["delay"] for c in ev["cell"]]).all()
    half = ev[ev["budget"] == 0.5]
    # T = 10 steps, decay over round(0.2 * 10) = 2: every budget-0.5 run starts from the full run at D = 8
    # (SoftSignum's own switch S = floor(0.9 * 10) = 9 lies after it)
    assert set(half["branch_step"]) == {8} and set(half["steps_done"]) == {10}
    full_runs = ev[ev["budget"] == 1.0].set_index(["optimizer", "delay"])
    for _, row in half.iterrows():
        parent_opt = "signum"  # both signum and softsignum branch from signum's full run
        assert row["branched_from"] == full_runs.loc[(parent_opt, row["delay"]), "run_id"]
    soft_half = half[half["optimizer"] == "softsignum"].set_index("delay")
    soft_full = full_runs.loc["softsignum"]
    for d in (0, 1):  # SoftX's budget branch evaluates SoftX's own configuration
        assert soft_half.loc[d, "hparams"] == soft_full.loc[d, "hparams"]
    # a budget branch equals the same run from scratch, bit for bit on this CPU
    for spec_json in half["spec"]:
        branched = RunSpec.from_json(spec_json)
        scratch = run(unbranched(branched))
        row = half[half["spec"] == spec_json].iloc[0]
        assert scratch.row["test_metric"] == row["test_metric"]
        assert scratch.row["final_train_loss"] == row["final_train_loss"]
    # the leaderboard keeps every condition apart, at the margin the sweep file declared
    from harness.leaderboard.cli import build

    board, _ = build(out)
    assert {r["variant"] for r in board.rows} == {"", "budget=0.5", "delay=1", "budget=0.5,delay=1"}
    assert {r["margin"] for r in board.rows} == {0.02}
    assert all("sweep file" in r["margin_rule"] for r in board.rows)
    from harness.leaderboard.cli import write

    names = {p.name for p in write(out, tmp_path / "lb")}
    assert {"leaderboard.csv", "leaderboard_budgets.csv", "leaderboard_delay.csv", "leaderboard_axes.csv"} <= names
    assert len((tmp_path / "lb" / "leaderboard_delay.csv").read_text().splitlines()) == 1 + 2 * 2  # 2 opts x 2 budgets
