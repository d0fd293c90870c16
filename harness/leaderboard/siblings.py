"""Benchmarks side by side along one condition or axis value: the helpers ``conditions`` (budgets,
delays) and ``axes`` (sweep cells) share. Benchmarks are *siblings along* a condition ``c`` when they
share task, dataset, size, task options and every other condition value (``siblings``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from harness.leaderboard.compare import Comparison
from harness.leaderboard.load import CONDITION_DEFAULTS


def _sort_value(value) -> tuple:
    if isinstance(value, bool) or value is None:
        return (2, 0.0, json.dumps(value))
    if isinstance(value, (int, float)):
        return (0, float(value), "")
    return (1, 0.0, json.dumps(value, sort_keys=True))


def sort_values(values) -> list:
    """Condition or axis values in order: numbers by value, then text, then the rest."""
    return sorted(values, key=_sort_value)


def non_default(conditions: dict) -> dict:
    """The conditions that are not at their defaults (budget 1, delay 0; a cell's conditions always)."""
    return {k: v for k, v in conditions.items() if k not in CONDITION_DEFAULTS or v != CONDITION_DEFAULTS[k]}


def label_without(bench, key: str) -> str:
    """The benchmark's variant without its ``key=...`` part: the label of its sibling group."""
    parts = [p for p in bench.condition.split(",") if p and not p.startswith(f"{key}=")] if bench.condition else []
    return ",".join(p for p in (bench.setting, *parts) if p)


def siblings(benches: Sequence, key: str) -> list[tuple[tuple, dict]]:
    """Groups of benchmarks that differ only in condition ``key``: ((task, dataset, size, label
    without key), {value: benchmark}), groups with at least two values only, in sorted order."""
    groups: dict[tuple, dict] = {}
    for b in benches:
        if key not in b.conditions:
            continue
        rest = json.dumps({k: v for k, v in b.conditions.items() if k != key}, sort_keys=True)
        ident = (*b.key[:3], b.setting, rest)
        groups.setdefault(ident, {})[json.dumps(b.conditions[key])] = b
    out = []
    for ident, by_value in sorted(groups.items()):
        if len(by_value) < 2:
            continue
        any_bench = next(iter(by_value.values()))
        values = {json.loads(v): b for v, b in by_value.items()}
        out.append(((*ident[:3], label_without(any_bench, key)), {v: values[v] for v in sort_values(values)}))
    return out


def comparison_fields(c: Comparison) -> dict:
    """The nine fields of a comparison, unprefixed (``columns.COMPARISON_FIELDS``)."""
    return {k.split("_", 1)[1]: v for k, v in c.fields("x").items()}
