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
    **{f"vs_adamw_{v}": f"benchmarks where its verdict vs adamw is '{v}'"
       for v in ("better", "worse", "equivalent", "inconclusive")},
    **{f"soft_{v}": f"benchmarks where its verdict vs soft_ref is '{v}' (switching optimizers only)"
       for v in ("better", "worse", "equivalent", "inconclusive")},
}

COLUMNS = tuple(BENCHMARK_COLUMNS)
AGGREGATE = tuple(AGGREGATE_COLUMNS)


def describe() -> str:
    """Every column with its meaning, as text (``optbench leaderboard --columns``)."""
    lines = ["leaderboard.csv (one row per benchmark and optimizer):"]
    lines += [f"  {name:<26} {doc}" for name, doc in BENCHMARK_COLUMNS.items()]
    lines += ["", "leaderboard_aggregate.csv (one row per scope and optimizer):"]
    lines += [f"  {name:<26} {doc}" for name, doc in AGGREGATE_COLUMNS.items()]
    return "\n".join(lines) + "\n"
