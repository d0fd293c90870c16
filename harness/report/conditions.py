"""Budget and delay sections: the leaderboard computed at each value of a condition, and for delays
the paired change from the undelayed runs.

* At each value v of a condition (``budget`` or ``delay``), the rows at v go through
  ``harness.leaderboard.compute`` unchanged: means, intervals, ranks and verdicts per budget or delay
  are the leaderboard's own.
* Delay robustness: per benchmark and optimizer, Δ = metric(delay d) − metric(delay 0) as the
  leaderboard's paired comparison (``harness.leaderboard.compare.compare``: replicate r with r, the
  runs sharing an eval seed within, two-level 95% interval, verdict against the benchmark's margin at
  delay 0). Ranked by degradation: the optimizer that loses least first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness import leaderboard
from harness.errors import UserError
from harness.leaderboard.compare import Comparison, compare
from harness.report import data as rd
from harness.vocab import Metric


@dataclass
class Condition:
    """One condition kind across its values: per benchmark key, value -> that benchmark's leaderboard rows."""

    column: str
    label: str
    values: list
    boards: dict            # value -> Leaderboard (or the UserError text when it cannot be computed)
    by_bench: dict          # benchmark key -> {value: [rows]}


def compute(data: rd.ReportData, column: str) -> Condition:
    values = data.conditions[column]
    boards, by_bench = {}, {}
    for value in values:
        rows = rd.at_condition(data.frame, column, value)
        try:
            board = leaderboard.compute(rows, metric_split=data.metric_split, allow_mixed=data.allow_mixed,
                                        source=str(data.root))
        except UserError as exc:
            boards[value] = str(exc)
            continue
        boards[value] = board
        for row in board.rows:
            key = tuple(row[k] for k in leaderboard.BENCH_KEYS)
            by_bench.setdefault(key, {}).setdefault(value, []).append(row)
    return Condition(column, rd.CONDITIONS[column][1], values, boards, by_bench)


def best_changes(per_value: dict) -> bool:
    """True when the best-mean optimizer differs between the condition's values."""
    bests = {frozenset(r["optimizer"] for r in rows if r["best_mean"]) for rows in per_value.values()}
    return len(bests) > 1


@dataclass(frozen=True)
class Degradation:
    optimizer: str
    delay: float
    comparison: Comparison
    gain: float             # sign * diff: > 0 means the delayed runs did better


def _values(rows, column: str) -> dict:
    out = {}
    for rep, seed, value, status in zip(rows["replicate"], rows["seed"], rows[column], rows["status"]):
        v = rd.finite(value) if status == "ok" else math.nan
        out[(int(rep), int(seed))] = v if math.isfinite(v) else math.nan
    return out


def degradation(data: rd.ReportData, cond: Condition, key) -> list[Degradation]:
    """Paired Δ = metric(d) − metric(0) per optimizer and delay d > 0 on benchmark ``key``; ranked by
    degradation (least loss first, per delay)."""
    base = cond.by_bench.get(key, {}).get(0.0)
    if not base:
        return []
    margin = base[0]["margin"]
    metric = Metric(base[0]["metric"], base[0]["direction"])
    column = f"{data.metric_split}_metric"
    frame = data.frame[data.frame["phase"] == "eval"]
    same = (frame[list(leaderboard.BENCH_KEYS)] == list(key)).all(axis=1)
    if not same.any():  # the variant label of a subset can differ from the one over every row
        same = (frame[list(leaderboard.BENCH_KEYS[:3])] == list(key[:3])).all(axis=1)
    frame = frame[same]
    out = []
    for delay in cond.values:
        if delay == 0:
            continue
        for name in sorted({r["optimizer"] for r in base}, key=leaderboard.display_key):
            mine = frame[frame["optimizer"] == name]
            at_d, _ = leaderboard.latest_evals(rd.at_condition(mine, "delay", delay))
            at_0, _ = leaderboard.latest_evals(rd.at_condition(mine, "delay", 0))
            if at_d.empty or at_0.empty:
                continue
            c = compare(_values(at_d, column), _values(at_0, column), margin, metric)
            out.append(Degradation(name, delay, c, metric.sign * c.diff if c.n else math.nan))
    out.sort(key=lambda d: (d.delay, -d.gain if math.isfinite(d.gain) else math.inf))
    return out
