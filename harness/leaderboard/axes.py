"""Ablation axes (issue 25): the cells of a sweep axis compared along it, and SoftX − X at each value.

An axis is a key of the records' ``cell`` (``harness.vocab.CONDITION_AXES`` say which are conditions):

* a **condition** axis (``delay``, ``schedule``, ``min_lr_ratio``, ...): each value is a benchmark of
  its own; the cells of one optimizer along it are its runs in the sibling benchmarks
  (``conditions.siblings``);
* a **hyperparameter** axis (``alpha_sign``, ``tmax``, ...): each value is an entry of its own in one
  benchmark (``softsignum[alpha_sign=0.5]``); the cells along it are the entries of one optimizer that
  differ in that key only.

Two kinds of row per axis value (``comparison``):

* ``along``: the cell at the value minus the cell at the axis's **reference value**, the smallest
  value (numbers by value, then text: delay 0, min_lr_ratio 0, tmax 20, alpha_sign's lowest, cosine
  before wsd), as the leaderboard's paired comparison (``compare.compare``: replicate r with r, the
  runs sharing an eval seed within; SoftX runs branched from X share their parent when they share the
  seed, so pairing by seed pairs by parent), its verdict against the margin of the reference cell's
  benchmark, and its MDE. The reference value's own row has no comparison; every row carries the
  cell's mean and 95% interval (what the metric-vs-axis plot draws).
* ``soft``: SoftX − X in the cell at that value, the leaderboard's own SoftX-vs-X comparison
  (``soft_*`` columns), X being ``load.soft_entry`` of the SoftX entry.
"""

from __future__ import annotations

from harness.leaderboard.compare import Comparison, compare
from harness.leaderboard.load import axis_values, base_name, display_key, entry_label, format_value, soft_ref
from harness.leaderboard.siblings import comparison_fields, siblings, sort_values
from harness.vocab import CONDITION_AXES

SOFT_FIELDS = ("n", "diff", "lo", "hi", "verdict", "excludes_zero", "mde", "replicates_needed", "seeds_needed")


def _number_or_text(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _row(
    axis: str,
    comparison: str,
    bench,
    variant: str,
    name: str,
    family: str,
    value,
    reference: str,
    ref_value,
    fields: dict,
) -> dict:
    s = bench.summaries[name]
    return {
        "axis": axis,
        "kind": "condition" if axis in CONDITION_AXES else "hyperparameter",
        "comparison": comparison,
        "task": bench.key[0],
        "dataset": bench.key[1],
        "size": bench.key[2],
        "variant": variant,
        "metric": bench.metric.name,
        "direction": bench.metric.direction,
        "family": family,
        "optimizer": name,
        "value": format_value(value),
        "reference": reference,
        "ref_value": format_value(ref_value),
        "margin": bench.margin,
        "mean": s.mean,
        "ci_lo": s.lo,
        "ci_hi": s.hi,
        "n_seeds": s.n_seeds,
        **fields,
    }


def _soft(axis: str, extras, bench, variant: str, name: str, family: str, value) -> dict | None:
    if soft_ref(name) is None:
        return None
    row = next((r for r in extras.rows_of(bench) if r["optimizer"] == name), None)
    if row is None or not row["soft_n"]:
        return None
    return _row(
        axis,
        "soft",
        bench,
        variant,
        name,
        family,
        value,
        row["soft_ref"],
        value,
        {k: row[f"soft_{k}"] for k in SOFT_FIELDS},
    )


def _condition_axis(axis: str, extras) -> list[dict]:
    out = []
    for (_, _, _, variant), by_value in siblings(extras.benches, axis):
        values = list(by_value)
        ref = values[0]
        base = by_value[ref]
        for value in values:
            bench = by_value[value]
            for name in sorted(bench.names, key=display_key):
                if value != ref and name in base.values:
                    c = compare(bench.values[name], base.values[name], base.margin, base.metric)
                else:
                    c = Comparison.empty()
                out.append(
                    _row(
                        axis,
                        "along",
                        bench,
                        variant,
                        name,
                        name,
                        value,
                        name if value != ref and name in base.values else "",
                        ref,
                        comparison_fields(c),
                    )
                )
            for name in sorted(bench.names, key=display_key):
                soft = _soft(axis, extras, bench, variant, name, name, value)
                if soft is not None:
                    out.append(soft)
    return out


def _hyperparameter_axis(axis: str, extras) -> list[dict]:
    out = []
    for bench in extras.benches:
        families: dict[str, dict[str, str]] = {}
        for name in bench.names:
            cells = axis_values(name)
            if axis not in cells:
                continue
            rest = {k: v for k, v in cells.items() if k != axis}
            families.setdefault(entry_label(base_name(name), rest), {})[cells[axis]] = name
        for family in sorted(families, key=display_key):
            by_value = families[family]
            texts = sorted(
                by_value, key=lambda t: sort_values([_number_or_text(x) for x in by_value]).index(_number_or_text(t))
            )
            ref = texts[0]
            ref_name = by_value[ref]
            for text in texts:
                name = by_value[text]
                c = bench.pairs[(name, ref_name)] if text != ref else Comparison.empty()
                value = _number_or_text(text)
                out.append(
                    _row(
                        axis,
                        "along",
                        bench,
                        bench.key[3],
                        name,
                        family,
                        value,
                        ref_name if text != ref else "",
                        _number_or_text(ref),
                        comparison_fields(c),
                    )
                )
            for text in texts:
                soft = _soft(axis, extras, bench, bench.key[3], by_value[text], family, _number_or_text(text))
                if soft is not None:
                    out.append(soft)
    return out


def axis_rows(extras) -> list[dict]:
    """Every axis of the records (``extras.axes``), its ``along`` and ``soft`` rows (module docstring)."""
    out = []
    for axis in extras.axes:
        out += _condition_axis(axis, extras) if axis in CONDITION_AXES else _hyperparameter_axis(axis, extras)
    return out
