"""Reading run records for a leaderboard: the folder, the records' consistency, the sweep's budget
(``harness.results.budget``: no import of the sweep), and the frame the computation works on
(benchmark variants, entries, one eval row per seed).

Conditions and axis cells (issues 21, 22, 25). A record's ``budget`` (fraction of the step budget a
WSD decay branch trained), ``delay`` (gradient delay) and the *condition* keys of its ``cell``
(``harness.vocab.CONDITION_AXES``: delay and the schedule keys) are conditions: where they differ
within a (task, dataset, size), they are part of the benchmark's ``variant`` (``budget=0.5``,
``delay=1``, ``schedule="wsd"``), so every condition is a benchmark of its own and its runs never
pool with, nor replace, the runs of another. The *hyperparameter* keys of a ``cell`` make an entry of
their own: the optimizer label is ``name[key=value,...]`` (``softsignum[alpha_sign=0.5]``), and
registry facts (display order, the SoftX reference) are read off the base name (``base_name``).
Records without these columns, or with every value at its default, get the labels of before.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.vocab import CONDITION_AXES, CONDITION_COLUMNS

BENCH_KEYS = ("task", "dataset", "size", "variant")
REQUIRED = (
    "run_id",
    "schema_version",
    "suite",
    "task",
    "dataset",
    "size",
    "optimizer",
    "phase",
    "seed",
    "status",
    "metric",
    "direction",
    "val_metric",
    "test_metric",
)
CONDITION_DEFAULTS: dict[str, Any] = dict(zip(CONDITION_COLUMNS, (1.0, 0)))  # budget: all of it; delay: none
ROOT_ATTR = "optbench_results_root"  # frame.attrs key: the folder load_runs read (curves live beside the runs)


def base_name(label: str) -> str:
    """The registered optimizer of an entry label: ``softsignum[alpha_sign=0.5]`` -> ``softsignum``."""
    return label.split("[", 1)[0]


def format_value(value: Any) -> str:
    """An axis value as an entry label writes it: ``0.5``, ``1e+09``, ``wsd``, ``true``."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.12g}"
    if isinstance(value, (int, str)):
        return str(value)
    return json.dumps(value, sort_keys=True)


def entry_label(optimizer: str, hparams: Mapping[str, Any]) -> str:
    """``optimizer`` with its hyperparameter-axis values: ``name[key=value,...]`` (keys sorted);
    the bare name when there are none."""
    if not hparams:
        return optimizer
    return f"{optimizer}[{','.join(f'{k}={format_value(v)}' for k, v in sorted(hparams.items()))}]"


def axis_values(label: str) -> dict[str, str]:
    """The ``key=value`` pairs of an entry label, values as text (``{}`` for a bare name)."""
    if "[" not in label or not label.endswith("]"):
        return {}
    out = {}
    for part in label[label.index("[") + 1 : -1].split(","):
        key, _, value = part.partition("=")
        out[key] = value
    return out


def _sortable(text: str) -> tuple[int, float, str]:
    try:
        return 0, float(text), text
    except ValueError:
        return 1, 0.0, text


def display_key(name: str) -> tuple:
    """Tables list optimizers in the built-in registry's order (each SoftX right after its X), then
    plugins alphabetically: the order is a fact of the registry, not of the leaderboard. Entries of one
    optimizer (``softsignum[alpha_sign=0.3]``, ...) follow the bare name, by their axis values (numbers
    by value)."""
    import optimizers

    order = list(optimizers.REGISTRY)
    base = base_name(name)
    head = (order.index(base), "") if base in order else (len(order), base)
    cells = tuple((k, *_sortable(v)) for k, v in sorted(axis_values(name).items()))
    return (*head, cells) if cells else head


def soft_ref(optimizer: str) -> str | None:
    """The optimizer ``optimizer`` *is* before its switch (SoftSignum -> Signum, SoftMuon -> Muon,
    HardSwitchSign -> Signum): a fact of its registry spec (``OptimizerSpec.branch_from``), and the
    reference of its SoftX-vs-X comparison. None for every other optimizer, and for a record of a
    plugin that is not installed here. An entry label is looked up by its base name."""
    from harness import plugins

    try:
        spec = plugins.optimizer(base_name(optimizer))
    except UserError:
        return None
    return getattr(spec, "branch_from", None)


def soft_entry(label: str, names: Iterable[str]) -> str | None:
    """The entry among ``names`` that ``label``'s SoftX-vs-X comparison is against: X (``soft_ref``
    of the base name) with the hyperparameter-axis values it shares with ``label`` (a SoftX follows
    its parent's cell), the most specific such entry; the bare X when none carries axis values; None
    when X is not a switching reference or did not run. ``softsignum[alpha_sign=0.5]`` -> ``signum``."""
    ref = soft_ref(label)
    if ref is None:
        return None
    mine = axis_values(label)
    found = [n for n in names if base_name(n) == ref and all(mine.get(k) == v for k, v in axis_values(n).items())]
    if not found:
        return ref
    return max(found, key=lambda n: (len(axis_values(n)), n))


def load_runs(results: str | os.PathLike):
    """Read the run rows under ``results`` (a results folder or its runs/ folder), keeping only the
    runs inside the sweep's budget when the folder is a sweep's.

    Returns ``(frame, messages)``: one message per unreadable file (named, left out) and one saying
    how many records the budget left out. ``UserError`` when the folder or its runs/ do not exist."""
    from harness.results import store as records

    root = records.results_root(results)
    if not root.exists():
        raise UserError(
            f"results folder {results} does not exist; give the --out folder of "
            "optbench suite / sweep / run (e.g. results/demo)"
        )
    if not records.runs_dir(root).is_dir():
        raise UserError(
            f"no run records under {root}: expected {records.runs_dir(root)}/*.parquet; "
            "run optbench suite or optbench sweep first"
        )
    skipped: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        frame = records.read_runs(root, skipped=skipped)
    messages = [str(w.message) for w in caught] or [f"skipping unreadable run file {s}" for s in skipped]
    frame, note = within_sweep_budget(frame, root)
    frame.attrs[ROOT_ATTR] = str(root)  # where compute finds the runs' curves (time-to-target), if it needs them
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
    return kept, (
        f"{dropped} run record(s) outside the budget of {budget.plan_path(root)} are left out (tune "
        "trials beyond its 'trials', eval seeds it does not list, evaluations of a configuration that is "
        "not the best of those trials, studies it does not plan)"
    )


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


def parse_cell(value) -> dict[str, Any]:
    """A record's ``cell`` (JSON text of the sweep cell's axis values; '' outside axes) as a dict."""
    if not isinstance(value, str) or not value:
        return {}
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return {"cell": value}
    return parsed if isinstance(parsed, dict) else {"cell": parsed}


def split_cell(cell: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(condition axes, hyperparameter axes) of a parsed cell (``harness.vocab.CONDITION_AXES``)."""
    return (
        {k: v for k, v in cell.items() if k in CONDITION_AXES},
        {k: v for k, v in cell.items() if k not in CONDITION_AXES},
    )


def condition_values(frame) -> list[dict[str, Any]]:
    """Per row: its conditions, ``budget`` and ``delay`` from their columns (only when the frame has
    them; a null reads as the default) and the condition keys of its ``cell`` (the ``delay`` column
    wins over a cell's ``delay``)."""
    n = len(frame)
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    for column, default in CONDITION_DEFAULTS.items():
        if column not in frame.columns:
            continue
        for i, value in enumerate(frame[column]):
            v = as_float(value)
            v = float(default) if not math.isfinite(v) else v
            out[i][column] = int(v) if isinstance(default, int) and v == int(v) else v
    cells = frame["cell"] if "cell" in frame.columns else [None] * n
    for i, value in enumerate(cells):
        conditions, _ = split_cell(parse_cell(value))
        for key, v in conditions.items():
            out[i].setdefault(key, v)
    return out


def _differing_labels(settings: list[dict], groups: Iterable[list[int]]) -> list[str]:
    """Per row: the ``key=json`` pairs of the keys whose values differ within its group ('' if none)."""
    labels = [""] * len(settings)
    for idx in groups:
        if len({json.dumps(settings[i], sort_keys=True) for i in idx}) < 2:
            continue
        names = sorted({k for i in idx for k in settings[i]})
        differing = [k for k in names if len({json.dumps(settings[i].get(k)) for i in idx}) > 1]
        for i in idx:
            labels[i] = ",".join(f"{k}={json.dumps(settings[i].get(k))}" for k in differing)
    return labels


def _bench_groups(frame) -> list[list[int]]:
    by_bench: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(frame["task"], frame["dataset"], frame["size"])):
        by_bench.setdefault(key, []).append(i)
    return list(by_bench.values())


def setting_labels(frame) -> list[str]:
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
    return _differing_labels(parsed, _bench_groups(frame))


def condition_labels(frame, conditions: list[dict[str, Any]] | None = None) -> list[str]:
    """Per row: "" or the conditions that differ within its (task, dataset, size) and are not at their
    defaults (budget 1, delay 0; a cell's conditions have none), e.g. ``budget=0.5,delay=1``
    (``budget``, ``delay``, then the schedule keys, in ``CONDITION_AXES`` order). The default
    condition keeps the label it had before conditions existed; an omitted key is at its default (a
    cell without a schedule axis trains with its task's schedule: no ``schedule=null``), so two
    conditions never share a label."""
    conditions = condition_values(frame) if conditions is None else conditions
    order = {k: i for i, k in enumerate(("budget", *CONDITION_AXES))}
    labels = [""] * len(conditions)
    for idx in _bench_groups(frame):
        differing = sorted(
            {k for i in idx for k in conditions[i] if len({json.dumps(conditions[j].get(k)) for j in idx}) > 1},
            key=lambda k: (order.get(k, len(order)), k),
        )
        for i in idx:
            labels[i] = ",".join(
                f"{k}={json.dumps(conditions[i][k])}"
                for k in differing
                if k in conditions[i] and (k not in CONDITION_DEFAULTS or conditions[i][k] != CONDITION_DEFAULTS[k])
            )
    return labels


def join_variant(setting: str, condition: str) -> str:
    return ",".join(p for p in (setting, condition) if p)


def variants(frame) -> list[str]:
    """Per row: the benchmark variant, the differing task options (``setting_labels``) then the
    differing conditions (``condition_labels``); "" when nothing differs."""
    return [join_variant(a, b) for a, b in zip(setting_labels(frame), condition_labels(frame))]


def latest_evals(evals):
    """Keep one eval row per (benchmark, optimizer, replicate, seed): the latest ``finished_at``
    (run_id breaks ties), so a seed re-evaluated after re-tuning counts once. Needs the ``variant``
    column. Returns (rows, number of superseded rows)."""
    finished = evals["finished_at"] if "finished_at" in evals.columns else None
    evals = evals.assign(
        _finished=finished.astype(str) if finished is not None else "", _rid=evals["run_id"].astype(str)
    )
    evals = evals.sort_values(["_finished", "_rid"], kind="stable")
    kept = evals.drop_duplicates(subset=[*BENCH_KEYS, "optimizer", "replicate", "seed"], keep="last")
    return kept.drop(columns=["_finished", "_rid"]), len(evals) - len(kept)


def prepare(frame):
    """The frame the computation reads: key columns as text (a null key must not drop rows), the
    ``variant`` column (with its parts ``setting`` and ``condition``, and ``conditions``: the row's
    condition values as JSON), the entry label in ``optimizer`` (the registered name in
    ``base_optimizer``), optional columns present, ``replicate`` as int."""
    frame = frame.copy()
    for column in ("task", "dataset", "size", "optimizer", "phase", "status"):
        frame[column] = frame[column].fillna("").astype(str)
    conditions = condition_values(frame)
    frame["setting"] = setting_labels(frame)
    frame["condition"] = condition_labels(frame, conditions)
    frame["variant"] = [join_variant(a, b) for a, b in zip(frame["setting"], frame["condition"])]
    frame["conditions"] = [json.dumps(c, sort_keys=True) for c in conditions]
    frame["base_optimizer"] = frame["optimizer"]
    if "cell" in frame.columns:
        frame["optimizer"] = [
            entry_label(name, split_cell(parse_cell(cell))[1]) for name, cell in zip(frame["optimizer"], frame["cell"])
        ]
    for column in ("finished_at", "steps_to_target", "target", "hparams", "branched_from"):
        if column not in frame.columns:
            frame[column] = None
    if "replicate" not in frame.columns:
        frame["replicate"] = 0
    frame["replicate"] = frame["replicate"].fillna(0).astype(int)
    return frame
