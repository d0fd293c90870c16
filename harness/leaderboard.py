"""``optbench leaderboard``: which optimizer wins on each benchmark, by how much, and how sure we are.

A pure function of the run records under a results folder (``runs/*.parquet``): the same records
always give byte-identical CSV and Markdown (seeded bootstrap, floats printed with fixed rules).

What is compared
  A *benchmark* is one (task, dataset, size) -- plus a ``variant`` label when the records hold
  several task-option settings of the same (task, dataset, size), so different models are never
  ranked together. Per benchmark and optimizer the statistics use the **eval** rows (phase "eval":
  the tuned configuration re-run on fresh seeds, the same seeds for every optimizer); the value is
  the ``test_metric`` column (``--metric-split val``: ``val_metric``). An eval seed that diverged
  or failed counts in ``n_failed`` and is left out of the statistics. If a seed was evaluated more
  than once (re-tuned and re-evaluated), the latest record (``finished_at``) is used and a note
  says so. Failure rates come from the **tune** rows. The metric's direction (max/min) is read from
  each row's ``direction`` column. In a sweep's results folder (it holds ``sweep.yaml``, the last
  sweep file the folder accepted) only runs inside that file's budget count: tune trials
  0..trials-1, and the listed eval seeds of the best of those trials (a lowered budget is honoured
  exactly; a note says how many records were left out). A run the sweep gave up (it raised on every
  attempt) has a ``failed`` record and counts in ``n_failed`` or the tune failure rate.

Statistics (see ``harness.stats`` for the exact definitions)
  mean, sample std (ddof=1), 95% bootstrap CI of the mean: seeded (seed 0, 10,000 resamples),
  Hesterberg's *expanded percentile* interval (a percentile interval widened for small n);
  paired differences ``optimizer - reference`` over the seeds both have, with the same CI.
  Ranks show ties: competition ranking where entries whose CIs overlap the CI of their group's
  best entry share its rank (``harness.stats.tie_ranks``). The aggregate "average rank" is the
  GraphLand-style one: rank optimizers by mean on each benchmark (exact ties share the average
  rank), then average over benchmarks.

CSV columns (``leaderboard.csv``, one row per benchmark and optimizer; empty cell = undefined)
  task, dataset, size     the benchmark
  variant                 "" or the task options that tell apart several settings of one benchmark
  metric, direction       metric name; "max" or "min" (which way is better)
  split                   "test" or "val": which final metric the statistics use
  optimizer               registered optimizer name
  n_seeds                 eval runs with a finite value (the statistics' n; over all replicates)
  n_failed                eval runs that diverged or failed (excluded from the statistics)
  n_replicates            tuning replicates (independent studies) with a finite eval value
  mean, std               mean (of the replicate means, with replicates) and sample std (ddof=1)
                          over the n_seeds values
  ci_lo, ci_hi            95% CI of the mean: one replicate, a seeded bootstrap over eval seeds
                          (expanded percentile), which ignores tuning luck; several, the two-level
                          interval over replicates and seeds (``harness.stats.two_level_ci``)
  replicate_spread        max - min of the replicate means (empty with one replicate)
  rank_stable             false when the optimizer's rank by mean differs between replicates
                          (empty with one replicate)
  rank                    tie-aware competition rank on this benchmark (1 = best)
  rank_tied               true when another optimizer shares this rank (CIs overlap)
  mean_rank               rank by mean alone (exact ties averaged): what avg_rank averages
  vs_adamw_n              seeds shared with adamw (finite on both sides)
  vs_adamw_diff           mean paired difference optimizer - adamw, metric units
  vs_adamw_lo, vs_adamw_hi  95% bootstrap CI of that difference
  vs_adamw                win | tie | loss (win: CI excludes 0 on the better side; tie: CI holds 0
                          or a single shared seed); empty for adamw itself or without shared seeds
  soft_ref                the optimizer a switching optimizer is before its switch, which it is
                          paired with (softsignum, hardswitchsign -> signum; softmuon -> muon;
                          from the registry); empty for other optimizers
  soft_n, soft_diff, soft_lo, soft_hi, soft_outcome   the same paired statistics against soft_ref
  soft_shared             true when every paired run was branched from soft_ref's run of the same
                          seed (and replicate): the pair shares its trajectory up to S, and the
                          difference is the tail's alone
  tune_trials             tune rows for this benchmark and optimizer
  tune_failure_rate       fraction of them with status diverged or failed (pruned trials are
                          the tuner's decision, not failures, and are not counted)
  target                  the task's steps-to-target threshold (empty: the task has none)
  reached_target          eval seeds whose validation metric reached the target
  median_steps_to_target  median over all eval seeds, a seed that never reached counting as
                          infinite ("inf" when the median seed never reached it)
  hparams                 the evaluated configuration (JSON), "mixed" if the seeds disagree

Aggregate columns (``leaderboard_aggregate.csv``; one row per scope and optimizer)
  scope                   a task name (its benchmarks) or "all" (every benchmark)
  optimizer, n_benchmarks benchmarks in the scope where the optimizer has eval rows
  avg_rank, rank_std      mean and sample std of mean_rank over those benchmarks
  n_best                  benchmarks where its tie-aware rank is 1 (best or tied with the best)
  wins_vs_adamw, ties_vs_adamw, losses_vs_adamw   counts of the vs_adamw outcomes
  soft_wins, soft_ties, soft_losses               counts of soft_outcome (Soft* optimizers only)

Floats are written with 10 significant digits (``%.10g``), so goldens compare exactly.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness import stats
from harness.errors import UserError

BASELINE = "adamw"


def soft_ref(optimizer: str) -> str | None:
    """The optimizer ``optimizer`` *is* before its switch (SoftSignum -> Signum, SoftMuon -> Muon,
    HardSwitchSign -> Signum): a fact of its registry spec (``OptimizerSpec.branch_from``), and the
    baseline its SoftX-vs-X comparison is made against. None for every other optimizer."""
    from harness import plugins
    from harness.errors import UserError

    try:
        spec = plugins.optimizer(optimizer)
    except UserError:  # a record of a plugin that is not installed here: no pairing known
        return None
    return getattr(spec, "branch_from", None)
METRIC_SPLITS = ("test", "val")
FORMATS = ("csv", "md")
TABLES = ("benchmarks", "aggregate")
BENCH_KEYS = ("task", "dataset", "size", "variant")
FAILED = ("diverged", "failed")
FEW_SEEDS = 5  # below this many eval seeds the leaderboard notes that intervals are optimistic
REQUIRED = ("run_id", "schema_version", "suite", "task", "dataset", "size", "optimizer", "phase",
            "seed", "status", "metric", "direction", "val_metric", "test_metric")

COLUMNS = (
    "task", "dataset", "size", "variant", "metric", "direction", "split", "optimizer",
    "n_seeds", "n_failed", "n_replicates", "mean", "std", "ci_lo", "ci_hi", "replicate_spread", "rank_stable",
    "rank", "rank_tied", "mean_rank",
    "vs_adamw_n", "vs_adamw_diff", "vs_adamw_lo", "vs_adamw_hi", "vs_adamw",
    "soft_ref", "soft_n", "soft_diff", "soft_lo", "soft_hi", "soft_outcome", "soft_shared",
    "tune_trials", "tune_failure_rate", "target", "reached_target", "median_steps_to_target",
    "hparams",
)
AGGREGATE_COLUMNS = (
    "scope", "optimizer", "n_benchmarks", "avg_rank", "rank_std", "n_best",
    "wins_vs_adamw", "ties_vs_adamw", "losses_vs_adamw", "soft_wins", "soft_ties", "soft_losses",
)


@dataclass(frozen=True)
class Leaderboard:
    """The computed tables: ``rows`` (one dict per benchmark and optimizer, keys ``COLUMNS``),
    ``aggregate`` (keys ``AGGREGATE_COLUMNS``) and what they were computed from."""

    rows: tuple[dict, ...]
    aggregate: tuple[dict, ...]
    split: str
    suites: tuple[str, ...]
    schema_versions: tuple[int, ...]
    n_eval: int
    n_tune: int
    notes: tuple[str, ...]


# ----------------------------------------------------------------------------------------- loading

def load_runs(results: str | os.PathLike):
    """Read the run rows under ``results`` (a results folder or its runs/ folder).

    Returns ``(frame, skipped)`` where ``skipped`` lists one message per unreadable parquet file
    (named, left out). Raises ``UserError`` when the folder or its runs/ subfolder does not exist.
    """
    from harness import records

    root = records.results_root(results)
    if not root.exists():
        raise UserError(f"results folder {results} does not exist; give the --out folder of "
                        "optbench suite / sweep / run (e.g. results/demo)")
    if not records.runs_dir(root).is_dir():
        raise UserError(f"no run records under {root}: expected {records.runs_dir(root)}/*.parquet; "
                        "run optbench suite or optbench sweep first")
    skipped: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = records.read_runs(root, skipped=skipped)
    # read_runs names each skipped file in a warning whose text also says why; keep that text.
    messages = [str(w.message) for w in caught] or [f"skipping unreadable run file {s}" for s in skipped]
    frame, note = _within_sweep_budget(frame, root)
    return frame, messages + ([note] if note else [])


def _within_sweep_budget(frame, root: Path):
    """A sweep's results folder holds ``sweep.yaml``, the last sweep file it accepted: keep only the
    runs inside that file's budget (``harness.reconcile.within_budget``: the first ``trials`` tune
    slots, the listed eval seeds of the best of them), so a lowered budget is honoured exactly.
    Returns the rows and a note on what was left out ("" when nothing)."""
    budget = root / "sweep.yaml"
    if not budget.is_file() or len(frame) == 0 or "study" not in frame.columns:
        return frame, ""
    from harness import reconcile
    from harness import sweep as sw

    try:
        sweep = sw.load(budget)
    except UserError as exc:
        raise UserError(f"cannot read the budget of the sweep in {root}: {exc}") from None
    kept, dropped = reconcile.within_budget(frame, sweep)
    if not dropped:
        return frame, ""
    return kept, (f"{dropped} run record(s) outside the budget of {budget} are left out (tune trials beyond its "
                  "'trials', eval seeds it does not list, evaluations of a configuration that is not the best of "
                  "those trials, studies it does not plan)")


def check_consistent(frame, *, allow_mixed: bool = False, source: str = "") -> None:
    """Refuse records that mix schema versions or suites (unless ``allow_mixed``), and records
    that are not optbench run rows at all."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"{source or 'records'}: not optbench run records, missing columns "
                        f"{', '.join(missing)}")
    if allow_mixed:
        return
    for column, what in (("schema_version", "schema versions"), ("suite", "suites")):
        counts = frame[column].dropna().astype(str).value_counts().sort_index()
        if len(counts) > 1:
            listing = ", ".join(f"{k} ({v} runs)" for k, v in counts.items())
            raise UserError(
                f"records under {source or 'the results folder'} mix {what}: {listing}; "
                f"compare one {column.replace('_', ' ')} at a time (point at one suite's folder), "
                "or pass --allow-mixed to pool them anyway"
            )


# ------------------------------------------------------------------------------------- computing

def _display_key(name: str) -> tuple[int, str]:
    """Tables list optimizers in the built-in registry's order (each SoftX right after its X), then
    plugins alphabetically: the order is a fact of the registry, not of the leaderboard."""
    import optimizers

    order = list(optimizers.REGISTRY)
    return (order.index(name), "") if name in order else (len(order), name)


def _variants(frame) -> list[str]:
    """Per row: "" or a compact label of the task options (and step budget) that differ between
    settings of the same (task, dataset, size), e.g. ``model="sage"``: different models or budgets
    are different benchmarks and are never ranked together."""
    options = frame["task_options"] if "task_options" in frame.columns else [None] * len(frame)
    steps = frame["steps"] if "steps" in frame.columns else [None] * len(frame)
    parsed = []
    for value, budget in zip(options, steps):
        try:
            setting = json.loads(value) if isinstance(value, str) and value else {}
        except json.JSONDecodeError:
            setting = {"options": value}
        budget = _float(budget)
        setting["steps"] = int(budget) if math.isfinite(budget) else None
        parsed.append(setting)
    labels = [""] * len(frame)
    keys = list(zip(frame["task"], frame["dataset"], frame["size"]))
    by_bench: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        by_bench.setdefault(key, []).append(i)
    for idx in by_bench.values():
        distinct = {json.dumps(parsed[i], sort_keys=True) for i in idx}
        if len(distinct) < 2:
            continue
        names = sorted({k for i in idx for k in parsed[i]})
        differing = [k for k in names if len({json.dumps(parsed[i].get(k)) for i in idx}) > 1]
        for i in idx:
            labels[i] = ",".join(f"{k}={json.dumps(parsed[i].get(k))}" for k in differing)
    return labels


def latest_evals(evals):
    """Keep one eval row per (benchmark, optimizer, seed): the latest ``finished_at`` (run_id breaks
    ties), so a seed re-evaluated after re-tuning counts once. Needs the ``variant`` column.
    Returns (rows, number of superseded rows)."""
    finished = evals["finished_at"] if "finished_at" in evals.columns else None
    evals = evals.assign(_finished=finished.astype(str) if finished is not None else "",
                         _rid=evals["run_id"].astype(str))
    evals = evals.sort_values(["_finished", "_rid"], kind="stable")
    kept = evals.drop_duplicates(subset=[*BENCH_KEYS, "optimizer", "replicate", "seed"], keep="last")
    return kept.drop(columns=["_finished", "_rid"]), len(evals) - len(kept)


def _float(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def compute(frame, *, metric_split: str = "test", allow_mixed: bool = False, source: str = "") -> Leaderboard:
    """Compute the leaderboard from run rows (a DataFrame as ``harness.records.read_runs`` returns).

    Raises ``UserError`` for mixed schema versions/suites (unless ``allow_mixed``), when there are
    no eval rows, or when one benchmark's rows disagree on the metric or its direction.
    """
    if metric_split not in METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(METRIC_SPLITS)}")
    where = source or "the results folder"
    if len(frame) == 0:
        raise UserError(f"no run records under {where}: run optbench suite or optbench sweep first")
    check_consistent(frame, allow_mixed=allow_mixed, source=where)
    frame = frame.copy()
    for column in ("task", "dataset", "size", "optimizer", "phase", "status"):
        frame[column] = frame[column].fillna("").astype(str)  # a null key must not drop rows
    frame["variant"] = _variants(frame)
    for column in ("finished_at", "steps_to_target", "target", "hparams", "branched_from"):
        if column not in frame.columns:
            frame[column] = None
    if "replicate" not in frame.columns:
        frame["replicate"] = 0
    frame["replicate"] = frame["replicate"].fillna(0).astype(int)
    phases = frame["phase"].astype(str)
    evals = frame[phases == "eval"]
    tunes = frame[phases == "tune"]
    if len(evals) == 0:
        counts = ", ".join(f"{k}: {v}" for k, v in phases.value_counts().sort_index().items())
        raise UserError(
            f"no eval runs under {where} (found {counts}): the leaderboard compares the tuned "
            "configurations re-run on fresh seeds (phase eval); run optbench suite, or optbench "
            "sweep to the end, first"
        )
    notes: list[str] = []
    evals, superseded = latest_evals(evals)
    if superseded:
        notes.append(f"{superseded} older eval record(s) of an already evaluated seed were "
                     "superseded by the latest one")

    value_column = f"{metric_split}_metric"
    rows: list[dict] = []
    replicated = False
    for bench, group in sorted(evals.groupby(list(BENCH_KEYS), sort=False), key=lambda kv: kv[0]):
        task, dataset, size, variant = bench
        metrics = sorted(group["metric"].astype(str).unique())
        directions = sorted(group["direction"].astype(str).unique())
        if len(metrics) != 1 or len(directions) != 1 or directions[0] not in ("max", "min"):
            raise UserError(f"eval records of {task}/{dataset} ({size}) disagree on the metric: "
                            f"metric {metrics}, direction {directions}; they cannot be ranked together")
        metric, direction = metrics[0], directions[0]
        bench_tunes = tunes[(tunes["task"] == task) & (tunes["dataset"] == dataset)
                            & (tunes["size"] == size) & (tunes["variant"] == variant)]
        per_opt: dict[str, dict] = {}
        for optimizer, runs in group.groupby("optimizer", sort=False):
            ok = runs["status"].astype(str) == "ok"
            values = {(int(r), int(s)): (_float(v) if good else math.nan)
                      for r, s, v, good in zip(runs["replicate"], runs["seed"], runs[value_column], ok)}
            values = {k: v if math.isfinite(v) else math.nan for k, v in values.items()}
            per_opt[str(optimizer)] = {"values": values, "runs": runs}
        names = sorted(per_opt, key=_display_key)
        summary = {name: _summarise(per_opt[name]["values"]) for name in names}
        if any(s.n_replicates > 1 for s in summary.values()):
            replicated = True
        means = [summary[n].mean for n in names]
        ranks = stats.tie_ranks(means, [summary[n].lo for n in names], [summary[n].hi for n in names], direction)
        by_mean = stats.mean_ranks(means, direction)
        stable = _rank_stability(names, per_opt, direction)
        for j, name in enumerate(names):
            values, runs = per_opt[name]["values"], per_opt[name]["runs"]
            summ = summary[name]
            row = {
                "task": task, "dataset": dataset, "size": size, "variant": variant,
                "metric": metric, "direction": direction, "split": metric_split, "optimizer": name,
                "n_seeds": sum(math.isfinite(v) for v in values.values()),
                "n_failed": sum(not math.isfinite(v) for v in values.values()),
                "n_replicates": summ.n_replicates,
                "mean": summ.mean, "std": summ.std, "ci_lo": summ.lo, "ci_hi": summ.hi,
                "replicate_spread": summ.spread, "rank_stable": stable.get(name),
                "rank": int(ranks[j]),
                "rank_tied": bool(np.sum(ranks == ranks[j]) > 1),
                "mean_rank": float(by_mean[j]),
            }
            row.update(_paired("vs_adamw", values, per_opt.get(BASELINE), direction,
                               skip=name == BASELINE))
            ref = soft_ref(name)
            soft = _paired("soft", values, per_opt.get(ref) if ref else None, direction, skip=ref is None)
            row["soft_ref"] = ref or ""
            row.update({"soft_n": soft["soft_n"], "soft_diff": soft["soft_diff"],
                        "soft_lo": soft["soft_lo"], "soft_hi": soft["soft_hi"],
                        "soft_outcome": soft["soft"],
                        "soft_shared": _shared_trajectory(runs, per_opt.get(ref)) if ref else None})
            row.update(_tune_stats(bench_tunes[bench_tunes["optimizer"] == name]))
            row.update(_target_stats(runs))
            configs = sorted(set(runs["hparams"].astype(str)))
            row["hparams"] = configs[0] if len(configs) == 1 else "mixed"
            rows.append(row)

    fewest = min((r["n_seeds"] for r in rows if r["n_seeds"] > 0), default=0)
    if 0 < fewest < FEW_SEEDS:
        # The bootstrap cannot see beyond the values it has: with n seeds an interval is at most
        # their range, which holds the true mean with probability 1 - 2 * 0.5**n (75% for n = 3).
        notes.append(
            f"some entries rest on only {fewest} seed(s); a bootstrap interval from n seeds is at most "
            f"their range (for n = 3 and symmetric noise it misses the true mean at least 25% of the time), so read win/loss "
            f"and rank there as indicative; more eval seeds tighten them"
        )
    if not replicated:
        notes.append(
            "one tuning study per optimizer: the intervals cover eval-seed noise around the one configuration "
            "each study found, not tuning luck (which configuration a study happens to find, often the larger "
            "effect); run the sweep with replicates: R > 1 for intervals that include it"
        )
    else:
        notes.append(
            "with tuning replicates the mean is the mean of the replicate means and the interval is two-level "
            "(replicates, then seeds within each; see harness.stats.two_level_ci); paired differences pair "
            "replicate r with replicate r and, within them, the runs that share an eval seed"
        )
    suites = tuple(sorted(frame["suite"].dropna().astype(str).unique()))
    versions = tuple(sorted({int(v) for v in frame["schema_version"].dropna()}))
    return Leaderboard(rows=tuple(rows), aggregate=tuple(_aggregate(rows)), split=metric_split,
                       suites=suites, schema_versions=versions, n_eval=len(evals), n_tune=len(tunes),
                       notes=tuple(notes))


@dataclass(frozen=True)
class _Summary:
    n_replicates: int
    mean: float
    std: float
    lo: float
    hi: float
    spread: float


def _summarise(values: dict[tuple[int, int], float]) -> _Summary:
    """Mean, std and CI of eval values keyed by (replicate, seed): with one replicate the seed
    bootstrap (``stats.bootstrap_ci``); with several the two-level interval (``stats.two_level_ci``)."""
    groups: dict[int, list[float]] = {}
    for (rep, _), v in sorted(values.items()):
        groups.setdefault(rep, []).append(v)
    finite = {r: [v for v in g if math.isfinite(v)] for r, g in groups.items()}
    finite = {r: g for r, g in finite.items() if g}
    _, std = stats.mean_std(values.values())
    if len(finite) <= 1:
        flat = [v for g in finite.values() for v in g]
        mean, _ = stats.mean_std(flat)
        lo, hi = stats.bootstrap_ci(flat)
        return _Summary(len(finite), mean, std, lo, hi, math.nan)
    two = stats.two_level_ci([finite[r] for r in sorted(finite)])
    return _Summary(len(finite), two.mean, std, two.lo, two.hi, two.spread)


def _rank_stability(names: Sequence[str], per_opt: dict, direction: str) -> dict[str, bool]:
    """Per optimizer: does its rank by mean stay the same in every replicate (the optimizers compared
    within replicate r on r's seeds)? Empty when the benchmark has one replicate."""
    reps = sorted({r for name in names for r, _ in per_opt[name]["values"]})
    if len(reps) < 2:
        return {}
    ranks: dict[str, set[float]] = {name: set() for name in names}
    for rep in reps:
        means = []
        for name in names:
            vals = [v for (r, _), v in per_opt[name]["values"].items() if r == rep and math.isfinite(v)]
            means.append(float(np.mean(vals)) if vals else math.nan)
        for name, rank in zip(names, stats.mean_ranks(means, direction)):
            ranks[name].add(float(rank))
    return {name: len(r) == 1 for name, r in ranks.items()}


def _shared_trajectory(runs, other: dict | None) -> bool | None:
    """True when every run of ``runs`` started from the checkpoint of ``other``'s run with the same
    replicate and seed (a branch: the pair is identical up to S). None without a partner."""
    if other is None:
        return None
    parents = {(int(r), int(s)): str(rid) for r, s, rid in
               zip(other["runs"]["replicate"], other["runs"]["seed"], other["runs"]["run_id"])}
    pairs = [(parents.get((int(r), int(s))), str(b or "")) for r, s, b in
             zip(runs["replicate"], runs["seed"], runs["branched_from"])]
    pairs = [(p, b) for p, b in pairs if p is not None]
    return bool(pairs) and all(p == b for p, b in pairs)


def _paired(prefix: str, values: dict, other: dict | None, direction: str, *, skip: bool) -> dict:
    """``values - other`` over the (replicate, seed) pairs both have: the seed-paired bootstrap with
    one replicate, the two-level interval (replicate r with r) with several."""
    keys = (f"{prefix}_n", f"{prefix}_diff", f"{prefix}_lo", f"{prefix}_hi", prefix)
    if skip:
        return dict(zip(keys, (None, math.nan, math.nan, math.nan, "")))
    if other is None:
        return dict(zip(keys, (0, math.nan, math.nan, math.nan, "")))
    reps = {r for r, _ in values} | {r for r, _ in other["values"]}
    if len(reps) > 1:
        n, d = stats.two_level_paired(values, other["values"])
        return dict(zip(keys, (n, d.mean, d.lo, d.hi, stats.outcome(d.lo, d.hi, direction, n))))
    d = stats.paired_difference({s: v for (_, s), v in values.items()},
                                {s: v for (_, s), v in other["values"].items()})
    return dict(zip(keys, (d.n, d.mean, d.lo, d.hi, stats.outcome(d.lo, d.hi, direction, d.n))))


def _tune_stats(tunes) -> dict:
    n = len(tunes)
    failed = int(tunes["status"].astype(str).isin(FAILED).sum()) if n else 0
    return {"tune_trials": n, "tune_failure_rate": failed / n if n else math.nan}


def _target_stats(runs) -> dict:
    targets = [t for t in (_float(v) for v in runs["target"]) if math.isfinite(t)]
    if not targets:
        return {"target": math.nan, "reached_target": None, "median_steps_to_target": math.nan}
    steps = [_float(v) for v in runs["steps_to_target"]]
    steps = [s if math.isfinite(s) else math.inf for s in steps]
    return {
        "target": targets[0],
        "reached_target": sum(math.isfinite(s) for s in steps),
        "median_steps_to_target": float(np.median(steps)),
    }


def _aggregate(rows: Sequence[dict]) -> list[dict]:
    scopes = sorted({r["task"] for r in rows}) + ["all"]
    out = []
    for scope in scopes:
        scoped = [r for r in rows if scope == "all" or r["task"] == scope]
        for name in sorted({r["optimizer"] for r in scoped}, key=_display_key):
            mine = [r for r in scoped if r["optimizer"] == name]
            ranks = [r["mean_rank"] for r in mine]
            vs = [r["vs_adamw"] for r in mine]
            soft = [r["soft_outcome"] for r in mine]
            is_soft = soft_ref(name) is not None
            out.append({
                "scope": scope, "optimizer": name, "n_benchmarks": len(mine),
                "avg_rank": float(np.mean(ranks)),
                "rank_std": float(np.std(ranks, ddof=1)) if len(ranks) > 1 else math.nan,
                "n_best": sum(r["rank"] == 1 for r in mine),
                "wins_vs_adamw": vs.count("win") if name != BASELINE else None,
                "ties_vs_adamw": vs.count("tie") if name != BASELINE else None,
                "losses_vs_adamw": vs.count("loss") if name != BASELINE else None,
                "soft_wins": soft.count("win") if is_soft else None,
                "soft_ties": soft.count("tie") if is_soft else None,
                "soft_losses": soft.count("loss") if is_soft else None,
            })
    return out


# --------------------------------------------------------------------------------------- rendering

def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.10g}"
    return str(value)


def render_csv(board: Leaderboard, table: str = "benchmarks") -> str:
    """The tidy per-benchmark table (``table="benchmarks"``) or the aggregate table as CSV text."""
    if table not in TABLES:
        raise UserError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    columns, rows = (COLUMNS, board.rows) if table == "benchmarks" else (AGGREGATE_COLUMNS, board.aggregate)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_cell(row[c]) for c in columns])
    return buf.getvalue()


def render_markdown(board: Leaderboard, title: str | None = None) -> str:
    """Paper-style Markdown of ``board`` (``harness.leaderboard_md``)."""
    from harness.leaderboard_md import render_markdown as render

    return render(board, title)


# ------------------------------------------------------------------------------------------ output

def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(results, *, metric_split: str = "test", allow_mixed: bool = False) -> tuple[Leaderboard, list[str]]:
    """Load ``results`` (a results folder path, or a DataFrame of run rows) and compute the
    leaderboard. Returns it with the messages about skipped unreadable files."""
    if isinstance(results, (str, os.PathLike)):
        frame, skipped = load_runs(results)
        source = str(results)
    else:
        frame, skipped, source = results, [], ""
    return compute(frame, metric_split=metric_split, allow_mixed=allow_mixed, source=source), skipped


def write(results, out_dir, formats: Sequence[str] = ("csv", "md"), metric_split: str = "test",
          *, allow_mixed: bool = False) -> list[Path]:
    """Write the leaderboard of ``results`` (a results folder or a DataFrame of run rows) into
    ``out_dir``: ``leaderboard.csv`` + ``leaderboard_aggregate.csv`` for "csv", ``leaderboard.md``
    for "md". Files are replaced atomically. Returns the paths written. Unreadable run files are
    named in a ``warnings.warn`` each and skipped."""
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"unknown leaderboard format(s) {bad or formats}; known: {', '.join(FORMATS)}")
    from harness.outputs import writable_dir

    writable_dir(out_dir, "leaderboard folder")  # before any work: refuse now, not after computing
    board, skipped = build(results, metric_split=metric_split, allow_mixed=allow_mixed)
    for message in skipped:
        warnings.warn(message, stacklevel=2)
    out = Path(out_dir)
    paths = []
    if "csv" in formats:
        for name, table in (("leaderboard.csv", "benchmarks"), ("leaderboard_aggregate.csv", "aggregate")):
            _atomic_write_text(out / name, render_csv(board, table))
            paths.append(out / name)
    if "md" in formats:
        _atomic_write_text(out / "leaderboard.md", render_markdown(board))
        paths.append(out / "leaderboard.md")
    return paths


# --------------------------------------------------------------------------------------------- CLI

def register(subparsers) -> None:
    """Add ``optbench leaderboard``."""
    p = subparsers.add_parser(
        "leaderboard",
        help="per-benchmark statistics, ranks and paired differences from run records",
        description="Leaderboard from the eval runs under RESULTS: mean, std, 95% bootstrap CI, "
                    "tie-aware rank, paired differences to AdamW and SoftX vs X, tune failure rate, "
                    "steps to target, average rank. Column docs: python -c 'import harness.leaderboard "
                    "as m; print(m.__doc__)'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS", help="results folder (holds runs/), e.g. results/demo")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="csv (tidy) or md (paper tables); default: from --out's suffix, else md")
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument("--metric-split", choices=METRIC_SPLITS, default="test",
                   help="which final metric to compare (default test)")
    p.add_argument("--table", choices=TABLES, default="benchmarks",
                   help="csv only: the per-benchmark table (default) or the aggregate table")
    p.add_argument("--allow-mixed", action="store_true",
                   help="pool records of different suites or schema versions")
    p.set_defaults(func=_main)


def _main(args) -> int:
    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        fmt = suffix if suffix in FORMATS else "md"
    if fmt == "md" and args.table != "benchmarks":
        raise UserError("--table applies to --format csv; the Markdown always holds both tables")
    if args.out:
        from harness.outputs import writable_file

        writable_file(args.out, "leaderboard file (--out)")  # before any work: refuse now, not after
    board, skipped = build(args.results, metric_split=args.metric_split, allow_mixed=args.allow_mixed)
    for message in skipped:
        print(f"optbench leaderboard: warning: {message}", file=sys.stderr)
    text = render_csv(board, args.table) if fmt == "csv" else render_markdown(board)
    if args.out:
        _atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
