"""Conditions and axis cells in the leaderboard (issues 21, 22, 25): budgets, delays and cell
conditions are benchmarks of their own and never replace each other; hyperparameter-axis cells are
entries of their own; the metric-vs-budget, time-to-target, delay-robustness and axis tables. All on
synthetic record frames with known structure (no training)."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from harness import leaderboard
from harness.leaderboard import columns, render_csv
from harness.leaderboard.load import base_name, display_key, entry_label, soft_entry
from harness.leaderboard.render_csv import TABLES
from harness.results import store as records

SEEDS = (1, 2, 3)


def _rows(
    means: dict,
    *,
    task="tabular_mlp",
    dataset="digits",
    metric="accuracy",
    direction="max",
    budget=1.0,
    delay=0,
    cell="",
    noise=0.001,
    replicates=1,
    target=math.nan,
    offset=None,
):
    """Eval rows: ``means[optimizer]`` is the level of its runs; seed s adds ``noise * s`` (shared by
    every optimizer, so paired differences are exact); ``offset[(optimizer, seed)]`` adds to one run."""
    out = []
    for opt, level in means.items():
        for rep in range(replicates):
            for s in SEEDS:
                value = level + noise * s + (offset or {}).get((opt, s), 0.0)
                out.append(
                    {
                        "run_id": f"{opt}-{task}-{dataset}-b{budget}-d{delay}-{cell}-{rep}-{s}",
                        "schema_version": 2,
                        "suite": "c",
                        "task": task,
                        "dataset": dataset,
                        "size": "small",
                        "optimizer": opt,
                        "phase": "eval",
                        "seed": s,
                        "replicate": rep,
                        "status": "ok",
                        "metric": metric,
                        "direction": direction,
                        "val_metric": value,
                        "test_metric": value,
                        "hparams": "{}",
                        "budget": budget,
                        "delay": delay,
                        "cell": cell,
                        "target": target,
                        "steps": 100,
                        "finished_at": "2026-01-01T00:00:00+00:00",
                    }
                )
    return out


def _frame(*parts):
    return pd.DataFrame([r for part in parts for r in part])


def _row(board, optimizer, **where):
    found = [r for r in board.rows if r["optimizer"] == optimizer and all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (optimizer, where, [(r["optimizer"], r["variant"]) for r in board.rows])
    return found[0]


def _csv(board, table):
    return pd.read_csv(io.StringIO(render_csv(board, table)), keep_default_na=False)


def _curves(frame, *, every=10, steps=40, seconds_per_step=0.1):
    """Val curves rising linearly to each run's final val_metric, and cumulative training seconds."""
    out = []
    for rid, final in zip(frame["run_id"], frame["val_metric"]):
        for step in range(every, steps + 1, every):
            value = final if step == steps else final * step / steps  # the last point is the final value, exactly
            out.append({"run_id": rid, "step": step, "split": "val", "name": "accuracy", "value": value})
            out.append(
                {"run_id": rid, "step": step, "split": "train", "name": "seconds", "value": step * seconds_per_step}
            )
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- conditions never pool


def test_each_condition_is_a_benchmark_and_no_seed_replaces_another():
    frame = _frame(
        _rows({"adamw": 0.80, "signum": 0.78}),
        _rows({"adamw": 0.75, "signum": 0.77}, budget=0.5),
        _rows({"adamw": 0.70, "signum": 0.76}, delay=1),
    )
    board = leaderboard.compute(frame)
    assert sorted({r["variant"] for r in board.rows}) == ["", "budget=0.5", "delay=1"]
    assert board.n_eval == 18 and not any("superseded" in n for n in board.notes)
    # the default condition keeps its label and its numbers: the same as a board of its rows alone
    alone = leaderboard.compute(_frame(_rows({"adamw": 0.80, "signum": 0.78})))
    assert _row(board, "adamw", variant="")["mean"] == _row(alone, "adamw", variant="")["mean"]
    assert _row(board, "adamw", variant="delay=1")["mean"] == pytest.approx(0.702)
    assert _row(board, "signum", variant="budget=0.5")["rank"] == 1  # ranked within its own budget only


def test_records_without_the_condition_columns_give_the_same_tables():
    plain = _frame(_rows({"adamw": 0.80, "signum": 0.78, "softsignum": 0.781}))
    old = plain.drop(columns=["budget", "delay", "cell"])
    a, b = leaderboard.compute(plain), leaderboard.compute(old)
    for table in ("benchmarks", "aggregate"):
        assert render_csv(a, table) == render_csv(b, table)
    assert leaderboard.render_markdown(a) == leaderboard.render_markdown(b)
    assert "## Metric vs budget" not in leaderboard.render_markdown(a) and not a.extras.active
    # extra tables of such records: the header, no rows
    assert render_csv(a, "delay").strip() == ",".join(columns.DELAY_COLUMNS)


def test_hyperparameter_cells_are_entries_compared_with_x_of_the_same_condition():
    frame = _frame(
        _rows({"signum": 0.70, "softsignum": 0.70}),
        _rows({"softsignum": 0.72}, cell='{"alpha_sign": 0.5}'),
        _rows({"softsignum": 0.71}, cell='{"alpha_sign": 0.3}'),
        _rows({"signum": 0.60}, delay=1, cell='{"delay": 1}'),
        _rows({"softsignum": 0.65}, delay=1, cell='{"alpha_sign": 0.5, "delay": 1}'),
    )
    board = leaderboard.compute(frame)
    names = [r["optimizer"] for r in board.rows if r["variant"] == ""]
    assert names == ["signum", "softsignum", "softsignum[alpha_sign=0.3]", "softsignum[alpha_sign=0.5]"]
    e = _row(board, "softsignum[alpha_sign=0.5]", variant="")
    assert e["soft_ref"] == "signum" and e["soft_diff"] == pytest.approx(0.02)
    d = _row(board, "softsignum[alpha_sign=0.5]", variant="delay=1")  # against delay-1 signum, not delay 0
    assert d["soft_diff"] == pytest.approx(0.05) and d["soft_verdict"] == "better"
    assert "softsignum[alpha_sign=0.5] − signum" in leaderboard.render_markdown(board)


def test_entry_labels_and_registry_lookups_on_the_base_name():
    label = entry_label("softsignum", {"tmax": 1e9, "alpha_sign": 0.5})
    assert label == "softsignum[alpha_sign=0.5,tmax=1000000000]" and base_name(label) == "softsignum"
    assert display_key("softsignum")[0] == display_key(label)[0]
    ordered = sorted(
        ["softsignum[alpha_sign=0.9]", "signum", "softsignum[alpha_sign=0.3]", "softsignum"], key=display_key
    )
    assert ordered == ["signum", "softsignum", "softsignum[alpha_sign=0.3]", "softsignum[alpha_sign=0.9]"]
    # numbers by value, not as text: 20 before 1000000000
    assert sorted(["softsignum[tmax=1000000000]", "softsignum[tmax=20]"], key=display_key)[0] == "softsignum[tmax=20]"
    # a SoftX that follows its parent's cell is compared with the parent's entry of that cell
    names = ["signum", "signum[beta=0.9]", "softsignum[alpha_sign=0.5,beta=0.9]"]
    assert soft_entry("softsignum[alpha_sign=0.5,beta=0.9]", names) == "signum[beta=0.9]"
    assert soft_entry("adamw", names) is None


# ------------------------------------------------------------------------------- the four tables


def test_metric_vs_budget_rows_are_the_leaderboards_and_flag_a_change_of_best():
    frame = _frame(_rows({"adamw": 0.80, "signum": 0.70}), _rows({"adamw": 0.60, "signum": 0.65}, budget=0.5))
    board = leaderboard.compute(frame)
    got = _csv(board, "budgets")
    assert list(got.columns) == list(columns.BUDGET_COLUMNS)
    assert sorted(set(got["budget"])) == [0.5, 1.0] and set(got["best_changes"]) == {True}
    half = got[(got["budget"] == 0.5) & (got["optimizer"] == "signum")].iloc[0]
    lb = _row(board, "signum", variant="budget=0.5")
    assert half["mean"] == pytest.approx(lb["mean"]) and half["vs_adamw_verdict"] == lb["vs_adamw_verdict"] == "better"
    assert half["variant"] == ""  # the budget is the table's axis, not part of its variant
    text = leaderboard.render_markdown(board)
    assert (
        "## Metric vs budget" in text
        and "**The best optimizer changes with the budget** (0.5: signum; 1: adamw)" in text
    )
    same = leaderboard.compute(
        _frame(_rows({"adamw": 0.80, "signum": 0.70}), _rows({"adamw": 0.70, "signum": 0.65}, budget=0.5))
    )
    assert set(_csv(same, "budgets")["best_changes"]) == {False}


def test_delay_robustness_is_paired_by_replicate_and_seed_and_ranked():
    # seed 3 of muon loses more: the mean loss is known exactly, and the pairing must use the seeds
    frame = _frame(
        _rows({"adamw": 0.80, "muon": 0.80, "signum": 0.80}, replicates=2),
        _rows({"adamw": 0.70, "muon": 0.799, "signum": 0.78}, delay=1, replicates=2, offset={("muon", 3): -0.003}),
    )
    board = leaderboard.compute(frame)
    got = _csv(board, "delay")
    assert list(got["optimizer"]) == ["muon", "signum", "adamw"]
    assert list(got["rank_by_degradation"]) == [1, 2, 3]
    muon = got.iloc[0]
    assert muon["n"] == 6 and muon["diff"] == pytest.approx(-0.001 - 0.003 / 3)
    assert muon["degradation"] == pytest.approx(0.002) and muon["verdict"] != "worse"  # one seed lost more
    assert got.iloc[2]["verdict"] == "worse" and got.iloc[2]["diff"] == pytest.approx(-0.1)
    # the same comparison the leaderboard makes (two-level interval over the replicates)
    from harness.leaderboard.compare import compare

    bench = {b.key[3]: b for b in board.extras.benches}
    c = compare(bench["delay=1"].values["signum"], bench[""].values["signum"], bench[""].margin, bench[""].metric)
    assert (got.iloc[1]["lo"], got.iloc[1]["hi"]) == pytest.approx((c.lo, c.hi))
    assert "## Delay robustness" in leaderboard.render_markdown(board)


def test_axes_along_a_hyperparameter_and_a_condition_with_softx_minus_x():
    frame = _frame(
        _rows({"signum": 0.70}, cell='{"min_lr_ratio": 0}'),
        _rows({"signum": 0.72}, cell='{"min_lr_ratio": 0.1}'),
        _rows({"softsignum": 0.71}, cell='{"alpha_sign": 0.3, "min_lr_ratio": 0}'),
        _rows({"softsignum": 0.74}, cell='{"alpha_sign": 0.9, "min_lr_ratio": 0}'),
        _rows({"softsignum": 0.72}, cell='{"alpha_sign": 0.3, "min_lr_ratio": 0.1}'),
    )
    board = leaderboard.compute(frame)
    got = _csv(board, "axes")
    assert list(got.columns) == list(columns.AXIS_COLUMNS) and set(got["axis"]) == {"alpha_sign", "min_lr_ratio"}
    hp = got[(got["axis"] == "alpha_sign") & (got["comparison"] == "along") & (got["variant"] == "min_lr_ratio=0")]
    assert list(hp["value"]) == [0.3, 0.9] and hp.iloc[0]["reference"] == ""
    assert float(hp.iloc[1]["diff"]) == pytest.approx(0.03) and hp.iloc[1]["verdict"] == "better"
    soft = got[(got["axis"] == "alpha_sign") & (got["comparison"] == "soft") & (got["variant"] == "min_lr_ratio=0")]
    assert list(soft["reference"]) == ["signum", "signum"] and list(soft["diff"].astype(float)) == pytest.approx(
        [0.01, 0.04]
    )
    cond = got[(got["axis"] == "min_lr_ratio") & (got["comparison"] == "along") & (got["optimizer"] == "signum")]
    assert list(cond["value"]) == [0, 0.1] and float(cond.iloc[1]["diff"]) == pytest.approx(0.02)
    assert cond.iloc[1]["kind"] == "condition" and cond.iloc[1]["ref_value"] == 0
    assert "### alpha_sign (hyperparameter axis; reference value 0.3)" in leaderboard.render_markdown(board)


def test_time_to_target_declared_and_derived_with_profile_scores():
    frame = _frame(
        _rows({"adamw": 0.80, "signum": 0.60}, noise=0.0),
        _rows({"adamw": 0.80, "signum": 0.60}, noise=0.0, dataset="other", target=0.3),
        _rows({"adamw": 0.80, "signum": 0.60}, noise=0.0, budget=0.5),
    )
    board = leaderboard.compute(frame, curves=_curves(frame))
    got = _csv(board, "time_to_target")
    assert list(got.columns) == list(columns.TIME_COLUMNS)
    digits = got[(got["dataset"] == "digits") & (got["budget"] == 1.0)].set_index("optimizer")
    # derived: adamw's median final val metric, 0.8; adamw reaches it at its last eval, signum never
    assert digits.loc["adamw", "target"] == pytest.approx(0.8) and digits.loc["adamw", "target_rule"].startswith(
        "derived"
    )
    assert digits.loc["adamw", "median_steps"] == 40 and digits.loc["adamw", "median_seconds"] == pytest.approx(4.0)
    assert math.isinf(float(digits.loc["signum", "median_steps"])) and digits.loc["signum", "reached"] == 0
    other = got[got["dataset"] == "other"].set_index("optimizer")
    # declared 0.3: adamw's curve 0.2, 0.4 -> step 20; signum's 0.15, 0.3 -> step 20 (equal counts)
    assert other.loc["adamw", "target_rule"] == "declared in the records"
    assert other.loc["adamw", "median_steps"] == 20 and other.loc["signum", "median_steps"] == 20
    half = got[got["budget"] == 0.5]
    assert len(half) == 2 and list(half["target"]) == pytest.approx(
        [0.8, 0.8]
    )  # a budget branch is measured against the full budget's
    prof = _csv(board, "profile")
    steps = prof[prof["measure"] == "steps"].set_index("optimizer")
    # two full-budget workloads: digits (adamw ratio 1, signum inf) and other (both 1)
    assert steps.loc["adamw", "score"] == pytest.approx(1.0) and steps.loc["signum", "score"] == pytest.approx(0.5)
    assert set(prof["n_benchmarks"]) == {2}
    assert "## Time to target" in leaderboard.render_markdown(board)


def test_time_to_target_from_a_results_folder_reads_the_curves(tmp_path):
    frame = _frame(_rows({"adamw": 0.80, "signum": 0.70}, noise=0.0), _rows({"adamw": 0.80}, noise=0.0, delay=1))
    curves = _curves(frame)
    for row in frame.to_dict("records"):
        records.write_run(tmp_path, row, curves[curves["run_id"] == row["run_id"]].to_dict("records"))
    board, _ = leaderboard.build(tmp_path)
    got = _csv(board, "time_to_target")
    assert len(got) == 3 and set(got["n_missing"]) == {0}
    assert list(got[got["variant"] == ""]["median_steps"].astype(float)) == [40.0, math.inf]


def test_every_csv_table_is_documented_and_unknown_tables_name_the_choices():
    board = leaderboard.compute(_frame(_rows({"adamw": 0.8})))
    text = columns.describe()
    for table, (cols, _) in columns.EXTRA_TABLES.items():
        assert table in TABLES and f"--table {table}" in text
        assert render_csv(board, table).splitlines()[0].split(",") == list(cols)
    from harness.errors import UserError

    with pytest.raises(UserError, match="known: benchmarks, aggregate, budgets"):
        render_csv(board, "nope")
