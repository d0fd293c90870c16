"""The one Arrow schema of run record files, read off ``harness.results.record.RunRecord``, and the
upgrade of older files to it on read.

Every ``runs/<run_id>.parquet`` written since results schema 2 has exactly ``arrow_schema()``: the
same columns, in record order, with the same types (``str`` -> string, ``int`` -> int64, ``float`` ->
float64, ``bool`` -> bool; every field nullable, so a null is a typed null), so a runs folder is one
dataset for pandas, pyarrow, polars and duckdb. Hyperparameters live in the ``hparams`` JSON column
only; ``with_hp_columns`` gives readers their ``hp_<name>`` columns.

Schema 1 files (one column per value the row happened to hold: ``hp_<name>`` columns that differ by
optimizer, null-typed columns where a value was None, columns added later missing) are upgraded by
``conform``: ``hp_*`` dropped (re-derived from ``hparams``), each column cast to its type, a missing
column filled with the value it had before it existed (``V1_FILL``) or null. ``schema_version`` keeps
the file's value, so a reader can tell upgraded rows. Columns outside the schema are dropped. A file
of a newer schema than this optbench knows raises ``NewerSchema``. Torch-free.
"""

from __future__ import annotations

import functools
import json
import typing
from dataclasses import fields
from typing import Any

from harness.results.record import SCHEMA_VERSION, RunRecord, hp_columns

CURVE_COLUMNS = ("run_id", "step", "split", "name", "value")
HP_PREFIX = "hp_"

# Columns a schema 1 file may lack, with the value every such row had (the feature did not exist when
# the row was written): no tuning replicates, no branching, no resume, no delay, the full budget, no
# sweep axes. (A schema 2 file written before ``cell`` existed is filled the same way.)
V1_FILL: dict[str, Any] = {
    "replicate": 0,
    "branched_from": "",
    "branch_step": 0,
    "resumed_at_step": 0,
    "delay": 0,
    "budget": 1.0,
    "cell": "",
}


class NewerSchema(ValueError):
    """A record file written by a newer optbench (a results schema above ``SCHEMA_VERSION``)."""


def _arrow_type(annotation: Any):
    import pyarrow as pa

    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    types = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}
    if base not in types:
        raise TypeError(f"RunRecord field type {annotation!r} has no Arrow type")
    return types[base]


@functools.lru_cache(maxsize=1)
def arrow_schema():
    """The Arrow schema of a run record file: one field per ``RunRecord`` field, in order."""
    import pyarrow as pa

    hints = typing.get_type_hints(RunRecord)
    return pa.schema([pa.field(f.name, _arrow_type(hints[f.name]), nullable=True) for f in fields(RunRecord)])


@functools.lru_cache(maxsize=1)
def curve_schema():
    """The Arrow schema of a curves file (long table, one row per logged value)."""
    import pyarrow as pa

    return pa.schema(
        [
            ("run_id", pa.string()),
            ("step", pa.int64()),
            ("split", pa.string()),
            ("name", pa.string()),
            ("value", pa.float64()),
        ]
    )


def table_of_rows(rows: list[dict[str, Any]]):
    """Rows (dicts keyed by column) as a table of exactly ``arrow_schema()``: a missing column is
    null, ``hp_<name>`` keys are dropped (the files hold ``hparams`` only). ``ValueError`` names any
    other key that is not a column (a typo would otherwise vanish)."""
    import pyarrow as pa

    schema = arrow_schema()
    known = set(schema.names)
    unknown = sorted({k for row in rows for k in row if k not in known and not k.startswith(HP_PREFIX)})
    if unknown:
        raise ValueError(f"not run record columns: {', '.join(unknown)} (columns: harness.results.record.RunRecord)")
    return pa.Table.from_pylist([{k: row.get(k) for k in schema.names} for row in rows], schema=schema)


def file_schema_version(table) -> int:
    """The largest ``schema_version`` in ``table`` (1 when it has none)."""
    if "schema_version" not in table.column_names or table.num_rows == 0:
        return 1
    values = [v for v in table["schema_version"].to_pylist() if v is not None]
    return int(max(values)) if values else 1


def _cast(column, target):
    """``column`` as ``target``; floats going to integers take NaN as null (a file written by pandas)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type == target:
        return column
    if pa.types.is_floating(column.type) and pa.types.is_integer(target):
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column.cast(target)


def conform(table, source: str = ""):
    """``table`` (read from a record file) with exactly ``arrow_schema()``: a schema 2 file as it is,
    an older one upgraded (see the module docstring). ``NewerSchema`` for a newer file; a column that
    cannot take its type raises ``pyarrow.ArrowInvalid`` (the file counts as unreadable)."""
    import pyarrow as pa

    schema = arrow_schema()
    version = file_schema_version(table)
    if version > SCHEMA_VERSION:
        raise NewerSchema(
            f"{source or 'record file'} has results schema {version}, newer than this optbench's "
            f"{SCHEMA_VERSION}: upgrade optbench to read it"
        )
    if table.schema.equals(schema):
        return table
    names, n = set(table.column_names), table.num_rows
    arrays = []
    for field in schema:
        if field.name in names:
            arrays.append(_cast(table[field.name], field.type))
        elif field.name == "dataset_source" and "dataset" in names:
            arrays.append(_cast(table["dataset"], field.type))  # before path: data, the source was the name
        elif field.name in V1_FILL:
            arrays.append(pa.array([V1_FILL[field.name]] * n, field.type))
        else:
            arrays.append(pa.nulls(n, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def parsed_hparams(text: Any) -> dict[str, Any]:
    """``hparams`` JSON as a dict ({} for null or text that is not a JSON object)."""
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def with_hp_columns(frame):
    """``frame`` (run rows) with one ``hp_<name>`` column per hyperparameter any row has, from its
    ``hparams`` JSON (``harness.results.record.hp_columns``); null where a row's optimizer lacks it."""
    import pandas as pd

    if "hparams" not in frame.columns or len(frame) == 0:
        return frame
    hp = pd.DataFrame.from_records([hp_columns(parsed_hparams(h)) for h in frame["hparams"]], index=frame.index)
    if hp.shape[1] == 0:
        return frame
    return pd.concat([frame.drop(columns=[c for c in hp.columns if c in frame.columns]), hp], axis=1)
