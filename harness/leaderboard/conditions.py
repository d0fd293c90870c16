"""Conditions side by side: the leaderboard at each step budget, and the cost of a gradient delay.

Every condition is a benchmark of its own (``harness.leaderboard.load``: budget, delay and the
condition keys of a sweep cell are part of the variant), so the leaderboard's own numbers hold at
each condition. This module lines the benchmarks of one setting up along one condition:

* **Metric vs budget** (issue 21, ``budget_rows``): per benchmark, optimizer and budget, the
  leaderboard's mean, 95% interval, rank and verdicts at that budget (its own computation, not a
  copy), and ``best_changes``: whether the best-mean optimizer differs between the budgets.
* **Delay robustness** (issue 22, ``delay_rows``): per benchmark and optimizer, Δ = metric(delay d)
  − metric(delay 0) as the leaderboard's paired comparison (``compare.compare``: replicate r with r,
  the runs sharing an eval seed within, the two-level 95% interval, the four verdicts against the
  margin of the delay-0 benchmark, the MDE); ``degradation`` = what the delay cost in the better
  direction (> 0: worse under delay), and the optimizers ranked by it per benchmark and delay, the
  one that loses least first.

Benchmarks are *siblings along* a condition ``c`` when they share task, dataset, size, task options
and every other condition value (``siblings``). ``Extras`` is what a ``Leaderboard`` carries: these
tables, the axes (``harness.leaderboard.axes``) and time-to-target (``harness.leaderboard.targets``),
each computed when first asked for.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from harness.leaderboard.compare import compare
from harness.leaderboard.load import axis_values, display_key
from harness.leaderboard.siblings import comparison_fields, non_default, siblings


class Extras:
    """The condition, axis and time-to-target tables of one leaderboard, each computed once when first
    asked for. ``benches``: the leaderboard's ``compute.Benchmark`` objects; ``rows``: its rows;
    ``evals``: the eval rows it used (prepared, latest per seed); ``axes``: the keys of the records'
    cells; ``curves``: a curves frame, or None to read them from ``root`` when needed."""

    def __init__(
        self,
        benches: Sequence,
        rows: Sequence[dict],
        evals,
        axes: Sequence[str],
        *,
        curves=None,
        root: str | None = None,
    ) -> None:
        self.benches = tuple(benches)
        self.rows = tuple(rows)
        self.evals = evals
        self.axes = tuple(axes)
        self._curves = curves
        self._root = root

    @functools.cached_property
    def active(self) -> bool:
        """True when the records hold a condition other than the default, or axis cells: then the
        Markdown and the report show these tables (records of before show exactly what they did)."""
        return (
            bool(self.axes)
            or any(non_default(b.conditions) for b in self.benches)
            or any(axis_values(r["optimizer"]) for r in self.rows)
        )

    def curves(self, run_ids) -> object | None:
        """The curves of ``run_ids`` (None when no curves are known: a frame not read from a folder)."""
        if self._curves is not None:
            return self._curves[self._curves["run_id"].isin(set(run_ids))]
        if self._root is None:
            return None
        import warnings

        from harness.results import store

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unreadable curves file: its runs count as missing
            return store.read_curves(self._root, set(run_ids))

    def rows_of(self, bench) -> list[dict]:
        return [r for r in self.rows if tuple(r[k] for k in ("task", "dataset", "size", "variant")) == bench.key]

    @functools.cached_property
    def budget_rows(self) -> tuple[dict, ...]:
        return tuple(budget_rows(self))

    @functools.cached_property
    def delay_rows(self) -> tuple[dict, ...]:
        return tuple(delay_rows(self.benches))

    @functools.cached_property
    def axis_rows(self) -> tuple[dict, ...]:
        from harness.leaderboard import axes

        return tuple(axes.axis_rows(self))

    @functools.cached_property
    def time_rows(self) -> tuple[dict, ...]:
        from harness.leaderboard import targets

        return tuple(targets.time_rows(self))

    @functools.cached_property
    def profile_rows(self) -> tuple[dict, ...]:
        from harness.leaderboard import targets

        return tuple(targets.profile_rows(self.time_rows))


BUDGET_FIELDS = (
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


def budget_rows(extras: Extras) -> list[dict]:
    """Per benchmark (its variant without the budget), budget and optimizer: the leaderboard row's
    numbers at that budget, and whether the best-mean optimizer changes with the budget."""
    out = []
    for (task, dataset, size, variant), by_budget in siblings(extras.benches, "budget"):
        rows = {b: extras.rows_of(bench) for b, bench in by_budget.items()}
        bests = {frozenset(r["optimizer"] for r in rs if r["best_mean"]) for rs in rows.values()}
        changes = len(bests) > 1
        for budget, rs in rows.items():
            for r in sorted(rs, key=lambda r: display_key(r["optimizer"])):
                out.append(
                    {
                        "task": task,
                        "dataset": dataset,
                        "size": size,
                        "variant": variant,
                        "metric": r["metric"],
                        "direction": r["direction"],
                        "budget": float(budget),
                        "optimizer": r["optimizer"],
                        **{k: r[k] for k in BUDGET_FIELDS},
                        "best_changes": changes,
                    }
                )
    return out


def across(by_value: dict, value, reference):
    """Per entry run at both ``value`` and ``reference`` of a sibling group: (name, the comparison of
    its runs at ``value`` minus those at ``reference``, paired by replicate and seed, against the
    reference benchmark's margin)."""
    at, base = by_value[value], by_value[reference]
    common = [n for n in at.names if n in base.values]
    for name in sorted(common, key=display_key):
        yield name, compare(at.values[name], base.values[name], base.margin, base.metric)


def delay_rows(benches: Sequence) -> list[dict]:
    """Δ = metric(delay d) − metric(delay 0) per benchmark, delay d > 0 and optimizer; ranked by
    degradation (least loss first) within each benchmark and delay."""
    out = []
    for (task, dataset, size, variant), by_delay in siblings(benches, "delay"):
        if 0 not in by_delay:
            continue
        base = by_delay[0]
        for delay in by_delay:
            if delay == 0:
                continue
            found = []
            for name, c in across(by_delay, delay, 0):
                loss = -base.metric.sign * c.diff if c.n else math.nan
                found.append(
                    {
                        "task": task,
                        "dataset": dataset,
                        "size": size,
                        "variant": variant,
                        "metric": base.metric.name,
                        "direction": base.metric.direction,
                        "optimizer": name,
                        "delay": delay,
                        "margin": base.margin,
                        "mean_delay0": base.summaries[name].mean,
                        "mean_delayed": by_delay[delay].summaries[name].mean,
                        **comparison_fields(c),
                        "degradation": loss,
                    }
                )
            found.sort(
                key=lambda r: (
                    math.isnan(r["degradation"]),
                    r["degradation"] if math.isfinite(r["degradation"]) else 0.0,
                    display_key(r["optimizer"]),
                )
            )
            for rank, row in enumerate(found, 1):
                row["rank_by_degradation"] = rank if math.isfinite(row["degradation"]) else None
            out += found
    return out
