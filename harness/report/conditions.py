"""Budget, delay, axis and time-to-target sections of the report, read off the leaderboard's own
condition tables (``harness.leaderboard.conditions``, ``axes``, ``targets``) over every condition
(``ReportData.full``: each budget, delay and cell condition its own benchmark); nothing is recomputed
here.

* ``compute(data, column)``: per benchmark of the default condition, the leaderboard rows at each
  value of ``budget`` or ``delay`` (every other condition at its default).
* ``degradation``: the leaderboard's delay-robustness rows of a benchmark, ranked by degradation.
* ``axes``: the axis rows per axis; ``time_rows``: the time-to-target rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.leaderboard.siblings import non_default, siblings
from harness.report import data as rd


@dataclass
class Condition:
    """One condition kind across its values: per benchmark key (of the default condition),
    value -> that benchmark's leaderboard rows at the value."""

    column: str
    label: str
    values: list
    by_bench: dict  # benchmark key -> {value: [rows]}


def _extras(data: rd.ReportData):
    full = getattr(data, "full", None)
    return None if full is None else full.extras


def compute(data: rd.ReportData, column: str) -> Condition:
    values = data.conditions[column]
    by_bench: dict = {}
    extras = _extras(data)
    if extras is not None:
        for key, by_value in siblings(extras.benches, column):
            if any(non_default({k: v for k, v in b.conditions.items() if k != column}) for b in by_value.values()):
                continue  # the other conditions must be at their defaults (a delay section holds the full budget)
            by_bench[key] = {float(v): extras.rows_of(b) for v, b in by_value.items()}
    return Condition(column, rd.CONDITIONS[column][1], values, dict(sorted(by_bench.items())))


def best_changes(per_value: dict) -> bool:
    """True when the best-mean optimizer differs between the condition's values."""
    bests = {frozenset(r["optimizer"] for r in rows if r["best_mean"]) for rows in per_value.values()}
    return len(bests) > 1


def degradation(data: rd.ReportData, key) -> list[dict]:
    """The leaderboard's delay-robustness rows of benchmark ``key`` (task, dataset, size, variant),
    each delay's rows ranked by degradation, the optimizer that loses least first."""
    extras = _extras(data)
    if extras is None:
        return []
    return [r for r in extras.delay_rows if (r["task"], r["dataset"], r["size"], r["variant"]) == tuple(key)]


def axes(data: rd.ReportData) -> dict[str, list[dict]]:
    """axis -> its rows (``harness.leaderboard.axes``), the delay axis left to the delay sections."""
    extras = _extras(data)
    out: dict[str, list[dict]] = {}
    for row in extras.axis_rows if extras is not None else ():
        if row["axis"] != "delay":
            out.setdefault(row["axis"], []).append(row)
    return out


def time_rows(data: rd.ReportData) -> list[dict]:
    """The time-to-target rows over every condition ([] when the records hold no conditions or axes)."""
    extras = _extras(data)
    return list(extras.time_rows) if extras is not None and extras.active else []


def profiles(data: rd.ReportData, measure: str = "steps") -> dict[str, dict]:
    """condition label -> the time-to-target performance ratios of its full-budget benchmarks, for the
    conditions with at least two benchmarks (a profile of one benchmark says nothing)."""
    from harness.leaderboard import targets

    rows = time_rows(data)
    return {label: ratios for label, ratios in targets.ratio_tables(rows, measure).items() if len(ratios) >= 2}
