"""The ``optbench report`` command (listed in ``harness.cli.COMMAND_MODULES``)."""

from __future__ import annotations

import argparse
import sys

from harness import leaderboard
from harness.report import plots


def register(subparsers) -> None:
    """Add ``optbench report``."""
    p = subparsers.add_parser(
        "report",
        help="PNG plots (curves, LR sensitivity, best after k trials, profiles, temperature) + index.md; "
        "--html: one self-contained page",
        description=plots.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("results", metavar="RESULTS", help="results folder (holds runs/ and curves/)")
    p.add_argument("--out", metavar="DIR", default=None, help="output folder (default RESULTS/report)")
    p.add_argument(
        "--html",
        action="store_true",
        help="also write report.html: the leaderboard (sortable), a drill-down per benchmark and "
        "provenance in one file that works offline",
    )
    p.add_argument(
        "--metric-split",
        choices=leaderboard.METRIC_SPLITS,
        default="test",
        help="metric the leaderboard and profiles compare (default test)",
    )
    p.add_argument("--allow-mixed", action="store_true", help="pool records of different suites or schema versions")
    p.add_argument(
        "--mixed-versions",
        action="store_true",
        help="pool rows of optbench versions whose results differ (refused by default, as by optbench leaderboard)",
    )
    p.set_defaults(func=_main)


def _main(args) -> int:
    report = plots.make_report(
        args.results,
        args.out,
        metric_split=args.metric_split,
        allow_mixed=args.allow_mixed,
        html=args.html,
        mixed_versions=args.mixed_versions,
    )
    for message in report.warnings:
        print(f"optbench report: warning: {message}", file=sys.stderr)
    for note in report.skipped:
        print(f"optbench report: {note}", file=sys.stderr)
    print(f"wrote {len(report.figures)} figure(s) and {report.out_dir / 'index.md'}", file=sys.stderr)
    if report.page is not None:
        size = report.page.stat().st_size
        print(f"wrote {report.page} ({report.charts} charts, {size / 1024:.0f} KiB, works offline)", file=sys.stderr)
    return 0
