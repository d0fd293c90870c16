"""Leaderboards: which optimizer wins on each benchmark, by how much, and how sure we are.

A pure function of run records: ``load`` reads them, ``compute`` builds per-benchmark summaries and
pairwise comparisons with verdicts (``compare``, ``margins``), ``aggregate`` the cross-benchmark
table, ``render_csv`` / ``render_md`` the text, ``cli`` the command. Column meanings: ``columns``.
"""

from harness.leaderboard.cli import FORMATS, build, register, write
from harness.leaderboard.columns import AGGREGATE, COLUMNS
from harness.leaderboard.compute import METRIC_SPLITS, Leaderboard, compute
from harness.leaderboard.load import (
    BENCH_KEYS,
    check_consistent,
    display_key,
    latest_evals,
    load_runs,
    soft_ref,
)
from harness.leaderboard.render_csv import render_csv
from harness.leaderboard.render_md import render_markdown

__all__ = [
    "AGGREGATE",
    "BENCH_KEYS",
    "COLUMNS",
    "FORMATS",
    "METRIC_SPLITS",
    "Leaderboard",
    "build",
    "check_consistent",
    "compute",
    "display_key",
    "latest_evals",
    "load_runs",
    "register",
    "render_csv",
    "render_markdown",
    "soft_ref",
    "write",
]
