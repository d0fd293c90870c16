"""Leaderboard: golden files from the committed fixture records, hand-computed statistics, refusal
of mixed records, tolerance of corrupt files, and the real CLI in a subprocess."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import leaderboard
from harness.errors import UserError
from harness.results import store as records

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "leaderboard"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def frame():
    """The fixture's run rows, read once (reading 90 parquet files is the slow part)."""
    return records.read_runs(FIXTURE)


@pytest.fixture(scope="module")
def board(frame):
    return leaderboard.compute(frame, source=str(FIXTURE))


def _copy_subset(frame, out: Path, dataset: str) -> Path:
    """A writable results folder holding the fixture's records of one dataset (cheap to read)."""
    for run_id in frame.loc[frame["dataset"] == dataset, "run_id"]:
        for sub in ("runs", "curves"):
            (out / sub).mkdir(parents=True, exist_ok=True)
            shutil.copy(FIXTURE / sub / f"{run_id}.parquet", out / sub / f"{run_id}.parquet")
    return out


def _row(board, dataset, optimizer):
    (row,) = [r for r in board.rows if r["dataset"] == dataset and r["optimizer"] == optimizer]
    return row


# ------------------------------------------------------------------------------------------- goldens


def assert_csv_matches_golden(text: str, golden: Path) -> None:
    """Same header, same rows, same text in every text cell; numbers equal to 1e-9 relative.

    The CSV writes statistics at ``%.10g``, and the last of those digits depend on how numpy/pandas
    sum (which a patch release may change): a golden file pins what the table says, not rounding."""
    import io

    got, want = (
        pd.read_csv(io.StringIO(t), keep_default_na=False, dtype=str)
        for t in (text, golden.read_text(encoding="utf-8"))
    )
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want), f"{len(got)} rows, golden has {len(want)}"
    for col in want.columns:
        for i, (a, b) in enumerate(zip(got[col], want[col])):
            try:
                fa, fb = float(a), float(b)
            except ValueError:
                assert a == b, f"{golden.name} row {i} column {col}: {a!r} != {b!r}"
                continue
            assert fa == pytest.approx(fb, rel=1e-9, abs=1e-12, nan_ok=True), f"{golden.name} row {i} column {col}"


def test_golden_csv(board):
    assert_csv_matches_golden(leaderboard.render_csv(board), FIXTURE / "expected.csv")
    assert_csv_matches_golden(leaderboard.render_csv(board, "aggregate"), FIXTURE / "expected_aggregate.csv")


def test_golden_markdown(board):
    assert leaderboard.render_markdown(board) == (FIXTURE / "expected.md").read_text(encoding="utf-8")


def test_fixture_planted_cases(board, frame):
    """What the golden files must mean (see make_fixture.py): pins the statistics to the records."""
    evals = frame[frame["phase"] == "eval"]

    def values(dataset, optimizer):
        rows = evals[(evals["dataset"] == dataset) & (evals["optimizer"] == optimizer)]
        return dict(zip(rows["seed"], rows["test_metric"]))

    # plain statistics, recomputed from the records
    row = _row(board, "breast_cancer", "adamw")
    v = list(values("breast_cancer", "adamw").values())
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(sum(v) / 3)
    assert row["std"] == pytest.approx(pd.Series(v).std(ddof=1))
    assert row["ci_lo"] <= row["mean"] <= row["ci_hi"]
    # a diverged eval seed is counted, not averaged
    row = _row(board, "diabetes", "softmuon")
    assert (row["n_seeds"], row["n_failed"]) == (2, 1)
    # signum has no seed 102 on diabetes: its pairs use the shared seeds only
    sig, ada = values("diabetes", "signum"), values("diabetes", "adamw")
    row = _row(board, "diabetes", "signum")
    assert row["vs_adamw_n"] == 2
    assert row["vs_adamw_diff"] == pytest.approx(sum(sig[s] - ada[s] for s in sig) / 2)
    assert row["vs_adamw_verdict"] == "worse"  # rmse (min): signum's positive difference is worse
    assert _row(board, "diabetes", "softsignum")["soft_n"] == 2
    assert _row(board, "diabetes", "softmuon")["vs_adamw_verdict"] == "better"
    # tune failures: signum diverged at its largest lr on diabetes
    assert _row(board, "diabetes", "signum")["tune_failure_rate"] == pytest.approx(1 / 3)
    # adamw on sbm was evaluated twice on seed 100: the latest record counts
    sbm = evals[(evals["dataset"] == "sbm") & (evals["optimizer"] == "adamw")]
    latest = sbm.sort_values("finished_at").drop_duplicates("seed", keep="last")["test_metric"]
    assert _row(board, "sbm", "adamw")["mean"] == pytest.approx(latest.mean())
    assert any("superseded" in note for note in board.notes)
    # direction from the rows: the lowest rmse ranks first
    diabetes = sorted((r for r in board.rows if r["dataset"] == "diabetes"), key=lambda r: r["mean"])
    assert diabetes[0]["rank"] == 1 and diabetes[-1]["rank"] == 5


# ----------------------------------------------------------------------------- hand-computed frame


def _frame(rows):
    base = {
        "schema_version": 1,
        "suite": "s",
        "size": "small",
        "status": "ok",
        "task_options": "{}",
        "steps": 100,
        "hparams": "{}",
        "finished_at": "2026-01-01T00:00:00+00:00",
        "target": math.nan,
        "steps_to_target": None,
    }
    out = []
    for i, r in enumerate(rows):
        row = dict(base, run_id=f"r{i}", **r)
        row.setdefault("val_metric", row.get("test_metric"))
        out.append(row)
    return pd.DataFrame(out)


def _evals(task, dataset, metric, direction, table):
    """table: optimizer -> [value per seed 0, 1, 2]."""
    return [
        {
            "task": task,
            "dataset": dataset,
            "metric": metric,
            "direction": direction,
            "phase": "eval",
            "optimizer": opt,
            "seed": seed,
            "test_metric": value,
        }
        for opt, vals in table.items()
        for seed, value in enumerate(vals)
    ]


def test_hand_computed_ranks_differences_and_average_rank():
    rows = (
        _evals(
            "t1",
            "d1",
            "acc",
            "max",
            {"adamw": [0.80, 0.82, 0.84], "muon": [0.85, 0.87, 0.89], "signum": [0.70, 0.90, 0.80]},
        )
        + _evals(
            "t1", "d2", "loss", "min", {"adamw": [1.0, 1.1, 1.2], "muon": [1.5, 1.6, 1.7], "signum": [0.5, 0.6, 0.7]}
        )
        + _evals(
            "t2", "d3", "acc", "max", {"adamw": [0.5, 0.5, 0.5], "muon": [0.5, 0.5, 0.5], "signum": [0.4, 0.4, 0.4]}
        )
    )
    board = leaderboard.compute(_frame(rows))
    muon = _row(board, "d1", "muon")
    assert muon["mean"] == pytest.approx(0.87) and muon["std"] == pytest.approx(0.02)
    # every seed gains exactly 0.05: the paired CI is the point itself, beyond the margin: better
    assert muon["vs_adamw_diff"] == pytest.approx(0.05)
    assert (muon["vs_adamw_lo"], muon["vs_adamw_hi"]) == pytest.approx((0.05, 0.05))
    assert muon["vs_adamw_verdict"] == "better" and muon["rank"] == 1
    # signum's mean 0.80 with seeds all over the place: nothing is decisively better than it (its
    # comparisons are inconclusive), so it shares rank 1; adamw is beaten by muon's constant +0.05,
    # so it ranks 2 although its mean is above signum's: rank = 1 + the optimizers decisively better
    sig = _row(board, "d1", "signum")
    assert sig["vs_adamw_verdict"] == "inconclusive" and sig["vs_best_verdict"] == "inconclusive"
    assert sig["rank"] == 1 and _row(board, "d1", "adamw")["rank"] == 2
    assert sig["rank_tied"] and not _row(board, "d1", "adamw")["rank_tied"]
    # d2 is "min": signum is lowest, so first; muon's positive difference is a loss
    assert _row(board, "d2", "signum")["rank"] == 1
    assert _row(board, "d2", "muon")["vs_adamw_verdict"] == "worse"
    # d3: adamw and muon are exactly equal: they share mean rank 1.5 and rank 1
    assert _row(board, "d3", "muon")["mean_rank"] == 1.5 and _row(board, "d3", "muon")["rank"] == 1
    # ... and their difference is exactly 0 on every seed: equivalent, not merely undecided
    assert _row(board, "d3", "muon")["vs_adamw_verdict"] == "equivalent"
    # average rank by mean. d1 means: muon .87, adamw .82, signum .80 -> 1, 2, 3;
    # d2 (min): signum, adamw, muon -> 1, 2, 3; d3: adamw = muon -> 1.5, 1.5, signum 3
    agg = {(a["scope"], a["optimizer"]): a for a in board.aggregate}
    assert agg[("all", "adamw")]["avg_rank"] == pytest.approx((2 + 2 + 1.5) / 3)
    assert agg[("all", "muon")]["avg_rank"] == pytest.approx((1 + 3 + 1.5) / 3)
    assert agg[("all", "signum")]["avg_rank"] == pytest.approx((3 + 1 + 3) / 3)
    assert agg[("t1", "muon")]["avg_rank"] == pytest.approx(2.0)
    assert agg[("t1", "muon")]["rank_std"] == pytest.approx(math.sqrt(2.0))
    verdict_counts = ("vs_adamw_better", "vs_adamw_worse", "vs_adamw_equivalent", "vs_adamw_inconclusive")
    m = agg[("all", "muon")]
    assert tuple(m[k] for k in verdict_counts) == (1, 1, 1, 0)
    # signum vs adamw: d1 diffs -0.10, +0.08, -0.04 (inconclusive); d2 -0.5 each on a "min" metric
    # (better); d3 -0.1 each (worse)
    s = agg[("all", "signum")]
    assert tuple(s[k] for k in verdict_counts) == (1, 1, 0, 1)
    assert agg[("all", "adamw")]["vs_adamw_better"] is None


def test_different_task_options_are_different_benchmarks():
    rows = _evals("gnn", "d", "acc", "max", {"adamw": [0.8, 0.8, 0.8]})
    rows += [
        dict(r, task_options=json.dumps({"model": "sage"}), test_metric=0.6)
        for r in _evals("gnn", "d", "acc", "max", {"adamw": [0, 0, 0]})
    ]
    board = leaderboard.compute(_frame(rows))
    assert sorted(r["variant"] for r in board.rows) == ['model="sage"', "model=null"]
    assert sorted(r["mean"] for r in board.rows) == pytest.approx([0.6, 0.8])


def test_metric_split_val_uses_val_metric():
    rows = [
        dict(r, val_metric=r["test_metric"] + 1) for r in _evals("t", "d", "acc", "max", {"adamw": [0.1, 0.2, 0.3]})
    ]
    board = leaderboard.compute(_frame(rows), metric_split="val")
    assert board.rows[0]["mean"] == pytest.approx(1.2) and board.rows[0]["split"] == "val"
    with pytest.raises(UserError, match="known: test, val"):
        leaderboard.compute(_frame(rows), metric_split="train")


# ------------------------------------------------------------------------------------ bad records


def test_no_eval_rows_is_a_clear_error(frame):
    with pytest.raises(UserError, match=r"no eval runs under DIR \(found tune: 45\).*optbench suite"):
        leaderboard.compute(frame[frame["phase"] != "eval"], source="DIR")
    with pytest.raises(UserError, match="no run records under DIR"):
        leaderboard.compute(frame.iloc[:0], source="DIR")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        leaderboard.build(tmp_path / "nope")
    with pytest.raises(UserError, match="no run records"):
        leaderboard.build(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(UserError, match="no run records"):
        leaderboard.build(tmp_path)


def _with_extra_row(frame, **changes):
    extra = frame[frame["phase"] == "eval"].iloc[[0]].assign(run_id="extra", seed=999, **changes)
    return pd.concat([frame, extra], ignore_index=True)


def test_mixed_schema_versions_refused_unless_allowed(frame):
    mixed = _with_extra_row(frame, schema_version=2)
    with pytest.raises(UserError, match=r"mix schema versions: 1 \(90 runs\), 2 \(1 runs\).*--allow-mixed"):
        leaderboard.compute(mixed)
    assert leaderboard.compute(mixed, allow_mixed=True).schema_versions == (1, 2)


def test_mixed_suites_refused(frame):
    with pytest.raises(UserError, match=r"mix suites: fixture \(90 runs\), other \(1 runs\)"):
        leaderboard.compute(_with_extra_row(frame, suite="other"))


def test_corrupt_parquet_is_named_and_skipped(frame, tmp_path):
    out = _copy_subset(frame, tmp_path / "results", "sbm")
    victim = sorted(records.runs_dir(out).glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated mid-write by something else
    rows, skipped = leaderboard.load_runs(out)
    assert len(skipped) == 1 and str(victim) in skipped[0]
    assert len(rows) == (frame["dataset"] == "sbm").sum() - 1
    assert victim.stem not in set(rows["run_id"])


def test_write_files(tmp_path, frame):
    paths = leaderboard.write(frame, tmp_path / "lb")
    assert [p.name for p in paths] == ["leaderboard.csv", "leaderboard_aggregate.csv", "leaderboard.md"]
    assert_csv_matches_golden(paths[0].read_text(), FIXTURE / "expected.csv")
    assert_csv_matches_golden(paths[1].read_text(), FIXTURE / "expected_aggregate.csv")
    assert paths[2].read_text() == (FIXTURE / "expected.md").read_text()
    assert [p.name for p in leaderboard.write(frame, tmp_path / "md", formats=("md",))] == ["leaderboard.md"]
    with pytest.raises(UserError, match="known: csv, md"):
        leaderboard.write(frame, tmp_path, formats=("html",))


# ------------------------------------------------------------------------------------------- CLI


def test_cli_csv_to_stdout_matches_golden():
    proc = _cli("leaderboard", str(FIXTURE), "--format", "csv")
    assert proc.returncode == 0, proc.stderr
    assert_csv_matches_golden(proc.stdout, FIXTURE / "expected.csv")


def test_cli_exit_2_paths(frame, tmp_path):
    proc = _cli("leaderboard", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert "optbench leaderboard: error:" in proc.stderr and "does not exist" in proc.stderr
    proc = _cli("leaderboard", str(FIXTURE), "--format", "md", "--table", "aggregate")
    assert proc.returncode == 2 and "--table applies to --format csv" in proc.stderr
    # a record of another schema version in the folder: refused, nothing written
    out = _copy_subset(frame, tmp_path / "results", "sbm")
    row = pd.read_parquet(next(records.runs_dir(out).glob("*.parquet"))).iloc[0].to_dict()
    row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
    records.write_run(out, dict(row, run_id="newer", schema_version=2, seed=999), [])
    proc = _cli("leaderboard", str(out), "--out", str(tmp_path / "board.csv"))
    assert proc.returncode == 2 and "mix schema versions" in proc.stderr and "--allow-mixed" in proc.stderr
    assert not (tmp_path / "board.csv").exists()


def test_cli_names_a_corrupt_file_on_stderr_and_goes_on(frame, tmp_path):
    out = _copy_subset(frame, tmp_path / "results", "sbm")
    victim = sorted(records.runs_dir(out).glob("*.parquet"))[-1]
    victim.write_bytes(b"not a parquet file")
    target = tmp_path / "board.md"
    proc = _cli("leaderboard", str(out), "--out", str(target))  # format from the suffix
    assert proc.returncode == 0, proc.stderr
    assert "warning: skipping unreadable run file" in proc.stderr and victim.name in proc.stderr
    text = target.read_text()
    assert text.startswith("# Leaderboard: fixture") and "## gnn_graphland (small)" in text
    assert "## Aggregate" in text


# ------------------------------------------------------------------------------ tuning replicates


def _replicate_frame(means: dict, seeds=(1, 2, 3), noise=0.001, branched: dict | None = None):
    """Eval rows of one benchmark: ``means[optimizer][replicate]`` is that replicate's level; each
    seed adds a small shared effect, so the data are two-level with known structure."""
    rows = []
    for opt, per_rep in means.items():
        for rep, level in enumerate(per_rep):
            for s in seeds:
                rid = f"{opt}-{rep}-{s}"
                rows.append(
                    {
                        "run_id": rid,
                        "schema_version": records.SCHEMA_VERSION,
                        "suite": "r",
                        "task": "tabular_mlp",
                        "dataset": "digits",
                        "size": "small",
                        "optimizer": opt,
                        "phase": "eval",
                        "seed": s,
                        "replicate": rep,
                        "status": "ok",
                        "metric": "accuracy",
                        "direction": "max",
                        "val_metric": level + noise * s,
                        "test_metric": level + noise * s,
                        "hparams": "{}",
                        "branched_from": (branched or {}).get((opt, rep, s), ""),
                    }
                )
    return pd.DataFrame(rows)


def test_replicates_give_two_level_intervals_spread_and_rank_flags():
    # signum's replicates disagree (tuning luck), adamw's agree: signum's interval must be wide,
    # its spread 0.2, and since its replicate means straddle adamw's, its rank flips between replicates.
    frame = _replicate_frame({"adamw": [0.80, 0.80, 0.80], "signum": [0.70, 0.90, 0.75]})
    board = leaderboard.compute(frame)
    adamw, signum = (_row(board, "digits", n) for n in ("adamw", "signum"))
    assert adamw["n_replicates"] == signum["n_replicates"] == 3 and signum["n_seeds"] == 9
    assert signum["mean"] == pytest.approx(np.mean([0.70, 0.90, 0.75]) + 0.002)
    assert signum["replicate_spread"] == pytest.approx(0.2)
    assert signum["ci_hi"] - signum["ci_lo"] > 0.2 > 10 * (adamw["ci_hi"] - adamw["ci_lo"])
    assert signum["rank_stable"] is False and adamw["rank_stable"] is False  # they swap places
    assert signum["vs_adamw_verdict"] == "inconclusive"  # one lucky replicate does not make a win
    md = leaderboard.render_markdown(board)
    assert "‡" in md and "replicates: spread of means" in md and "two-level" in md
    assert "one tuning study per optimizer" not in md


def test_one_replicate_says_the_interval_ignores_tuning_luck():
    board = leaderboard.compute(_replicate_frame({"adamw": [0.8], "signum": [0.7]}))
    md = leaderboard.render_markdown(board)
    assert "one tuning study per optimizer" in md and "not tuning luck" in md
    assert _row(board, "digits", "signum")["rank_stable"] is None
    assert math.isnan(_row(board, "digits", "signum")["replicate_spread"])


def test_replicates_pair_by_index_and_seed():
    # A constant +0.05 over adamw in every replicate and seed: a clear win, paired over 3 x 3 runs.
    frame = _replicate_frame({"adamw": [0.70, 0.80, 0.75], "signum": [0.75, 0.85, 0.80]})
    signum = _row(leaderboard.compute(frame), "digits", "signum")
    assert signum["vs_adamw_n"] == 9 and signum["vs_adamw_diff"] == pytest.approx(0.05)
    assert signum["vs_adamw_verdict"] == "better"


def test_softx_rows_say_when_they_share_the_parent_trajectory():
    branched = {("softsignum", 0, s): f"signum-0-{s}" for s in (1, 2, 3)}
    frame = _replicate_frame({"signum": [0.7], "softsignum": [0.71]}, branched=branched)
    board = leaderboard.compute(frame)
    soft = _row(board, "digits", "softsignum")
    assert soft["soft_ref"] == "signum" and soft["soft_shared"] is True and soft["soft_verdict"] == "better"
    assert "softsignum − signum (branched: same run to S)" in leaderboard.render_markdown(board)
    unbranched = _row(
        leaderboard.compute(_replicate_frame({"signum": [0.7], "softsignum": [0.71]})), "digits", "softsignum"
    )
    assert unbranched["soft_shared"] is False
    # HardSwitchSign pairs with Signum too (a fact of its registry spec, not a leaderboard table).
    hard = _row(
        leaderboard.compute(_replicate_frame({"signum": [0.7], "hardswitchsign": [0.69]})), "digits", "hardswitchsign"
    )
    assert hard["soft_ref"] == "signum" and hard["soft_verdict"] == "worse"
