"""The leaderboard as tidy CSV: floats at 10 significant digits (``%.10g``), so the same records give
the same bytes and the bounds are unrounded for any practical purpose."""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from harness.errors import UserError
from harness.leaderboard.columns import AGGREGATE, COLUMNS, EXTRA_TABLES

TABLES = ("benchmarks", "aggregate", *EXTRA_TABLES)
# Where each extra table's rows are on a board's ``extras`` (``harness.leaderboard.conditions.Extras``).
SOURCES = {
    "budgets": "budget_rows",
    "time_to_target": "time_rows",
    "profile": "profile_rows",
    "delay": "delay_rows",
    "axes": "axis_rows",
}


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
    """One table of ``board`` as CSV text: the per-benchmark table (``table="benchmarks"``), the
    aggregate table, or one of ``columns.EXTRA_TABLES`` (header only when the records have no such
    data: no budgets, no delays, no axes, no curves)."""
    if table not in TABLES:
        raise UserError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    if table in EXTRA_TABLES:
        columns = tuple(EXTRA_TABLES[table][0])
        extras = getattr(board, "extras", None)
        rows = getattr(extras, SOURCES[table]) if extras is not None else ()
    else:
        columns, rows = (COLUMNS, board.rows) if table == "benchmarks" else (AGGREGATE, board.aggregate)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row[c]) for c in columns])
    return buf.getvalue()
