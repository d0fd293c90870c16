"""``optbench leaderboard``: write the tables of a results folder (CSV, Markdown).

Rows of different result epochs (``harness.results.versions``: optbench versions between which the
run records changed) are not comparable: ``build`` refuses to pool them (``UserError``, exit 2, naming
each version and its row count) unless ``mixed_versions`` / ``--mixed-versions``, and then says so in
a note of the board (the Markdown prints it) and on stderr.

A folder of ad-hoc runs (``optbench run --out DIR``: phase ``run``, no eval runs) is tabulated with each
optimizer's runs as its evaluations, and a caveat that they were not tuned alike: a note in the
Markdown and a ``caveat`` column in the CSV (``harness.leaderboard.adhoc``).

``optbench compare A B`` (``harness.leaderboard.diff``) puts the leaderboards of two folders side by
side; it is registered here too."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from harness.errors import UserError
from harness.leaderboard import adhoc
from harness.leaderboard.columns import EXTRA_TABLES, describe
from harness.leaderboard.compute import METRIC_SPLITS, Leaderboard, compute
from harness.leaderboard.load import load_runs
from harness.leaderboard.margins import MarginPolicy, policy_from_cli
from harness.leaderboard.render_csv import TABLES, render_csv
from harness.leaderboard.render_md import render_markdown
from harness.outputs import atomic_write_text

FORMATS = ("csv", "md")


def check_versions(frame, *, mixed_versions: bool = False, source: str = "") -> str:
    """Refuse rows of more than one result epoch (``UserError`` naming the versions and their row
    counts) unless ``mixed_versions``; then return the note saying what was pooled ("" when the rows
    are of one epoch). Rows without ``optbench_version`` count as version ``unknown``."""
    from harness.results import versions

    column = frame["optbench_version"] if "optbench_version" in frame.columns else [None] * len(frame)
    epochs = versions.mixed_epochs(column)
    if len(epochs) < 2:
        return ""
    listing = versions.describe(epochs)
    if not mixed_versions:
        raise UserError(
            f"records under {source or 'the results folder'} mix optbench versions whose results differ: {listing} "
            f"(result epochs {', '.join(sorted(epochs))}; CHANGELOG.md says what changed); compare one epoch's "
            "records at a time, or pass --mixed-versions to pool them anyway"
        )
    return (
        f"rows of optbench versions whose results differ are pooled (--mixed-versions): {listing}; "
        "differences between optimizers may be differences between versions"
    )


def build(
    results,
    *,
    metric_split: str = "test",
    allow_mixed: bool = False,
    margins: MarginPolicy | None = None,
    mixed_versions: bool = False,
) -> tuple[Leaderboard, list[str]]:
    """Load ``results`` (a results folder, or a DataFrame of run rows) and compute its leaderboard.
    Returns it with the messages about skipped unreadable files, records outside the budget and
    pooled result versions (``check_versions``; that one is also a note of the board)."""
    if isinstance(results, (str, os.PathLike)):
        frame, messages = load_runs(results)
        source = str(results)
        if margins is None:
            margins = declared_margins(results)
    else:
        frame, messages, source = results, [], ""
    frame, relabelled = adhoc.as_evaluations(frame)
    pooled = check_versions(frame, mixed_versions=mixed_versions, source=source)
    board = compute(frame, metric_split=metric_split, allow_mixed=allow_mixed, source=source, margins=margins)
    if relabelled:
        board = dataclasses.replace(board, notes=adhoc.replace_notes(board.notes, adhoc.notes(board.rows)))
    if pooled:
        board = dataclasses.replace(board, notes=(pooled, *board.notes))
        messages = [*messages, pooled]
    reused = reuse_note(results) if isinstance(results, (str, os.PathLike)) else ""
    if reused:
        board = dataclasses.replace(board, notes=(*board.notes, reused))
    return board, messages


def reuse_note(results: str | os.PathLike) -> str:
    """The note saying which cells were not tuned but evaluate the first cell's configuration (a sweep
    file's ``reuse_tuning: true``, read from ``plan.json``), or ""."""
    from harness.results import budget, store

    pairs = budget.reused_tuning(budget.read_plan(store.results_root(results)))
    if not pairs:
        return ""
    example = ", ".join(f"{s.split('/', 1)[1]} uses {d.split('/', 1)[1]}'s" for s, d in pairs[:2])
    return (
        f"{len(pairs)} cell(s) were not tuned: they evaluate the tuned configuration of their entry's first cell "
        f"(reuse_tuning), so their differences isolate the condition, not its best configuration ({example}"
        f"{', ...' if len(pairs) > 2 else ''})"
    )


def declared_margins(results: str | os.PathLike) -> MarginPolicy | None:
    """The margins the sweep file of a sweep's results folder declared (``margin:``, kept in its
    ``plan.json``), or None (then the leaderboard's documented defaults apply)."""
    from harness.leaderboard.margins import policy_from_plan
    from harness.results import budget, store

    root = store.results_root(results)
    return policy_from_plan(
        budget.declared_margins(budget.read_plan(root)), source=f"the sweep file ({root / 'sweep.yaml'})"
    )


def csv_text(board: Leaderboard, table: str = "benchmarks") -> str:
    """``render_csv``, with the ``caveat`` column when the board is of ad-hoc runs."""
    text = render_csv(board, table)
    return adhoc.with_caveat_column(text) if adhoc.has_caveat(board) else text


def write(
    results,
    out_dir,
    formats: Sequence[str] = FORMATS,
    metric_split: str = "test",
    *,
    allow_mixed: bool = False,
    margins: MarginPolicy | None = None,
    mixed_versions: bool = False,
) -> list[Path]:
    """Write the leaderboard of ``results`` into ``out_dir``: ``leaderboard.csv`` and
    ``leaderboard_aggregate.csv`` for "csv" (and, when the records hold budgets, delays or axis cells,
    ``leaderboard_<table>.csv`` for each of ``columns.EXTRA_TABLES``), ``leaderboard.md`` for "md",
    each replaced atomically.
    Returns the paths. Unreadable run files are named in a ``warnings.warn`` each and skipped."""
    from harness.outputs import writable_dir

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise UserError(f"unknown leaderboard format(s) {bad or formats}; known: {', '.join(FORMATS)}")
    writable_dir(out_dir, "leaderboard folder")  # before any work: refuse now, not after computing
    board, messages = build(
        results, metric_split=metric_split, allow_mixed=allow_mixed, margins=margins, mixed_versions=mixed_versions
    )
    for message in messages:
        warnings.warn(message, stacklevel=2)
    out = Path(out_dir)
    texts = {}
    if "csv" in formats:
        texts["leaderboard.csv"] = csv_text(board, "benchmarks")
        texts["leaderboard_aggregate.csv"] = csv_text(board, "aggregate")
        extras = board.extras
        if extras is not None and getattr(extras, "active", False):  # budgets, delays, axis cells
            for table in EXTRA_TABLES:
                texts[f"leaderboard_{table}.csv"] = render_csv(board, table)
    if "md" in formats:
        texts["leaderboard.md"] = render_markdown(board)
    for name, text in texts.items():
        atomic_write_text(out / name, text)
    return [out / name for name in texts]


def register(subparsers) -> None:
    """Add ``optbench leaderboard`` and ``optbench compare``."""
    p = subparsers.add_parser(
        "leaderboard",
        help="per-benchmark statistics, verdicts, ranks and paired differences from run records",
        description="Leaderboard from the eval runs under RESULTS: mean, std and 95%% interval per optimizer; "
        "paired comparisons against AdamW, SoftX against X and against the best, each with a verdict "
        "(better / worse / equivalent / inconclusive against a practical margin), its minimum "
        "detectable effect and the replicates that would settle it; ranks from those verdicts; tune "
        "failure rate; steps to target; average rank. --columns lists every CSV column. A folder of ad-hoc "
        "optbench run records (no eval runs) is tabulated with each optimizer's runs as its evaluations, "
        "noting that they were not tuned alike.",
    )
    p.add_argument("results", metavar="RESULTS", nargs="?", help="results folder (holds runs/), e.g. results/demo")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="csv (tidy) or md (paper tables); default: from --out's suffix, else md",
    )
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument(
        "--metric-split", choices=METRIC_SPLITS, default="test", help="which final metric to compare (default test)"
    )
    p.add_argument(
        "--table",
        choices=TABLES,
        default="benchmarks",
        help="csv only: the per-benchmark table (default) or the aggregate table",
    )
    p.add_argument(
        "--margin",
        metavar="M",
        default=None,
        help="practical margin for every benchmark: 0.005 (absolute, metric units) or 1%% (relative "
        "to the reference optimizer's mean); default: the sweep file's, else per metric",
    )
    p.add_argument("--allow-mixed", action="store_true", help="pool records of different suites or schema versions")
    p.add_argument(
        "--mixed-versions",
        action="store_true",
        help="pool records of optbench versions whose results differ (refused by default: exit 2 naming "
        "the versions; records without a version count as 'unknown')",
    )
    p.add_argument("--columns", action="store_true", help="print every CSV column with its meaning and exit")
    p.set_defaults(func=_main)
    _register_compare(subparsers)


def _checked_args(args: argparse.Namespace, out_what: str) -> MarginPolicy | None:
    """Before any work: ``--margin`` parsed (None when not given: the sweep file's or the defaults
    apply) and ``--out`` writable; ``UserError`` (exit 2) otherwise."""
    try:
        margins = policy_from_cli(args.margin) if args.margin else None
    except ValueError as exc:
        raise UserError(f"--margin: {exc}") from None
    if args.out:
        from harness.outputs import writable_file

        writable_file(args.out, out_what)
    return margins


def _compare_main(args: argparse.Namespace) -> int:
    from harness.leaderboard import diff

    margins = _checked_args(args, "comparison file (--out)")
    boards = []
    for label, folder in (("A", args.a), ("B", args.b)):
        try:
            board, messages = build(
                folder,
                metric_split=args.metric_split,
                allow_mixed=args.allow_mixed,
                margins=margins,
                mixed_versions=args.mixed_versions,
            )
        except UserError as exc:
            raise UserError(f"{label} ({folder}): {exc}") from None
        for message in messages:
            print(f"optbench compare: warning: {label} ({folder}): {message}", file=sys.stderr)
        boards.append(board)
    text = diff.render(diff.diff(boards[0], boards[1], a=args.a, b=args.b), args.format)
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _register_compare(subparsers) -> None:
    from harness.leaderboard.diff import FORMATS as DIFF_FORMATS

    p = subparsers.add_parser(
        "compare",
        help="two results folders side by side: means, intervals, verdicts and what changed",
        description="Put the leaderboards of two results folders side by side (before/after a version, CPU vs GPU, "
        "two seeds): per benchmark and optimizer the mean, its 95%% interval and the verdicts in each, "
        "and what changed: an optimizer or benchmark in one folder only, another best, another verdict "
        "(vs AdamW, SoftX vs X), a mean that moved by more than the benchmark's practical margin. Each "
        "folder's leaderboard is computed on its own, as optbench leaderboard does.",
    )
    p.add_argument("a", metavar="A", help="first results folder (holds runs/), e.g. results/demo")
    p.add_argument("b", metavar="B", help="second results folder")
    p.add_argument(
        "--format", choices=DIFF_FORMATS, default="md", help="md (default) or csv (one row per benchmark and optimizer)"
    )
    p.add_argument("--out", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument(
        "--metric-split", choices=METRIC_SPLITS, default="test", help="which final metric to compare (default test)"
    )
    p.add_argument(
        "--margin",
        metavar="M",
        default=None,
        help="practical margin for every benchmark of both folders: 0.005 or 1%%; default: each folder's "
        "sweep file's, else per metric",
    )
    p.add_argument(
        "--allow-mixed", action="store_true", help="pool records of different suites or schema versions within a folder"
    )
    p.add_argument(
        "--mixed-versions",
        action="store_true",
        help="pool records of optbench versions whose results differ within a folder",
    )
    p.set_defaults(func=_compare_main)


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
    margins = _checked_args(args, "leaderboard file (--out)")
    board, messages = build(
        args.results,
        metric_split=args.metric_split,
        allow_mixed=args.allow_mixed,
        margins=margins,
        mixed_versions=args.mixed_versions,
    )
    for message in messages:
        print(f"optbench leaderboard: warning: {message}", file=sys.stderr)
    text = csv_text(board, args.table) if fmt == "csv" else render_markdown(board)
    if args.out:
        atomic_write_text(Path(args.out), text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
