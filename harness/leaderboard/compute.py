"""``compute``: the leaderboard as a pure function of run rows, in named steps.

1. ``load.prepare``: key columns, benchmark variants; eval rows de-duplicated per seed.
2. per benchmark (``_benchmark``): each optimizer's values keyed by (replicate, seed) and its
   ``Summary``; the benchmark's margin; every pairwise ``Comparison``; ranks from them.
3. ``_row``: one CSV row per benchmark and optimizer, read off the summary and the comparisons.
4. ``_notes`` and ``aggregate.table``.

The same records always give the same tables, byte for byte (no resampling: the intervals are
closed-form).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.errors import UserError
from harness.leaderboard import aggregate
from harness.leaderboard.compare import (
    Comparison,
    Summary,
    Values,
    pairwise,
    rank_stability,
    ranks,
    summarise,
)
from harness.leaderboard.load import (
    BENCH_KEYS,
    ROOT_ATTR,
    as_float,
    check_consistent,
    display_key,
    latest_evals,
    prepare,
    soft_entry,
)
from harness.leaderboard.margins import MarginPolicy, reference_of
from harness.stats import intervals as stats
from harness.vocab import Metric

BASELINE = "adamw"
METRIC_SPLITS = ("test", "val")
FAILED = ("diverged", "failed")
FEW_SEEDS = 5  # below this many eval seeds per entry the leaderboard says its intervals are rough


@dataclass(frozen=True)
class Leaderboard:
    """The computed tables: ``rows`` (one dict per benchmark and optimizer, keys
    ``columns.COLUMNS``), ``aggregate`` (keys ``columns.AGGREGATE``) and what they came from."""

    rows: tuple[dict, ...]
    aggregate: tuple[dict, ...]
    split: str
    suites: tuple[str, ...]
    schema_versions: tuple[int, ...]
    n_eval: int
    n_tune: int
    notes: tuple[str, ...]
    # The condition and axis analyses (``harness.leaderboard.conditions.Extras``: metric vs budget,
    # time-to-target, delay robustness, axes), computed when first asked for.
    extras: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's evidence: per optimizer its eval values and summary, the margin, and every
    pairwise comparison."""

    key: tuple[str, str, str, str]
    metric: Metric
    names: tuple[str, ...]
    values: dict[str, Values]
    summaries: dict[str, Summary]
    margin: float
    margin_rule: str
    pairs: dict[tuple[str, str], Comparison]
    ranks: dict[str, int]
    stable: dict[str, bool]
    run_ids: dict[str, dict[tuple[int, int], str]]
    setting: str = ""  # the task-options part of the variant
    condition: str = ""  # the conditions part of the variant ("" when no condition differs)
    conditions: dict = field(default_factory=dict)  # every condition value of its runs (budget, delay, cell's)

    def comparison(self, a: str, b: str | None) -> Comparison | None:
        """``a - b``, or None when ``b`` is absent, missing from this benchmark, or ``a`` itself."""
        if b is None or b == a or b not in self.values:
            return None
        return self.pairs[(a, b)]

    @property
    def best(self) -> list[str]:
        """The optimizer(s) with the best mean."""
        best = self.metric.best(s.mean for s in self.summaries.values())
        return [n for n in self.names if self.summaries[n].mean == best]


def compute(
    frame,
    *,
    metric_split: str = "test",
    allow_mixed: bool = False,
    source: str = "",
    margins: MarginPolicy | None = None,
    curves=None,
) -> Leaderboard:
    """The leaderboard of run rows (a DataFrame as ``harness.results.store.read_runs`` returns).

    ``curves``: the runs' curves (a long DataFrame as ``store.read_curves`` returns), for the
    time-to-target table; None: read from the folder ``load.load_runs`` read the rows from, when
    first needed (a frame from elsewhere then has no time-to-target table).

    ``UserError`` for mixed schema versions or suites (unless ``allow_mixed``), no eval rows, or a
    benchmark whose rows disagree on the metric or its direction."""
    if metric_split not in METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(METRIC_SPLITS)}")
    where = source or "the results folder"
    if len(frame) == 0:
        raise UserError(f"no run records under {where}: run optbench suite or optbench sweep first")
    check_consistent(frame, allow_mixed=allow_mixed, source=where)
    root = frame.attrs.get(ROOT_ATTR)
    frame = prepare(frame)
    evals, tunes = frame[frame["phase"] == "eval"], frame[frame["phase"] == "tune"]
    if len(evals) == 0:
        counts = ", ".join(f"{k}: {v}" for k, v in frame["phase"].value_counts().sort_index().items())
        raise UserError(
            f"no eval runs under {where} (found {counts}): the leaderboard compares the tuned "
            "configurations re-run on fresh seeds (phase eval); run optbench suite, or optbench "
            "sweep to the end, first"
        )
    evals, superseded = latest_evals(evals)
    policy = margins or MarginPolicy()
    rows: list[dict] = []
    benches: list[Benchmark] = []
    for key, group in sorted(evals.groupby(list(BENCH_KEYS), sort=False), key=lambda kv: kv[0]):
        bench = _benchmark(key, group, f"{metric_split}_metric", policy)
        benches.append(bench)
        bench_tunes = tunes[(tunes[list(BENCH_KEYS)] == list(key)).all(axis=1)]
        runs = {name: g for name, g in group.groupby("optimizer", sort=False)}
        rows += [
            _row(bench, name, runs[name], bench_tunes[bench_tunes["optimizer"] == name], metric_split)
            for name in bench.names
        ]
    suites = tuple(sorted(frame["suite"].dropna().astype(str).unique()))
    versions = tuple(sorted({int(v) for v in frame["schema_version"].dropna()}))
    from harness.leaderboard.conditions import Extras

    extras = Extras(tuple(benches), tuple(rows), evals, cell_keys(frame), curves=curves, root=root)
    return Leaderboard(
        rows=tuple(rows),
        aggregate=tuple(aggregate.table(rows)),
        split=metric_split,
        suites=suites,
        schema_versions=versions,
        n_eval=len(evals),
        n_tune=len(tunes),
        notes=tuple(_notes(rows, superseded)),
        extras=extras,
    )


def cell_keys(frame) -> tuple[str, ...]:
    """The axes of the records: every key of a ``cell``, sorted."""
    from harness.leaderboard.load import parse_cell

    if "cell" not in frame.columns:
        return ()
    return tuple(sorted({k for value in set(frame["cell"].dropna().astype(str)) for k in parse_cell(value)}))


def _metric(key: tuple, group) -> Metric:
    metrics = sorted(group["metric"].astype(str).unique())
    directions = sorted(group["direction"].astype(str).unique())
    if len(metrics) != 1 or len(directions) != 1 or directions[0] not in ("max", "min"):
        task, dataset, size, _ = key
        raise UserError(
            f"eval records of {task}/{dataset} ({size}) disagree on the metric: "
            f"metric {metrics}, direction {directions}; they cannot be ranked together"
        )
    return Metric(metrics[0], directions[0])


def _values(runs, column: str) -> Values:
    """(replicate, seed) -> value; NaN for a run that did not end ``ok`` or has no finite value."""
    out = {}
    for rep, seed, value, status in zip(runs["replicate"], runs["seed"], runs[column], runs["status"]):
        v = as_float(value) if status == "ok" else math.nan
        out[(int(rep), int(seed))] = v if math.isfinite(v) else math.nan
    return out


def _benchmark(key: tuple, group, column: str, policy: MarginPolicy) -> Benchmark:
    metric = _metric(key, group)
    names = tuple(sorted((str(n) for n in group["optimizer"].unique()), key=display_key))
    values = {name: _values(group[group["optimizer"] == name], column) for name in names}
    summaries = {name: summarise(values[name], metric) for name in names}
    reference = reference_of({n: s.mean for n, s in summaries.items()}, metric, BASELINE)
    margin, rule = policy.resolve(key[0], key[1], metric, reference)
    pairs = pairwise(values, margin, metric)
    run_ids = {
        name: {(int(r), int(s)): str(rid) for r, s, rid in zip(g["replicate"], g["seed"], g["run_id"])}
        for name, g in group.groupby("optimizer", sort=False)
    }
    import json

    first = group.iloc[0]
    return Benchmark(
        key,
        metric,
        names,
        values,
        summaries,
        margin,
        rule,
        pairs,
        ranks(names, pairs),
        rank_stability(values, margin, metric),
        run_ids,
        setting=str(first["setting"]),
        condition=str(first["condition"]),
        conditions=json.loads(first["conditions"]),
    )


def _row(bench: Benchmark, name: str, runs, tunes, split: str) -> dict:
    task, dataset, size, variant = bench.key
    s = bench.summaries[name]
    by_mean = stats.mean_ranks([bench.summaries[n].mean for n in bench.names], bench.metric.direction)
    row = {
        "task": task,
        "dataset": dataset,
        "size": size,
        "variant": variant,
        "metric": bench.metric.name,
        "direction": bench.metric.direction,
        "split": split,
        "margin": bench.margin,
        "margin_rule": bench.margin_rule,
        "optimizer": name,
        "n_seeds": s.n_seeds,
        "n_failed": s.n_failed,
        "n_replicates": s.n_replicates,
        "mean": s.mean,
        "std": s.std,
        "ci_lo": s.lo,
        "ci_hi": s.hi,
        "replicate_spread": s.spread,
        "rank_stable": bench.stable.get(name),
        "rank": bench.ranks[name],
        "rank_tied": sum(r == bench.ranks[name] for r in bench.ranks.values()) > 1,
        "mean_rank": float(by_mean[bench.names.index(name)]),
        "best_mean": name in bench.best,
    }
    best = bench.best[0] if bench.best else None
    ref = soft_entry(name, bench.names)
    for prefix, other in (("vs_best", best), ("vs_adamw", BASELINE), ("soft", ref)):
        row.update((bench.comparison(name, other) or Comparison.empty()).fields(prefix))
    row["soft_ref"] = ref or ""
    row["soft_shared"] = _shared_trajectory(runs, bench, ref) if ref else None
    notes = {
        c.need_note
        for c in (bench.comparison(name, o) for o in (best, BASELINE, ref))
        if c is not None and c.n and c.replicates_needed is None and c.need_note
    }
    row["need_note"] = "; ".join(sorted(notes))
    row.update(_tune_stats(tunes))
    row.update(_target_stats(runs))
    configs = sorted(set(runs["hparams"].astype(str)))
    row["hparams"] = configs[0] if len(configs) == 1 else "mixed"
    return row


def _shared_trajectory(runs, bench: Benchmark, ref: str) -> bool | None:
    """True when every run started from the checkpoint of ``ref``'s run with the same replicate and
    seed (a branch: the pair is identical up to S). None when ``ref`` did not run here."""
    if ref not in bench.run_ids:
        return None
    parents = bench.run_ids[ref]
    pairs = [
        (parents.get((int(r), int(s))), str(b or ""))
        for r, s, b in zip(runs["replicate"], runs["seed"], runs["branched_from"])
    ]
    pairs = [(p, b) for p, b in pairs if p is not None]
    return bool(pairs) and all(p == b for p, b in pairs)


def _tune_stats(tunes) -> dict:
    n = len(tunes)
    failed = int(tunes["status"].astype(str).isin(FAILED).sum()) if n else 0
    return {"tune_trials": n, "tune_failure_rate": failed / n if n else math.nan}


def _target_stats(runs) -> dict:
    import numpy as np

    targets = [t for t in (as_float(v) for v in runs["target"]) if math.isfinite(t)]
    if not targets:
        return {"target": math.nan, "reached_target": None, "median_steps_to_target": math.nan}
    steps = [as_float(v) for v in runs["steps_to_target"]]
    steps = [s if math.isfinite(s) else math.inf for s in steps]
    return {
        "target": targets[0],
        "reached_target": sum(math.isfinite(s) for s in steps),
        "median_steps_to_target": float(np.median(steps)),
    }


def _notes(rows: Sequence[dict], superseded: int) -> list[str]:
    notes = []
    if superseded:
        notes.append(
            f"{superseded} older eval record(s) of an already evaluated seed were superseded by the latest one"
        )
    fewest = min((r["n_seeds"] for r in rows if r["n_seeds"] > 0), default=0)
    if 0 < fewest < FEW_SEEDS:
        notes.append(
            f"some entries rest on only {fewest} eval seed(s): intervals are wide and the minimum "
            "detectable effects large; the replicates_needed column says what would settle each comparison"
        )
    if not any((r["n_replicates"] or 0) > 1 for r in rows):
        notes.append(
            "one tuning study per optimizer: the intervals cover eval-seed noise around the one configuration "
            "each study found, not tuning luck (which configuration a study happens to find, often the larger "
            "effect); run the sweep with replicates: R > 1 for intervals that include it"
        )
    else:
        notes.append(
            "with tuning replicates the mean is the mean of the replicate means and the interval is two-level "
            "(replicates, then seeds within each); paired differences pair replicate r with replicate r and, "
            "within them, the runs that share an eval seed"
        )
    return notes
