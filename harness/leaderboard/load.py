"""Reading run records for a leaderboard: the folder, the records' consistency, the sweep's budget
(``harness.results.budget``: no import of the sweep), and the frame the computation works on
(benchmark variants, one eval row per seed)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from harness.errors import UserError

BENCH_KEYS = ("task", "dataset", "size", "variant")
REQUIRED = ("run_id", "schema_version", "suite", "task", "dataset", "size", "optimizer", "phase",
            "seed", "status", "metric", "direction", "val_metric", "test_metric")


def display_key(name: str) -> tuple[int, str]:
    """Tables list optimizers in the built-in registry's order (each SoftX right after its X), then
    plugins alphabetically: the order is a fact of the registry, not of the leaderboard."""
    import optimizers

    order = list(optimizers.REGISTRY)
    return (order.index(name), "") if name in order else (len(order), name)


def soft_ref(optimizer: str) -> str | None:
    """The optimizer ``optimizer`` *is* before its switch (SoftSignum -> Signum, SoftMuon -> Muon,
    HardSwitchSign -> Signum): a fact of its registry spec (``OptimizerSpec.branch_from``), and the
    reference of its SoftX-vs-X comparison. None for every other optimizer, and for a record of a
    plugin that is not installed here."""
    from harness import plugins

    try:
        spec = plugins.optimizer(optimizer)
    except UserError:
        return None
    return getattr(spec, "branch_from", None)


def load_runs(results: str | os.PathLike):
    """Read the run rows under ``results`` (a results folder or its runs/ folder), keeping only the
    runs inside the sweep's budget when the folder is a sweep's.

    Returns ``(frame, messages)``: one message per unreadable file (named, left out) and one saying
    how many records the budget left out. ``UserError`` when the folder or its runs/ do not exist."""
    from harness.results import store as records

    root = records.results_root(results)
    if not root.exists():
        raise UserError(f"results folder {results} does not exist; give the --out folder of "
                        "optbench suite / sweep / run (e.g. results/demo)")
    if not records.runs_dir(root).is_dir():
        raise UserError(f"no run records under {root}: expected {records.runs_dir(root)}/*.parquet; "
                        "run optbench suite or optbench sweep first")
    skipped: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = records.read_runs(root, skipped=skipped)
    messages = [str(w.message) for w in caught] or [f"skipping unreadable run file {s}" for s in skipped]
    frame, note = within_sweep_budget(frame, root)
    return frame, messages + ([note] if note else [])


def within_sweep_budget(frame, root: Path):
    """A sweep's results folder holds ``plan.json``, the budget of the last sweep file it accepted
    (``harness.results.budget``): keep only the runs inside that budget (the first ``trials`` tune
    slots, the listed eval seeds of the best of them), so a lowered budget is honoured exactly.
    Returns the rows and a note on what was left out ("" when nothing). A folder with a sweep file
    but no ``plan.json`` (written before it existed) is a ``UserError`` naming the command that
    writes it."""
    if len(frame) == 0 or "study" not in frame.columns:
        return frame, ""
    from harness.results import budget

    plan = budget.read_plan(root)
    if plan is None:
        return frame, ""
    kept, dropped = budget.within_budget(frame, plan)
    if not dropped:
        return frame, ""
    return kept, (f"{dropped} run record(s) outside the budget of {budget.plan_path(root)} are left out (tune "
                  "trials beyond its 'trials', eval seeds it does not list, evaluations of a configuration that is "
                  "not the best of those trials, studies it does not plan)")


def check_consistent(frame, *, allow_mixed: bool = False, source: str = "") -> None:
    """Refuse records that mix schema versions or suites (unless ``allow_mixed``), and records that
    are not optbench run rows at all."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise UserError(f"{source or 'records'}: not optbench run records, missing columns {', '.join(missing)}")
    if allow_mixed:
        return
    for column, what in (("schema_version", "schema versions"), ("suite", "suites")):
        counts = frame[column].dropna().astype(str).value_counts().sort_index()
        if len(counts) > 1:
            listing = ", ".join(f"{k} ({v} runs)" for k, v in counts.items())
            raise UserError(
                f"records under {source or 'the results folder'} mix {what}: {listing}; "
                f"compare one {column.replace('_', ' ')} at a time (point at one suite's folder), "
                "or pass --allow-mixed to pool them anyway"
            )


def as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def variants(frame) -> list[str]:
    """Per row: "" or a compact label of the task options (and step budget) that differ between
    settings of the same (task, dataset, size), e.g. ``model="sage"``: different models or budgets
    are different benchmarks and are never ranked together."""
    options = frame["task_options"] if "task_options" in frame.columns else [None] * len(frame)
    steps = frame["steps"] if "steps" in frame.columns else [None] * len(frame)
    parsed = []
    for value, budget in zip(options, steps):
        try:
            setting = json.loads(value) if isinstance(value, str) and value else {}
        except json.JSONDecodeError:
            setting = {"options": value}
        budget = as_float(budget)
        setting["steps"] = int(budget) if math.isfinite(budget) else None
        parsed.append(setting)
    labels = [""] * len(frame)
    by_bench: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(frame["task"], frame["dataset"], frame["size"])):
        by_bench.setdefault(key, []).append(i)
    for idx in by_bench.values():
        if len({json.dumps(parsed[i], sort_keys=True) for i in idx}) < 2:
            continue
        names = sorted({k for i in idx for k in parsed[i]})
        differing = [k for k in names if len({json.dumps(parsed[i].get(k)) for i in idx}) > 1]
        for i in idx:
            labels[i] = ",".join(f"{k}={json.dumps(parsed[i].get(k))}" for k in differing)
    return labels


def latest_evals(evals):
    """Keep one eval row per (benchmark, optimizer, replicate, seed): the latest ``finished_at``
    (run_id breaks ties), so a seed re-evaluated after re-tuning counts once. Needs the ``variant``
    column. Returns (rows, number of superseded rows)."""
    finished = evals["finished_at"] if "finished_at" in evals.columns else None
    evals = evals.assign(_finished=finished.astype(str) if finished is not None else "",
                         _rid=evals["run_id"].astype(str))
    evals = evals.sort_values(["_finished", "_rid"], kind="stable")
    kept = evals.drop_duplicates(subset=[*BENCH_KEYS, "optimizer", "replicate", "seed"], keep="last")
    return kept.drop(columns=["_finished", "_rid"]), len(evals) - len(kept)


def prepare(frame):
    """The frame the computation reads: key columns as text (a null key must not drop rows), the
    ``variant`` column, optional columns present, ``replicate`` as int."""
    frame = frame.copy()
    for column in ("task", "dataset", "size", "optimizer", "phase", "status"):
        frame[column] = frame[column].fillna("").astype(str)
    frame["variant"] = variants(frame)
    for column in ("finished_at", "steps_to_target", "target", "hparams", "branched_from"):
        if column not in frame.columns:
            frame[column] = None
    if "replicate" not in frame.columns:
        frame["replicate"] = 0
    frame["replicate"] = frame["replicate"].fillna(0).astype(int)
    return frame
