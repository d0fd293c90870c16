"""The leaderboard as tidy CSV: floats at 10 significant digits (``%.10g``), so the same records give
the same bytes and the bounds are unrounded for any practical purpose."""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from harness.errors import UserError
from harness.leaderboard.columns import AGGREGATE, COLUMNS

TABLES = ("benchmarks", "aggregate")


def cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return ""
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.10g}"
    return str(value)


def render_csv(board, table: str = "benchmarks") -> str:
    """The per-benchmark table (``table="benchmarks"``) or the aggregate table as CSV text."""
    if table not in TABLES:
        raise UserError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    columns, rows = (COLUMNS, board.rows) if table == "benchmarks" else (AGGREGATE, board.aggregate)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row[c]) for c in columns])
    return buf.getvalue()
