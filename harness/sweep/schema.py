"""Sweep files: the schema, and validation into a ``Sweep`` of ``StudyPlan``s (``harness.sweep.plan``).

Everything a user can get wrong in a sweep file is found here, before anything runs or is written:
unknown keys and names, impossible budgets, and search ranges the optimizer itself refuses (every
bound of a searched range is built on a throw-away parameter, ``harness.sweep.expand.probe_ranges``).
Errors name the file, the line and the key (``harness.errors.UserError``; YAML with line numbers:
``harness.sweep.yamlfile``). The registries (torch) are imported only after the plain YAML checks,
so a typo is reported instantly. This module validates the keys and values of the file (the
``optimizers`` list and every ``fixed``/``search`` override: ``harness.sweep.optimizer_entries``);
turning each validated task entry into its plans is ``harness.sweep.expand``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.sweep import axes, optimizer_entries
from harness.sweep.expand import Entry, Grid, Optimizers
from harness.sweep.optimizer_entries import OPTIMIZER_SCHEMA
from harness.sweep.plan import MAX_SEED, Heartbeat, PrunerConfig, SamplerConfig, StudyPlan, Sweep
from harness.sweep.yamlfile import _Checker, _parse_yaml, _where
from harness.vocab import SIZES as VOCAB_SIZES

# Sweep-file schema: key -> one line of meaning. Unknown keys are errors (typos never pass silently).
SCHEMA: dict[str, str] = {
    "suite": "suite name; results go to results/<suite> (letters, digits, . _ -)",
    "description": "free text, shown nowhere but kept with the results",
    "tasks": "list of task entries (see TASK_SCHEMA)",
    "optimizers": "list of optimizer names, or {name, fixed, search} mappings",
    "trials": "tuning trials per (task, dataset, optimizer); trial 0 = the optimizer's defaults when they lie in "
    "the search space, else a sampled trial like the others (a note says so); 0 = no tuning. "
    "Changing it on an existing sweep is honoured exactly: raised, the study goes on; lowered to k, "
    "trials 0..k-1 count and the best of them is evaluated (later trials stay on disk, outside "
    "every leaderboard). A space of only choices cannot hold more trials than configurations",
    "eval_seeds": "number of fresh eval seeds (seed+1 .. seed+n) or an explicit list; same for every optimizer. "
    "Lowered on an existing sweep, exactly the listed seeds (the first n) count",
    "seed": "tune seed: the seed of every tuning run and of the sampler (default 0)",
    "size": "default task size for entries that do not set one (tiny | small | paper)",
    "steps": "step budget override for every entry (default: each task's own budget)",
    "sampler": "tpe (default) or qmc, or {name: tpe, n_startup_trials: N}; qmc = a scrambled Sobol sequence "
    "where trial k's configuration depends on k alone, so a sweep interrupted any number of times "
    "runs exactly the configurations of an uninterrupted one",
    "pruner": "off (default) or {name: median, fractions: [0.25, 0.5, 0.75], n_startup_trials: N}",
    "data_dir": "data directory (default $OPTBENCH_DATA_DIR or ~/.cache/optbench)",
    "heartbeat": "{interval: seconds, grace: seconds}: when a silent worker's trial is re-run (default 30/120)",
    "replicates": "independent tuning studies per (task, dataset, optimizer), default 1. Replicate r has its own "
    "sampler seed and tune seed (seed + 1000 r) and evaluates its best configuration on the same "
    "eval seeds; the leaderboard's intervals then include tuning luck. Trials are per replicate",
    "checkpoint_every": "seconds between training checkpoints of a run (default 600; off: none), so a killed "
    "worker's retry resumes instead of restarting",
    **axes.KEYS,
}
TASK_SCHEMA: dict[str, str] = {
    "task": "registered task name",
    "name": "entry name used in study names (default: the task's name); must be unique",
    "datasets": "list of dataset names (default: the size's default dataset)",
    "size": "tiny | small | paper",
    "options": "task options (see `optbench list --task NAME`)",
    "steps": "step budget override for this entry",
    "trials": "overrides the sweep's trials for this entry",
    "eval_seeds": "overrides the sweep's eval_seeds for this entry",
    "hparams": "per-optimizer overrides for this entry: {optimizer: {fixed: {...}, search: {...}}}",
    "transfer_from": "name of an earlier entry: evaluate its best configuration per optimizer here, untuned "
    "(e.g. tune a 130M LLM, evaluate at 360M); implies trials: 0",
    "optimizers": "the sweep optimizers this entry runs (default: all of them), e.g. a baseline only some tasks use",
    "replicates": "overrides the sweep's replicates for this entry",
    **{k: f"{v} (this entry; over the sweep's)" for k, v in axes.KEYS.items()},
}
SAMPLERS = ("tpe", "qmc")
PRUNERS = ("median",)
SIZES = VOCAB_SIZES  # torch-free, so a YAML typo is reported before torch loads
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a folder name and part of study names


def load(path: str | os.PathLike) -> Sweep:
    """Read and validate a sweep file. Raises ``UserError`` naming the file, line and key of the
    first problem (malformed YAML, unknown keys or names, empty lists, negative budgets)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read sweep file {path}: {exc.strerror or exc}") from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<sweep>") -> Sweep:
    """``load`` for a YAML string; ``source`` names it in error messages. Validation (this module)
    and expansion into plans (``harness.sweep.expand``) go entry by entry, in file order."""
    data, lines = _parse_yaml(text, source)
    chk = _Checker(source, lines)
    chk.keys(data, (), SCHEMA, "the sweep", required=("suite", "tasks", "optimizers", "trials", "eval_seeds"))

    suite = data["suite"]
    if not isinstance(suite, str) or not SUITE_NAME.match(suite):
        raise chk.error(
            ("suite",),
            f"'suite' must be a name of 1 to 64 letters, digits, '.', '_' or '-' (it names the "
            f"results folder), got {suite!r}",
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise chk.error(("description",), "'description' must be text")
    seed = chk.integer(data.get("seed", 0), ("seed",), 0, MAX_SEED)
    trials = chk.integer(data["trials"], ("trials",), 0)
    eval_seeds = _eval_seeds(chk, data["eval_seeds"], ("eval_seeds",), seed)
    size = data.get("size")
    if size is not None and size not in SIZES:  # same names as harness.task.SIZES (torch-free here)
        raise chk.error(("size",), f"unknown size {size!r} in 'size'; known: {', '.join(SIZES)}")
    steps = None if data.get("steps") is None else chk.integer(data["steps"], ("steps",), 1)
    data_dir = data.get("data_dir")
    if data_dir is not None and not isinstance(data_dir, str):
        raise chk.error(("data_dir",), f"'data_dir' must be a path, got {data_dir!r}")
    sampler = _sampler_config(chk, data.get("sampler", "tpe"))
    pruner = _pruner_config(chk, data.get("pruner"))
    heartbeat = _heartbeat_config(chk, data.get("heartbeat"))
    replicates = chk.integer(data.get("replicates", 1), ("replicates",), 1)
    checkpoint_every = _checkpoint_every(chk, data.get("checkpoint_every", 600))
    conditions = axes.read(chk, data, ())
    defaults = _Defaults(
        seed=seed,
        trials=trials,
        eval_seeds=eval_seeds,
        size=size,
        steps=steps,
        replicates=replicates,
        conditions=conditions,
    )

    # The registries (and plugins) import torch: only now, so plain typos are reported instantly.
    opt = optimizer_entries.read(chk, data["optimizers"])
    grid = Grid(chk, suite, seed, opt)
    for i, entry in enumerate(chk.name_list(data["tasks"], ("tasks",), "tasks")):
        grid.add(_task_entry(chk, ("tasks", i), entry, defaults, opt, grid.plans))
    return Sweep(
        path=source,
        suite=suite,
        description=description,
        studies=tuple(grid.plans),
        seed=seed,
        sampler=sampler,
        pruner=pruner,
        heartbeat=heartbeat,
        data_dir=data_dir,
        notes=grid.notes(source),
        checkpoint_every=checkpoint_every,
        margins=grid.margins(conditions.margin),
    )


@dataclass(frozen=True)
class _Defaults:
    """The sweep-wide values a task entry falls back on."""

    seed: int
    trials: int
    eval_seeds: tuple[int, ...]
    size: str | None
    steps: int | None
    replicates: int
    conditions: axes.Conditions


def _task_entry(
    chk: _Checker, p: tuple, entry: Any, defaults: _Defaults, opt: Optimizers, earlier: list[StudyPlan]
) -> Entry:
    """Validate task entry ``p`` (``earlier``: the plans of the entries above it, for ``transfer_from``)."""
    from harness import plugins

    if isinstance(entry, str):
        entry = {"task": entry}
    chk.keys(entry, p, TASK_SCHEMA, "a task entry", required=("task",))
    task_name = entry["task"]
    try:
        record = plugins.task(str(task_name))  # the task's TaskSpec: built-in, entry point or import path
    except UserError as exc:
        raise chk.error(p + ("task",) if (p + ("task",)) in chk.lines else p, f"'{_where(p)}': {exc}") from None
    entry_name = entry.get("name", record.name)  # a plugin path (pkg.mod:TASK) names its entry by its record
    if not isinstance(entry_name, str) or not SUITE_NAME.match(entry_name):
        raise chk.error(
            p + ("name",), f"'{_where(p + ('name',))}' must be a name of 1 to 64 letters, digits, '.', '_' or '-'"
        )
    entry_size = entry.get("size", defaults.size)
    if entry_size is None:
        raise chk.error(
            p,
            f"task entry '{_where(p)}' ({task_name}) has no 'size' and the sweep sets no default 'size'; "
            f"known sizes: {', '.join(record.sizes)}",
        )
    if entry_size not in record.sizes:
        raise chk.error(
            p + ("size",) if "size" in entry else ("size",),
            f"unknown size {entry_size!r} for task {task_name}; known: {', '.join(record.sizes)}",
        )
    if "datasets" in entry:
        datasets = chk.name_list(entry["datasets"], p + ("datasets",), "datasets")
    else:
        datasets = [record.default_dataset[entry_size]]
    for j, ds in enumerate(datasets):
        if not _known_dataset(ds, record):
            known = ", ".join(sorted(d.name for d in record.datasets))
            raise chk.error(
                p + ("datasets", j),
                f"unknown dataset {ds!r} for task {task_name} at '{_where(p + ('datasets', j))}'; known: {known}",
            )
        if datasets.index(ds) != j:
            raise chk.error(p + ("datasets", j), f"dataset {ds!r} is listed twice in '{_where(p + ('datasets',))}'")
    options = entry.get("options", {}) or {}
    if not isinstance(options, dict):
        raise chk.error(p + ("options",), f"'{_where(p + ('options',))}' must be a mapping of task options")
    for key, value in options.items():
        if key not in {o.name for o in record.options}:
            known = ", ".join(sorted(o.name for o in record.options)) or "(none)"
            raise chk.error(p + ("options", key), f"unknown option '{key}' for task {task_name}; valid: {known}")
        try:  # the task record's one validator: type, choices, bounds (rules between options: at run time)
            record.option(key).check(value, task_name)
        except UserError as exc:
            raise chk.error(p + ("options", key), f"'{_where(p + ('options', key))}': {exc}") from None
    entry_steps = defaults.steps if entry.get("steps") is None else chk.integer(entry["steps"], p + ("steps",), 1)
    entry_trials = defaults.trials if "trials" not in entry else chk.integer(entry["trials"], p + ("trials",), 0)
    entry_replicates = (
        defaults.replicates if "replicates" not in entry else chk.integer(entry["replicates"], p + ("replicates",), 1)
    )
    entry_optimizers = _entry_optimizers(chk, entry, p, opt.index, opt.branches)
    donor = entry.get("transfer_from")
    source_datasets: list[str] = []
    if donor is not None:
        tp = p + ("transfer_from",)
        names = {plan.entry for plan in earlier}
        if donor not in names:
            raise chk.error(
                tp,
                f"'{_where(tp)}' names {donor!r}, which is not an earlier task entry; "
                f"earlier entries: {', '.join(sorted(names)) or '(none)'}",
            )
        if not any(plan.trials for plan in earlier if plan.entry == donor):
            raise chk.error(tp, f"'{_where(tp)}': entry {donor!r} is not tuned (trials 0); nothing to transfer")
        if entry.get("trials", 0) != 0:
            raise chk.error(p + ("trials",), f"'{_where(p + ('trials',))}' must be 0 (or absent) with transfer_from")
        entry_trials = 0
        source_datasets = sorted({plan.dataset for plan in earlier if plan.entry == donor})
    entry_seeds = (
        defaults.eval_seeds
        if "eval_seeds" not in entry
        else _eval_seeds(chk, entry["eval_seeds"], p + ("eval_seeds",), defaults.seed)
    )
    local = entry.get("hparams", {}) or {}
    if not isinstance(local, dict):
        raise chk.error(p + ("hparams",), f"'{_where(p + ('hparams',))}' must map optimizer names to {{fixed, search}}")
    local_overrides: dict[str, tuple[dict, dict]] = {}
    for opt_name, override in local.items():
        hp = p + ("hparams", opt_name)
        if opt_name not in opt.overrides:
            raise chk.error(
                hp,
                f"'{_where(hp)}' names optimizer {opt_name!r}, which the sweep does not run; "
                f"sweep optimizers: {', '.join(opt.overrides)}",
            )
        chk.keys(override, hp, {k: v for k, v in OPTIMIZER_SCHEMA.items() if k != "name"}, "an hparams override")
        local_overrides[opt_name] = optimizer_entries.read_overrides(chk, opt.specs[opt_name], override, hp)
    conditions = axes.read(chk, entry, p, defaults.conditions)
    axes.check_axis_names(chk, conditions, entry_optimizers, opt.specs, p)
    if isinstance(conditions.margin, dict):
        unknown = sorted(set(conditions.margin) - set(datasets))
        if unknown:
            raise chk.error(
                p + ("margin",),
                f"'{_where(p + ('margin',))}' names dataset(s) {', '.join(unknown)} that "
                f"this entry does not run; its datasets: {', '.join(datasets)}",
            )
    return Entry(
        path=p,
        keys=frozenset(entry),
        name=entry_name,
        task=task_name,
        size=entry_size,
        datasets=tuple(datasets),
        options=dict(options),
        steps=entry_steps,
        trials=entry_trials,
        replicates=entry_replicates,
        optimizers=tuple(entry_optimizers),
        eval_seeds=entry_seeds,
        overrides=local_overrides,
        donor=donor,
        source_datasets=tuple(source_datasets),
        conditions=conditions,
    )


def _checkpoint_every(chk: _Checker, value: Any) -> float | None:
    if value in (None, False, "off"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise chk.error(
            ("checkpoint_every",), f"'checkpoint_every' must be a number of seconds > 0 or off, got {value!r}"
        )
    return float(value)


def _entry_optimizers(
    chk: _Checker, entry: Mapping[str, Any], path: tuple, opt_index: Mapping[str, int], branches: Mapping[str, str]
) -> list[str]:
    """The entry's ``optimizers`` (default: every sweep optimizer), in the sweep's order."""
    if "optimizers" not in entry:
        return list(opt_index)
    where = path + ("optimizers",)
    names = chk.name_list(entry["optimizers"], where, "optimizers")
    for j, name in enumerate(names):
        if name not in opt_index:
            raise chk.error(
                where + (j,),
                f"'{_where(where + (j,))}' names {name!r}, which the sweep does not run; "
                f"sweep optimizers: {', '.join(opt_index)}",
            )
    for name in names:
        if name in branches and branches[name] not in names:
            raise chk.error(
                where, f"'{_where(where)}' runs {name}, which branches from {branches[name]}: list {branches[name]} too"
            )
    return [name for name in opt_index if name in names]


def _known_dataset(name: Any, record: Any) -> bool:
    """``name`` is one of the task record's datasets, or belongs to a parametric family such as
    ``path:<file>`` / ``nli:<split>`` with something after the prefix (the task checks the rest)."""
    found = record.find_dataset(name)
    return found is not None and (found.family is None or len(name) > len(found.family))


def _eval_seeds(chk: _Checker, value: Any, path: tuple, tune_seed: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        n = chk.integer(value, path, 1, MAX_SEED - tune_seed)
        return tuple(tune_seed + 1 + i for i in range(n))
    if not isinstance(value, list) or not value:
        raise chk.error(path, f"'{_where(path)}' must be a count >= 1 or a non-empty list of seeds, got {value!r}")
    seeds = [chk.integer(s, path + (i,), 0, MAX_SEED) for i, s in enumerate(value)]
    if len(set(seeds)) != len(seeds):
        raise chk.error(path, f"'{_where(path)}' repeats a seed: {seeds}")
    if tune_seed in seeds:
        raise chk.error(path, f"'{_where(path)}' contains the tune seed {tune_seed}; eval seeds must be fresh")
    return tuple(seeds)


def _sampler_config(chk: _Checker, value: Any) -> SamplerConfig:
    path = ("sampler",)
    if isinstance(value, str):
        value = {"name": value}
    chk.keys(
        value,
        path,
        {"name": "tpe | qmc", "n_startup_trials": "TPE random trials before modelling"},
        "'sampler'",
        required=("name",),
    )
    if value["name"] not in SAMPLERS:
        raise chk.error(path, f"unknown sampler {value['name']!r} in 'sampler'; known: {', '.join(SAMPLERS)}")
    n = value.get("n_startup_trials")
    if n is not None:
        if value["name"] != "tpe":
            raise chk.error(path + ("n_startup_trials",), "'sampler.n_startup_trials' applies to the tpe sampler only")
        n = chk.integer(n, path + ("n_startup_trials",), 0)
    return SamplerConfig(value["name"], n)


def _pruner_config(chk: _Checker, value: Any) -> PrunerConfig | None:
    path = ("pruner",)
    if value is None or value is False or value == "off":
        return None
    if isinstance(value, str):
        value = {"name": value}
    chk.keys(
        value,
        path,
        {
            "name": "median",
            "fractions": "budget fractions to compare at",
            "n_startup_trials": "finished trials before pruning starts",
        },
        "'pruner'",
        required=("name",),
    )
    if value["name"] not in PRUNERS:
        raise chk.error(path, f"unknown pruner {value['name']!r} in 'pruner'; known: off, {', '.join(PRUNERS)}")
    fractions = value.get("fractions", list(PrunerConfig.fractions))
    fractions = chk.name_list(fractions, path + ("fractions",), "fractions")
    out = []
    for i, f in enumerate(fractions):
        f = chk.number(f, path + ("fractions", i))
        if not 0.0 < f < 1.0:
            raise chk.error(path + ("fractions", i), f"'pruner.fractions[{i}]' must lie in (0, 1), got {f}")
        out.append(f)
    if sorted(set(out)) != out:
        raise chk.error(path + ("fractions",), "'pruner.fractions' must be strictly increasing")
    n = chk.integer(value.get("n_startup_trials", PrunerConfig.n_startup_trials), path + ("n_startup_trials",), 0)
    return PrunerConfig(value["name"], tuple(out), n)


def _heartbeat_config(chk: _Checker, value: Any) -> Heartbeat:
    if value is None:
        return Heartbeat()
    path = ("heartbeat",)
    chk.keys(
        value,
        path,
        {"interval": "seconds between heartbeats", "grace": "seconds of silence before a re-run"},
        "'heartbeat'",
    )
    interval = chk.integer(value.get("interval", Heartbeat.interval), path + ("interval",), 1)
    grace = chk.integer(value.get("grace", max(Heartbeat.grace, 2 * interval)), path + ("grace",), 1)
    if grace <= interval:
        raise chk.error(path + ("grace",), f"'heartbeat.grace' ({grace}) must exceed 'heartbeat.interval' ({interval})")
    return Heartbeat(interval, grace)
