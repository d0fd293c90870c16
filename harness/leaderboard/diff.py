"""``optbench compare A B``: the leaderboards of two results folders side by side (before and after a
version, CPU against GPU, two seeds of one suite), per benchmark and optimizer: the mean and its 95%
interval and the verdicts in each, and what changed.

Each folder's leaderboard is built on its own (``harness.leaderboard.cli.build``, with the same
options), so each keeps its own margins, ranks and verdicts; nothing is pooled and nothing is
paired across the two folders (their runs need not share seeds). What counts as a change:

- an optimizer or a benchmark in one folder only;
- the best (the optimizers of the best mean) of a benchmark differs;
- a verdict differs: against AdamW (``vs_adamw_verdict``) or, for a switching optimizer, against its
  X (``soft_verdict``);
- the mean moved by more than the benchmark's practical margin (A's margin; B's where A has none),
  so differences the leaderboard calls negligible are not reported as changes. The margins of the
  two folders are shown when they differ.

Output: Markdown (a summary of the changes, then one table per benchmark) or tidy CSV (one row per
benchmark and optimizer, floats at 10 significant digits as in ``leaderboard.csv``).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.leaderboard.load import BENCH_KEYS, display_key
from harness.leaderboard.render_csv import cell

FORMATS = ("md", "csv")
VERDICTS = (("vs_adamw", "vs adamw"), ("soft", "vs its X"))
SIDE_FIELDS = (
    "n_seeds",
    "n_failed",
    "mean",
    "ci_lo",
    "ci_hi",
    "rank",
    "best_mean",
    "vs_adamw_verdict",
    "soft_ref",
    "soft_verdict",
    "margin",
)
COLUMNS = (
    *BENCH_KEYS,
    "metric",
    "direction",
    "optimizer",
    "in_a",
    "in_b",
    *(f"a_{f}" for f in SIDE_FIELDS),
    *(f"b_{f}" for f in SIDE_FIELDS),
    "mean_change",
    "mean_moved",
    "verdict_changed",
    "best_changed",
    "changes",
)


@dataclass
class Entry:
    """One (benchmark, optimizer): its leaderboard row in A and in B (None where it is absent) and
    the changes between them, in words."""

    key: tuple[str, str, str, str]
    optimizer: str
    a: dict | None
    b: dict | None
    changes: list[str] = field(default_factory=list)

    @property
    def margin(self) -> float:
        for row in (self.a, self.b):
            if row is not None and math.isfinite(row["margin"]):
                return float(row["margin"])
        return math.nan

    @property
    def mean_change(self) -> float:
        if self.a is None or self.b is None:
            return math.nan
        return float(self.b["mean"]) - float(self.a["mean"])

    @property
    def mean_moved(self) -> bool | None:
        change, margin = self.mean_change, self.margin
        if not (math.isfinite(change) and math.isfinite(margin)):
            return None
        return abs(change) > margin

    @property
    def verdict_changed(self) -> bool | None:
        if self.a is None or self.b is None:
            return None
        return any(self.a[f"{p}_verdict"] != self.b[f"{p}_verdict"] for p, _ in VERDICTS)


@dataclass
class BenchmarkDiff:
    """One benchmark of either folder: its entries, the best in each, and the benchmark-level changes."""

    key: tuple[str, str, str, str]
    metric: str
    direction: str
    entries: list[Entry]
    best_a: tuple[str, ...]
    best_b: tuple[str, ...]
    changes: list[str] = field(default_factory=list)

    @property
    def best_changed(self) -> bool | None:
        if not self.best_a or not self.best_b:
            return None
        return self.best_a != self.best_b


@dataclass
class Comparison:
    a: str
    b: str
    benchmarks: list[BenchmarkDiff]
    notes: list[str]

    @property
    def n_changes(self) -> int:
        return sum(len(bench.changes) + sum(bool(e.changes) for e in bench.entries) for bench in self.benchmarks)


def _by_key(rows: Sequence[dict]) -> dict[tuple, dict[str, dict]]:
    out: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in BENCH_KEYS), {})[row["optimizer"]] = row
    return out


def _best(rows: dict[str, dict]) -> tuple[str, ...]:
    return tuple(sorted((n for n, r in rows.items() if r["best_mean"]), key=display_key))


def bench_label(key: Sequence[str]) -> str:
    task, dataset, size, variant = key
    return f"{task}/{dataset} ({size})" + (f" [{variant}]" if variant else "")


def diff(board_a, board_b, a: str = "A", b: str = "B") -> Comparison:
    """Compare two computed leaderboards (``harness.leaderboard.Leaderboard``); ``a`` and ``b`` name
    them in the output."""
    rows_a, rows_b = _by_key(board_a.rows), _by_key(board_b.rows)
    benchmarks = []
    for key in sorted(set(rows_a) | set(rows_b)):
        in_a, in_b = rows_a.get(key, {}), rows_b.get(key, {})
        first = next(iter((in_a or in_b).values()))
        bench = BenchmarkDiff(key, str(first["metric"]), str(first["direction"]), [], _best(in_a), _best(in_b))
        if not in_a or not in_b:
            bench.changes.append(f"benchmark only in {a if in_a else b}")
        elif bench.best_changed:
            bench.changes.append(f"best changed: {', '.join(bench.best_a)} in {a}, {', '.join(bench.best_b)} in {b}")
        margins = {name: float(r["margin"]) for name, side in ((a, in_a), (b, in_b)) for r in list(side.values())[:1]}
        if len(margins) == 2 and len({f"{m:.6g}" for m in margins.values()}) == 2:
            bench.changes.append("margins differ: " + ", ".join(f"{m:.3g} in {n}" for n, m in margins.items()))
        for name in sorted(set(in_a) | set(in_b), key=display_key):
            entry = Entry(key, name, in_a.get(name), in_b.get(name))
            entry.changes = _entry_changes(entry, a, b) if in_a and in_b else []
            bench.entries.append(entry)
        benchmarks.append(bench)
    notes = []
    if board_a.split != board_b.split:  # pragma: no cover - both are built with one --metric-split
        notes.append(f"metric split {board_a.split} in {a}, {board_b.split} in {b}")
    if board_a.schema_versions != board_b.schema_versions:
        notes.append(
            f"record schema versions differ: {_join(board_a.schema_versions)} in {a}, "
            f"{_join(board_b.schema_versions)} in {b}"
        )
    if board_a.suites != board_b.suites:
        notes.append(f"suites differ: {_join(board_a.suites) or '?'} in {a}, {_join(board_b.suites) or '?'} in {b}")
    return Comparison(a, b, benchmarks, notes)


def _join(items) -> str:
    return ", ".join(map(str, items))


def _entry_changes(entry: Entry, a: str, b: str) -> list[str]:
    if entry.a is None or entry.b is None:
        return [f"only in {a if entry.a is not None else b}"]
    changes = []
    for prefix, what in VERDICTS:
        va, vb = entry.a[f"{prefix}_verdict"], entry.b[f"{prefix}_verdict"]
        if va != vb:
            changes.append(f"verdict {what}: {va or 'none'} -> {vb or 'none'}")
    if entry.mean_moved:
        changes.append(f"mean moved {entry.mean_change:+.3g} (margin {entry.margin:.3g})")
    return changes


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _decimals(bench: BenchmarkDiff) -> int:
    """Digits that show the margin (and one more): the scale on which a change is judged."""
    margins = [e.margin for e in bench.entries if math.isfinite(e.margin) and e.margin > 0]
    if not margins:
        return 4
    return int(min(8, max(0, 1 - math.floor(math.log10(min(margins))))))


def _num(value, decimals: int) -> str:
    value = float(value) if value is not None else math.nan
    return f"{value:.{decimals}f}" if math.isfinite(value) else "n/a"


def _summary_cell(row: dict | None, d: int) -> str:
    if row is None:
        return "—"
    failed = f" ({row['n_failed']} failed)" if row["n_failed"] else ""
    return f"{_num(row['mean'], d)} [{_num(row['ci_lo'], d)}, {_num(row['ci_hi'], d)}]{failed}"


def _verdict_cell(row: dict | None) -> str:
    if row is None:
        return "—"
    parts = []
    for prefix, _ in VERDICTS:
        if row[f"{prefix}_verdict"]:
            ref = "adamw" if prefix == "vs_adamw" else row["soft_ref"]
            parts.append(f"{row[f'{prefix}_verdict']} vs {ref}")
    best = "best, " if row["best_mean"] else ""
    return f"{best}rank {row['rank']}" + (f"; {'; '.join(parts)}" if parts else "")


def render_markdown(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    lines = [
        f"# Comparison: A = {a}, B = {b}",
        "",
        "Each folder's own leaderboard (its margins, ranks and verdicts), side by side. Cells: mean [95% interval] "
        "of the metric on the leaderboard's split; verdicts against AdamW and of SoftX against X, with the rank "
        "(1 = best or tied with the best). A change: an optimizer or benchmark in one folder only, another best, "
        "another verdict, or a mean that moved by more than the benchmark's practical margin.",
        "",
    ]
    lines += [f"Note: {n}." for n in comparison.notes] + ([""] if comparison.notes else [])
    changed = [bench for bench in comparison.benchmarks if bench.changes or any(e.changes for e in bench.entries)]
    lines.append(
        f"{len(changed)} of {len(comparison.benchmarks)} benchmarks changed ({comparison.n_changes} change(s))."
    )
    for bench in changed:
        what = bench.changes + [f"{e.optimizer}: {'; '.join(e.changes)}" for e in bench.entries if e.changes]
        lines.append(f"- {bench_label(bench.key)}: " + "; ".join(what))
    for bench in comparison.benchmarks:
        d = _decimals(bench)
        arrow = "↑" if bench.direction == "max" else "↓"
        lines += ["", f"## {bench_label(bench.key)}: {bench.metric} {arrow}", ""]
        lines += [
            f"Best: {', '.join(bench.best_a) or '—'} in A; {', '.join(bench.best_b) or '—'} in B"
            + (" (changed)" if bench.best_changed else "")
            + f". Margin ±{_num(bench.entries[0].margin, d)}.",
            "",
        ]
        lines.append(
            "| optimizer | A: mean [95% CI] | A: verdicts | B: mean [95% CI] | B: verdicts | Δ mean (B − A) | changed |"
        )
        lines.append("|---|--:|---|--:|---|--:|---|")
        for e in bench.entries:
            change = _num(e.mean_change, d)
            change = change if change.startswith(("-", "n")) else "+" + change
            lines.append(
                f"| {e.optimizer} | {_summary_cell(e.a, d)} | {_verdict_cell(e.a)} | {_summary_cell(e.b, d)} "
                f"| {_verdict_cell(e.b)} | {change} | {'; '.join(e.changes) or '—'} |"
            )
    return "\n".join(lines) + "\n"


def render_csv(comparison: Comparison) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for bench in comparison.benchmarks:
        for e in bench.entries:
            sides = [(e.a or {}).get(f) for f in SIDE_FIELDS] + [(e.b or {}).get(f) for f in SIDE_FIELDS]
            row = [
                *bench.key,
                bench.metric,
                bench.direction,
                e.optimizer,
                e.a is not None,
                e.b is not None,
                *sides,
                e.mean_change,
                e.mean_moved,
                e.verdict_changed,
                bench.best_changed,
                "; ".join(bench.changes + e.changes),
            ]
            writer.writerow([cell(v) for v in row])
    return buf.getvalue()


def render(comparison: Comparison, fmt: str) -> str:
    return render_csv(comparison) if fmt == "csv" else render_markdown(comparison)
