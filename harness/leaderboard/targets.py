"""Time-to-target (issue 21): steps and training seconds until each eval run reaches its benchmark's
target, per-benchmark medians with intervals, and AlgoPerf performance-profile scores.

* **Target**, per benchmark and its full-budget sibling (a budget branch is measured against the
  target of the full budget): the records' ``target`` column when one of the benchmark's eval runs
  declares a finite one (the task's or the sweep file's), else **derived**: the median final
  validation metric of the reference optimizer's eval runs at the full budget
  (``harness.stats.profiles.derive_target``; a diverged run counts as the worst value), the reference
  being ``adamw`` when it ran, else the first entry in registry order. ``target_rule`` says which.
  No full-budget runs of a reference (or a median that is not a number): no target, and the rows say
  why.
* **Per run** (``profiles.time_to_target``): the first evaluation of its curve (curves split
  ``val``, the benchmark's metric) at least as good as the target: its step, and the cumulative
  training seconds there (split ``train``, name ``seconds``; evaluation excluded). A miss, a
  diverged or failed run without a reaching evaluation: ``inf``. A run whose curve is missing is left
  out and counted in ``n_missing``.
* **Per benchmark and optimizer**: the median over its eval runs with the seeded percentile-bootstrap
  interval (``profiles.median_ci``), steps and seconds.
* **Profiles** (``profile_rows``): per condition (the benchmarks of one delay and one set of cell
  conditions, at the full budget: a workload is one full training run, as in AlgoPerf), per measure
  (steps, seconds) and optimizer: the AlgoPerf integrated score (``profiles.integrated_score``,
  ``r_max = 4``) over the per-benchmark medians (Dahl et al. 2023, arXiv:2306.07179).
"""

from __future__ import annotations

import json
import math

import numpy as np

from harness.leaderboard.load import CONDITION_DEFAULTS, as_float, display_key
from harness.stats import profiles
from harness.stats.profiles import ProfileError

BASELINE = "adamw"
MEASURES = ("steps", "seconds")


def _full_budget(bench) -> bool:
    return float(bench.conditions.get("budget", 1.0)) == 1.0


def _group(bench) -> tuple:
    rest = {k: v for k, v in bench.conditions.items() if k != "budget"}
    return (*bench.key[:3], bench.setting, json.dumps(rest, sort_keys=True))


def _eval_rows(extras, bench):
    evals = extras.evals
    same = (
        (evals["task"] == bench.key[0])
        & (evals["dataset"] == bench.key[1])
        & (evals["size"] == bench.key[2])
        & (evals["variant"] == bench.key[3])
    )
    return evals[same]


def _target(extras, bench, full) -> tuple[float, str]:
    """(target, rule) of ``bench``; (nan, why not) when there is none."""
    declared = [t for t in (as_float(v) for v in _eval_rows(extras, bench)["target"]) if math.isfinite(t)]
    if declared:
        return declared[0], "declared in the records"
    if full is None:
        return math.nan, "no target: no full-budget runs to derive one from"
    names = list(full.names)
    reference = BASELINE if BASELINE in names else sorted(names, key=display_key)[0]
    rows = _eval_rows(extras, full)
    mine = rows[rows["optimizer"] == reference]
    finals = [as_float(v) if s == "ok" else math.nan for v, s in zip(mine["val_metric"], mine["status"])]
    try:
        value = profiles.derive_target({reference: finals}, full.metric.direction, reference)
    except ProfileError as exc:
        return math.nan, f"no target: {exc}"
    return value, f"derived: median final validation {full.metric.name} of {reference} at the full budget"


def _curve_times(curve, metric: str, target: float, direction: str) -> tuple[float, float]:
    val = curve[(curve["split"] == "val") & (curve["name"] == metric)].drop_duplicates("step", keep="last")
    if val.empty:
        return math.inf, math.inf
    secs = curve[(curve["split"] == "train") & (curve["name"] == "seconds")].drop_duplicates("step", keep="last")
    by_step = dict(zip(secs["step"].astype(int), secs["value"].astype(float)))
    steps = val["step"].astype(int).tolist()
    cumulative = [by_step.get(s, math.nan) for s in steps]
    known = all(math.isfinite(c) for c in cumulative) and all(
        np.diff([c for _, c in sorted(zip(steps, cumulative))]) >= 0
    )
    return profiles.time_to_target(
        steps, val["value"].astype(float).tolist(), target, direction, seconds=cumulative if known else None
    )


def time_rows(extras) -> list[dict]:
    """One row per benchmark and optimizer (module docstring); empty when no curves are known."""
    benches = extras.benches
    fulls = {_group(b): b for b in benches if _full_budget(b)}
    run_ids = set(extras.evals["run_id"].astype(str))
    curves = extras.curves(run_ids) if run_ids else None
    if curves is None:
        return []
    by_run = {rid: c for rid, c in curves.groupby("run_id", sort=False)} if len(curves) else {}
    out = []
    for bench in benches:
        target, rule = _target(extras, bench, fulls.get(_group(bench)))
        rows = _eval_rows(extras, bench)
        for name in bench.names:
            mine = rows[rows["optimizer"] == name]
            times: dict[str, list[float]] = {m: [] for m in MEASURES}
            missing = 0
            for rid in mine["run_id"].astype(str):
                if rid not in by_run:
                    missing += 1
                    continue
                if math.isfinite(target):
                    step, secs = _curve_times(by_run[rid], bench.metric.name, target, bench.metric.direction)
                    times["steps"].append(step)
                    times["seconds"].append(secs)
            row = {
                "task": bench.key[0],
                "dataset": bench.key[1],
                "size": bench.key[2],
                "variant": bench.key[3],
                "metric": bench.metric.name,
                "direction": bench.metric.direction,
                "optimizer": name,
                "budget": float(bench.conditions.get("budget", 1.0)),
                "target": target,
                "target_rule": rule,
                "n_runs": len(mine),
                "n_missing": missing,
                "_conditions": bench.conditions,
                "reached": sum(math.isfinite(s) for s in times["steps"]) if math.isfinite(target) else None,
            }
            for measure in MEASURES:
                values = times[measure]
                known = values and not any(math.isnan(v) for v in values)
                m = profiles.median_ci(values) if known else profiles.MedianCI(math.nan, math.nan, math.nan, 0, 0)
                row.update({f"median_{measure}": m.median, f"{measure}_lo": m.lo, f"{measure}_hi": m.hi})
            out.append(row)
    return out


def condition_label(conditions: dict) -> str:
    """The conditions of a profile, budget aside: those not at their defaults, ``key=value`` (JSON)."""
    parts = [
        f"{k}={json.dumps(v)}"
        for k, v in sorted(conditions.items())
        if k != "budget" and (k not in CONDITION_DEFAULTS or v != CONDITION_DEFAULTS[k])
    ]
    return ",".join(parts)


def ratio_tables(rows, measure: str) -> dict[str, dict[str, dict[str, float]]]:
    """Per condition (``condition_label``): AlgoPerf performance ratios ``r[benchmark][entry]`` of the
    ``measure`` medians of the full-budget benchmarks with a target (``profiles.time_ratios``; a
    benchmark with a median that is 0 or unknown is left out)."""
    by_condition: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        if r["budget"] != 1.0 or not math.isfinite(r["target"]):
            continue
        workload = "/".join((r["task"], r["dataset"], r["size"], r["variant"]))
        by_condition.setdefault(condition_label(r["_conditions"]), {}).setdefault(workload, {})[r["optimizer"]] = r[
            f"median_{measure}"
        ]
    out = {}
    for label, times in sorted(by_condition.items()):
        usable = {w: row for w, row in times.items() if all(not math.isnan(t) and t > 0 for t in row.values())}
        if usable:
            names = sorted({s for row in usable.values() for s in row}, key=display_key)
            out[label] = profiles.time_ratios(usable, names)
    return out


def profile_rows(rows) -> list[dict]:
    """AlgoPerf integrated scores (``profiles.integrated_score``, r_max = 4) per condition, measure and
    entry over ``ratio_tables``."""
    out = []
    for measure in MEASURES:
        for label, ratios in ratio_tables(rows, measure).items():
            scores = profiles.integrated_score(ratios)
            for name in sorted(scores, key=display_key):
                ran = sum(
                    1
                    for r in rows
                    if r["optimizer"] == name
                    and r["budget"] == 1.0
                    and condition_label(r["_conditions"]) == label
                    and "/".join((r["task"], r["dataset"], r["size"], r["variant"])) in ratios
                )
                out.append(
                    {
                        "condition": label,
                        "measure": measure,
                        "optimizer": name,
                        "n_benchmarks": len(ratios),
                        "n_ran": ran,
                        "score": scores[name],
                    }
                )
    return out
