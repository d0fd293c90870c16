"""The leaderboard's CSV columns, each with its meaning: the one list the computation fills, the CSV
writes, ``optbench leaderboard --help`` points to and ``docs/leaderboard.md`` documents.

A *benchmark* is one (task, dataset, size, variant); a *comparison* is the paired difference
``optimizer - reference`` over the (replicate, seed) pairs both have, with its verdict against the
benchmark's practical margin (``harness.leaderboard.compare``). Empty cell = undefined.
"""

from __future__ import annotations

# Per comparison (prefix ``vs_adamw``, ``soft`` or ``vs_best``): the same nine fields.
COMPARISON_FIELDS: dict[str, str] = {
    "n": "paired runs (replicate r with replicate r, runs sharing an eval seed within)",
    "diff": "mean paired difference optimizer - reference, metric units (unrounded)",
    "lo": "lower bound of its 95% interval (unrounded)",
    "hi": "upper bound of its 95% interval (unrounded)",
    "verdict": "better | worse | equivalent | inconclusive (see docs/leaderboard.md#verdicts); empty when "
    "there is nothing to compare",
    "excludes_zero": "true when the interval excludes 0 (an 'equivalent' verdict can still exclude 0: a real "
    "effect smaller than the margin)",
    "mde": "minimum detectable effect at 80% power for the measured variance components and this design",
    "replicates_needed": "tuning replicates (at the current eval seeds) that would bring the MDE under the "
    "margin; empty when impossible within 100 or undefined (see need_note)",
    "seeds_needed": "eval seeds per replicate (at the current replicates) that would bring the MDE under the "
    "margin; empty when seeds alone cannot (tuning luck dominates) or undefined",
}

BENCHMARK_COLUMNS: dict[str, str] = {
    "task": "task family",
    "dataset": "dataset",
    "size": "tiny | small | paper",
    "variant": "'' or the task options that tell apart several settings of one (task, dataset, size)",
    "metric": "metric name",
    "direction": "max | min (which way is better)",
    "split": "test | val: which final metric the statistics use",
    "margin": "the benchmark's practical margin in metric units: differences inside +-margin do not matter",
    "margin_rule": "where the margin comes from: the sweep file, --margin, or the documented default",
    "optimizer": "optimizer name",
    "n_seeds": "eval runs with a finite value (over all replicates)",
    "n_failed": "eval runs that diverged or failed (left out of the statistics)",
    "n_replicates": "tuning replicates (independent studies) with a finite eval value",
    "mean": "mean of the replicate means (with one replicate: of the seeds)",
    "std": "sample standard deviation (ddof=1) over the n_seeds values",
    "ci_lo": "95% interval of the mean, lower bound; two-level over replicates and seeds with R > 1, a t "
    "interval over seeds with R = 1 (ignores tuning luck); clipped to the metric's range",
    "ci_hi": "95% interval of the mean, upper bound (same rules)",
    "replicate_spread": "max - min of the replicate means (empty with one replicate)",
    "rank_stable": "false when the optimizer's rank changes between replicates (ranked per replicate by "
    "replicate means, with the same margin); empty with one replicate",
    "rank": "1 + the number of optimizers decisively better on this benchmark (verdict 'better' against it)",
    "rank_tied": "true when another optimizer has the same rank",
    "mean_rank": "rank by mean alone (exact ties averaged): what avg_rank averages",
    "best_mean": "true for the optimizer with the best mean (ties: every one of them)",
    **{f"vs_best_{k}": f"vs the best-mean optimizer: {v}" for k, v in COMPARISON_FIELDS.items()},
    **{f"vs_adamw_{k}": f"vs adamw: {v}" for k, v in COMPARISON_FIELDS.items()},
    "soft_ref": "the optimizer a switching optimizer is before its switch (softsignum, hardswitchsign -> "
    "signum; softmuon -> muon), its SoftX-vs-X reference; empty for others",
    **{f"soft_{k}": f"vs soft_ref: {v}" for k, v in COMPARISON_FIELDS.items()},
    "soft_shared": "true when every paired run was branched from soft_ref's run of the same seed and replicate "
    "(the pair shares its trajectory up to S; the difference is the tail's alone)",
    "need_note": "why a replicates_needed cell is empty (one replicate, no margin, beyond the cap)",
    "tune_trials": "tune runs of this benchmark and optimizer",
    "tune_failure_rate": "fraction of them that diverged or failed (pruned trials are not failures)",
    "target": "the steps-to-target threshold on the validation metric (empty: none)",
    "reached_target": "eval runs whose validation metric reached the target",
    "median_steps_to_target": "median over all eval runs, a run that never reached counting as infinite",
    "hparams": "the evaluated configuration (JSON); 'mixed' when replicates or seeds disagree",
}

AGGREGATE_COLUMNS: dict[str, str] = {
    "scope": "a task name (its benchmarks) or 'all'",
    "optimizer": "optimizer name",
    "n_benchmarks": "benchmarks in the scope where the optimizer has eval runs",
    "avg_rank": "mean of mean_rank over those benchmarks (GraphLand-style average rank)",
    "rank_std": "sample std of mean_rank over those benchmarks",
    "n_best": "benchmarks where its rank is 1 (no optimizer decisively better)",
    **{
        f"vs_adamw_{v}": f"benchmarks where its verdict vs adamw is '{v}'"
        for v in ("better", "worse", "equivalent", "inconclusive")
    },
    **{
        f"soft_{v}": f"benchmarks where its verdict vs soft_ref is '{v}' (switching optimizers only)"
        for v in ("better", "worse", "equivalent", "inconclusive")
    },
}

_KEY = {
    "task": "task family",
    "dataset": "dataset",
    "size": "tiny | small | paper",
    "variant": "the benchmark's variant without the condition the table runs along ('' when nothing else differs)",
    "metric": "metric name",
    "direction": "max | min (which way is better)",
}
_PLAIN = {k: v for k, v in COMPARISON_FIELDS.items()}

BUDGET_COLUMNS: dict[str, str] = {
    **_KEY,
    "budget": "fraction of the full step budget the runs trained (a WSD decay branch; 1 = all)",
    "optimizer": "entry: optimizer name, with its hyperparameter-axis values as name[key=value,...]",
    **{
        k: f"at this budget: {BENCHMARK_COLUMNS[k]}"
        for k in (
            "n_seeds",
            "n_failed",
            "mean",
            "ci_lo",
            "ci_hi",
            "rank",
            "best_mean",
            "vs_best_verdict",
            "vs_adamw_diff",
            "vs_adamw_lo",
            "vs_adamw_hi",
            "vs_adamw_verdict",
            "soft_ref",
            "soft_diff",
            "soft_lo",
            "soft_hi",
            "soft_verdict",
        )
    },
    "best_changes": "true when the best-mean optimizer of this benchmark differs between its budgets",
}

TIME_COLUMNS: dict[str, str] = {
    **{k: BENCHMARK_COLUMNS[k] for k in ("task", "dataset", "size", "variant", "metric", "direction")},
    "optimizer": "entry: optimizer name, with its hyperparameter-axis values as name[key=value,...]",
    "budget": "fraction of the full step budget the runs trained",
    "target": "validation-metric target (the full budget's, for every budget of the benchmark)",
    "target_rule": "'declared in the records' (the task's or the sweep file's target) or 'derived: median final "
    "validation <metric> of <reference> at the full budget' (adamw, else the first in registry "
    "order), or why there is none",
    "n_runs": "eval runs of this entry on this benchmark",
    "n_missing": "of them, runs without a readable curves file (left out)",
    "reached": "runs whose validation curve reached the target",
    "median_steps": "median steps to the target over the runs, a miss counting as inf (inf: most runs missed)",
    "steps_lo": "95% percentile-bootstrap interval of that median, lower bound (seeded; may be inf)",
    "steps_hi": "upper bound (may be inf)",
    "median_seconds": "median training seconds (evaluation excluded) to the target, a miss counting as inf",
    "seconds_lo": "95% bootstrap interval of that median, lower bound",
    "seconds_hi": "upper bound",
}

PROFILE_COLUMNS: dict[str, str] = {
    "condition": "the conditions of the profile's benchmarks that are not at their defaults ('' = no delay, "
    "no cell conditions); full-budget benchmarks only",
    "measure": "steps | seconds: which time-to-target median the ratios are taken of",
    "optimizer": "entry",
    "n_benchmarks": "benchmarks (workloads) in the profile",
    "n_ran": "of them, benchmarks where the entry has eval runs (a missing one counts as a miss)",
    "score": "AlgoPerf integrated performance-profile score, r_max = 4, in [0, 1]: 1 = fastest everywhere",
}

DELAY_COLUMNS: dict[str, str] = {
    **_KEY,
    "optimizer": "entry",
    "delay": "gradient delay d (steps) of the delayed runs",
    "margin": "the delay-0 benchmark's practical margin (metric units)",
    "mean_delay0": "the entry's mean at delay 0",
    "mean_delayed": "its mean at delay d",
    **{k: f"metric(delay d) - metric(delay 0), paired by replicate and seed: {v}" for k, v in _PLAIN.items()},
    "degradation": "what the delay cost, in the better direction: > 0 = worse under delay (metric units)",
    "rank_by_degradation": "1 = loses least, per benchmark and delay",
}

AXIS_COLUMNS: dict[str, str] = {
    "axis": "the sweep axis (a key of the records' cell)",
    "kind": "condition (its values are benchmarks of their own) | hyperparameter (entries of their own)",
    "comparison": "along: the cell at value minus the cell at ref_value (the axis's smallest value); soft: "
    "SoftX - X in the cell at value",
    **_KEY,
    "family": "the entry without this axis (one line of the metric-vs-axis plot)",
    "optimizer": "the entry at value",
    "value": "the axis value",
    "reference": "what the comparison is against: the same family at ref_value (along) or X (soft); '' for the "
    "reference cell itself",
    "ref_value": "along: the axis's reference value; soft: value",
    "margin": "practical margin of the reference cell's benchmark (metric units)",
    "mean": "the entry's mean at value",
    "ci_lo": "its 95% interval, lower bound",
    "ci_hi": "upper bound",
    "n_seeds": "its eval runs with a finite value",
    **{k: f"the comparison: {v}" for k, v in _PLAIN.items()},
}

COLUMNS = tuple(BENCHMARK_COLUMNS)
AGGREGATE = tuple(AGGREGATE_COLUMNS)
# The --table choices beyond benchmarks and aggregate: name -> (columns, what a row is)
EXTRA_TABLES: dict[str, tuple[dict[str, str], str]] = {
    "budgets": (BUDGET_COLUMNS, "metric vs budget: one row per benchmark, budget and optimizer"),
    "time_to_target": (TIME_COLUMNS, "time to target: one row per benchmark and optimizer"),
    "profile": (PROFILE_COLUMNS, "time-to-target performance profiles: one row per condition, measure and optimizer"),
    "delay": (DELAY_COLUMNS, "delay robustness: one row per benchmark, delay and optimizer"),
    "axes": (AXIS_COLUMNS, "ablation axes: one row per axis, benchmark, cell and comparison"),
}


def describe() -> str:
    """Every column with its meaning, as text (``optbench leaderboard --columns``)."""
    lines = ["leaderboard.csv (one row per benchmark and optimizer):"]
    lines += [f"  {name:<26} {doc}" for name, doc in BENCHMARK_COLUMNS.items()]
    lines += ["", "leaderboard_aggregate.csv (one row per scope and optimizer):"]
    lines += [f"  {name:<26} {doc}" for name, doc in AGGREGATE_COLUMNS.items()]
    for table, (columns, what) in EXTRA_TABLES.items():
        lines += ["", f"--table {table} ({what}):"]
        lines += [f"  {name:<26} {doc}" for name, doc in columns.items()]
    lines += [
        "",
        "Ad-hoc folders (runs of optbench run, no sweep): both main tables end with",
        f"  {'caveat':<26} {CAVEAT}",
    ]
    return "\n".join(lines) + "\n"


CAVEAT = (
    "why these numbers compare configurations that were not tuned alike (the runs of each optimizer are "
    "its evaluations); a sweep's tables have no such column"
)
