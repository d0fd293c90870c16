"""What a report is drawn from: the run rows of a results folder, split by phase, the leaderboard the
``optbench leaderboard`` command would compute from them (``harness.leaderboard.compute``, not a copy
of it), the curves of the runs the figures need, and the conditions beyond the default one.

Conditions. A record may carry a ``budget`` (the fraction of the step budget a WSD decay branch
trained, 1.0 = all) and a ``delay`` (gradients applied that many steps late, 0 = none). Where these
columns exist and some row differs from the default, the report gets a section per condition kind;
the leaderboard and the per-benchmark figures of curves, LR sensitivity and best-after-k show the
default condition (full budget, no delay), so runs of one seed at two conditions never replace each
other as "the latest eval of that seed".
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness import leaderboard
from harness.errors import UserError
from harness.leaderboard.load import entry_label, parse_cell, split_cell, variants
from harness.leaderboard.margins import MarginPolicy

if TYPE_CHECKING:  # pandas is imported where frames are built
    import pandas as pd

# condition column -> its default value and what it is called on the page
CONDITIONS = {"budget": (1.0, "step budget (fraction of the full budget)"), "delay": (0, "gradient delay (steps)")}
# Optimizers with a temperature schedule (their runs log "tau"): the switching optimizers but the hard one.
SOFT_OPTIMIZERS = ("softsignum", "softmuon")


@dataclass
class ReportData:
    """The rows of one results folder, ready for the figures and the page."""

    root: Path
    frame: pd.DataFrame  # every run row, key columns as text, with ``variant``
    evals: pd.DataFrame  # latest eval row per (benchmark, optimizer, replicate, seed), default condition
    tunes: pd.DataFrame  # tune rows, default condition
    curves: pd.DataFrame  # curves of the eval runs and of the Soft* runs
    board: leaderboard.Leaderboard | None  # None when it cannot be computed
    board_note: str  # why there is no leaderboard ("" when there is one)
    # the leaderboard over every condition (each its own benchmark): its ``extras`` hold the budget,
    # delay, axis and time-to-target tables (harness.leaderboard.conditions); None when not computable
    full: leaderboard.Leaderboard | None
    metric_split: str
    allow_mixed: bool
    conditions: dict = field(default_factory=dict)  # column -> sorted values present, when not only the default
    warnings: list = field(default_factory=list)


def prepare(frame):
    frame = frame.copy()
    for column in ("task", "dataset", "size", "optimizer", "phase", "status", "direction", "metric"):
        frame[column] = frame[column].fillna("").astype(str)
    frame["variant"] = variants(frame)
    frame["base_optimizer"] = frame["optimizer"]
    if "cell" in frame.columns:  # hyperparameter-axis cells are entries of their own, as on the leaderboard
        frame["optimizer"] = [
            entry_label(name, split_cell(parse_cell(cell))[1]) for name, cell in zip(frame["optimizer"], frame["cell"])
        ]
    if "replicate" not in frame.columns:
        frame["replicate"] = 0
    frame["replicate"] = frame["replicate"].fillna(0).astype(int)
    if "branched_from" not in frame.columns:
        frame["branched_from"] = ""
    frame["branched_from"] = frame["branched_from"].fillna("").astype(str)
    return frame


def condition_values(frame) -> dict[str, list]:
    """Per condition column present with some non-default value: the sorted values in the rows."""
    out = {}
    for column, (default, _) in CONDITIONS.items():
        if column not in frame.columns:
            continue
        values = frame[column].astype(float).fillna(float(default))
        if (values != float(default)).any():
            out[column] = sorted(set(values.tolist()))
    return out


def default_condition(frame):
    """The rows at the default budget and delay (all rows when the columns are absent)."""
    keep = None
    for column, (default, _) in CONDITIONS.items():
        if column in frame.columns:
            ok = frame[column].astype(float).fillna(float(default)) == float(default)
            keep = ok if keep is None else keep & ok
    return frame if keep is None else frame[keep]


def at_condition(frame, column: str, value: float):
    """The rows at ``column == value`` with every other condition at its default (a delay section
    holds the full budget, a budget section no delay)."""
    keep = None
    for name, (default, _) in CONDITIONS.items():
        if name not in frame.columns:
            continue
        want = float(value) if name == column else float(default)
        ok = frame[name].astype(float).fillna(float(default)) == want
        keep = ok if keep is None else keep & ok
    return frame if keep is None else frame[keep]


def from_frame(
    frame,
    curves,
    root: Path,
    *,
    metric_split: str = "test",
    allow_mixed: bool = False,
    messages: list[str] | None = None,
    margins: MarginPolicy | None = None,
    mixed_versions: bool = False,
) -> ReportData:
    """``ReportData`` of run rows already read (``curves``: a long curves DataFrame, or None to read
    the needed ones from ``root``). As on the leaderboard: rows of two result epochs are refused
    unless ``mixed_versions`` (then the note says so), and verdicts use ``margins`` (the sweep's
    declared margins; None: the documented defaults)."""
    from harness.leaderboard.cli import check_versions

    if metric_split not in leaderboard.METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(leaderboard.METRIC_SPLITS)}")
    if len(frame) == 0:
        raise UserError(f"no run records under {root}: run optbench suite or optbench sweep first")
    leaderboard.check_consistent(frame, allow_mixed=allow_mixed, source=str(root))
    pooled = check_versions(frame, mixed_versions=mixed_versions, source=str(root))
    raw_frame = frame
    frame = prepare(frame)
    conditions = condition_values(frame)
    base = default_condition(frame)
    evals, _ = leaderboard.latest_evals(base[base["phase"] == "eval"])
    tunes = base[base["phase"] == "tune"]
    board, board_note = None, ""
    try:  # other budgets and delays are not pooled in: they have their own sections
        board = leaderboard.compute(
            default_condition(raw_frame),
            metric_split=metric_split,
            allow_mixed=allow_mixed,
            source=str(root),
            margins=margins,
        )
        if pooled:
            board = dataclasses.replace(board, notes=(pooled, *board.notes))
    except UserError as exc:  # e.g. a sweep still tuning: the tune figures are still useful
        board_note = str(exc)
    data = ReportData(
        root=Path(root),
        frame=frame,
        evals=evals,
        tunes=tunes,
        curves=curves,
        board=board,
        board_note=board_note,
        full=None,
        metric_split=metric_split,
        allow_mixed=allow_mixed,
        conditions=conditions,
        warnings=[*(messages or []), *([pooled] if pooled else [])],
    )
    if curves is None:
        data.curves = _read_curves(data)
    if board is not None and (conditions or _has_cells(frame)):  # every condition: its own benchmarks
        data.full = leaderboard.compute(
            raw_frame,
            metric_split=metric_split,
            allow_mixed=allow_mixed,
            source=str(root),
            curves=data.curves,
            margins=margins,
        )
    return data


def _has_cells(frame) -> bool:
    return "cell" in frame.columns and bool(frame["cell"].fillna("").astype(str).str.len().gt(0).any())


def load(results, *, metric_split: str = "test", allow_mixed: bool = False, mixed_versions: bool = False) -> ReportData:
    """Read a results folder (``UserError`` when it does not exist or holds no run records), with
    the margins its sweep file declared."""
    from harness.leaderboard.cli import declared_margins
    from harness.results import store as records

    if metric_split not in leaderboard.METRIC_SPLITS:
        raise UserError(f"unknown metric split {metric_split!r}; known: {', '.join(leaderboard.METRIC_SPLITS)}")
    root = records.results_root(results)
    frame, messages = leaderboard.load_runs(results)
    return from_frame(
        frame,
        None,
        root,
        metric_split=metric_split,
        allow_mixed=allow_mixed,
        messages=messages,
        margins=declared_margins(results),
        mixed_versions=mixed_versions,
    )


def _read_curves(data: ReportData):
    from harness.results import store as records

    frame = data.frame
    wanted = set(frame.loc[frame["phase"] == "eval", "run_id"]) | set(
        frame.loc[frame["base_optimizer"].isin(SOFT_OPTIMIZERS), "run_id"]
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        curves = records.read_curves(data.root, wanted)
    data.warnings += [str(w.message) for w in caught]
    missing = len(wanted - set(curves["run_id"]))
    if missing:
        data.warnings.append(f"{missing} run(s) have no readable curves file under {records.curves_dir(data.root)}")
    return curves


def by_benchmark(frame) -> dict[tuple[str, ...], pd.DataFrame]:
    """benchmark key -> its rows, in sorted order."""
    groups = frame.groupby(list(leaderboard.BENCH_KEYS), sort=False)
    return {tuple(map(str, key)): rows for key, rows in sorted(groups, key=lambda kv: kv[0])}


def by_task(frame) -> dict[str, dict[tuple, pd.DataFrame]]:
    """task -> {benchmark key -> rows}, in sorted order."""
    out: dict[str, dict[tuple, pd.DataFrame]] = {}
    for key, rows in by_benchmark(frame).items():
        out.setdefault(key[0], {})[key] = rows
    return out


def optimizers_of(rows) -> list[str]:
    return sorted(set(rows["optimizer"]), key=leaderboard.display_key)


def finite(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return math.nan
    return v
