"""``optbench leaderboard``: write the tables of a results folder (CSV, Markdown)."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UserError
from harness.leaderboard.columns import describe
from harness.leaderboard.compute import METRIC_SPLITS, Leaderboard, compute
from harness.leaderboard.load import load_runs
from harness.leaderboard.margins import MarginPolicy, policy_from_cli
from harness.leaderboard.render_csv import TABLES, render_csv
from harness.leaderboard.render_md import render_markdown

FORMATS = ("csv", "md")


def atomic_write_text(path: Path, text: str) -> None:  # TODO(one house): the one atomic writer in harness.outputs
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build(results, *, metric_split: str = "test", allow_mixed: bool = False,
          margins: MarginPolicy | None = None) -> tuple[Leaderboard, list[str]]:
    """Load ``results`` (a results folder, or a DataFrame of run rows) and compute its leaderboard.
    Returns it with the messages about skipped unreadable files and records outside the budget."""
    if isinstance(results, (str, os.PathLike)):
        frame, messages = load_runs(results)
        source = str(results)
    else:
        frame, messages, source = results, [], ""
    board = compute(frame, metric_split=metric_split, allow_mixed=allow_mixed, source=source, margins=margins)
    return board, messages


def write(results, out_dir, formats: Sequence[str] = FORMATS, metric_split: str = "test", *,
          allow_mixed: bool = False, margins: MarginPolicy | None = None) -> list[Path]:
    """Write the leaderboard of ``results`` into ``out_dir``: ``leaderboard.csv`` and
    ``leaderboard_aggregate.csv`` for "csv", ``leaderboard.md`` for "md", each replaced atomically.
    Returns the paths. Unreadable run files are named in a ``warnings.warn`` each and skipped."""
    from harness.outputs import writable_dir

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"unknown leaderboard format(s) {bad or formats}; known: {', '.join(FORMATS)}")
    writable_dir(out_dir, "leaderboard folder")  # before any work: refuse now, not after computing
    board, messages = build(results, metric_split=metric_split, allow_mixed=allow_mixed, margins=margins)
    for message in messages:
        warnings.warn(message, stacklevel=2)
    out = Path(out_dir)
    texts = {}
    if "csv" in formats:
        texts["leaderboard.csv"] = render_csv(board, "benchmarks")
        texts["leaderboard_aggregate.csv"] = render_csv(board, "aggregate")
    if "md" in formats:
        texts["leaderboard.md"] = render_markdown(board)
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return [out / name for name in texts]


def register(subparsers) -> None:
    """Add ``optbench leaderboard``."""
    p = subparsers.add_parser(
        "leaderboard",
        help="per-benchmark statistics, verdicts, ranks and paired differences from run records",
        description="Leaderboard from the eval runs under RESULTS: mean, std and 95%% interval per optimizer; "
                    "paired comparisons against AdamW, SoftX against X and against the best, each with a verdict "
                    "(better / worse / equivalent / inconclusive against a practical margin), its minimum "
                    "detectable effect and the replicates that would settle it; ranks from those verdicts; tune "
                    "failure rate; steps to target; average rank. --columns lists every CSV column.",
    )
    p.add_argument("results", metavar="RESULTS", nargs="?", help="results folder (holds runs/), e.g. results/demo")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="csv (tidy) or md (paper tables); default: from --out's suffix, else md")
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument("--metric-split", choices=METRIC_SPLITS, default="test",
                   help="which final metric to compare (default test)")
    p.add_argument("--table", choices=TABLES, default="benchmarks",
                   help="csv only: the per-benchmark table (default) or the aggregate table")
    p.add_argument("--margin", metavar="M", default=None,
                   help="practical margin for every benchmark: 0.005 (absolute, metric units) or 1%% (relative "
                        "to the reference optimizer's mean); default: the sweep file's, else per metric")
    p.add_argument("--allow-mixed", action="store_true", help="pool records of different suites or schema versions")
    p.add_argument("--columns", action="store_true", help="print every CSV column with its meaning and exit")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.columns:
        sys.stdout.write(describe())
        return 0
    if args.results is None:
        raise UserError("give the RESULTS folder (e.g. results/demo), or --columns")
    fmt = args.format
    if fmt is None:
        suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
        fmt = suffix if suffix in FORMATS else "md"
    if fmt == "md" and args.table != "benchmarks":
        raise UserError("--table applies to --format csv; the Markdown always holds both tables")
    try:
        margins = policy_from_cli(args.margin)
    except ValueError as exc:
        raise UserError(f"--margin: {exc}") from None
    if args.out:
        from harness.outputs import writable_file

        writable_file(args.out, "leaderboard file (--out)")  # before any work: refuse now, not after
    board, messages = build(args.results, metric_split=args.metric_split, allow_mixed=args.allow_mixed,
                            margins=margins if args.margin else None)
    for message in messages:
        print(f"optbench leaderboard: warning: {message}", file=sys.stderr)
    text = render_csv(board, args.table) if fmt == "csv" else render_markdown(board)
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
