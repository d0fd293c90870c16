"""Optuna sweeps: the tune -> evaluate protocol over a grid of (task, dataset, optimizer).

A sweep file (``sweeps/*.yaml``) is validated completely before anything runs; see ``SCHEMA`` for
its keys. For every (task entry, dataset, optimizer) it defines one **study plan**:

1. **Tune**: one Optuna study ``<suite>/<entry>/<dataset>/<optimizer>`` over the optimizer's search
   space (``optimizers.REGISTRY[name].search_space``, narrowed or extended by the sweep), with the
   optimizer's defaults as trial 0, a seeded sampler (TPE by default, QMC optional), and the same
   trial budget for every optimizer. Every trial is one run (``harness.loop.run``, phase ``tune``,
   seed = the sweep's tune seed); the value told to Optuna is the run's ``objective``: the
   validation metric at the end of the budget, or the task's penalty for a diverged run (told as a
   COMPLETE trial, because Optuna's samplers ignore failed ones).
2. **Evaluate**: the best configuration re-run on the eval seeds (the same list for every
   optimizer, none equal to the tune seed), phase ``eval``, full budget, no pruning.

How work is claimed, so any number of workers on any number of machines make exactly the planned
runs: each planned run is a **slot** -- tune slot ``k`` (k = 0..trials-1), or an eval slot per
(seed, best configuration) -- enqueued once as a WAITING Optuna trial carrying the user attribute ``optbench_slot``. A worker
claims work with ``study.ask()``, which pops a WAITING trial atomically (journal lock / database
transaction). If several workers enqueue the same slot at the same time, or ``ask()`` creates a
fresh trial because the queue emptied under it, the rule "a slot belongs to its lowest-numbered
trial that has not FAILED" makes every extra trial *surplus*: it is told FAIL (user attribute
``optbench_surplus``) without running. The eval phase uses a second study
``<study>/eval`` with one slot per seed, so eval runs are claimed the same way. On top of that,
``harness.loop.run`` skips any run_id that already has a record, so nothing finished is re-run.

Crashes: a trial whose worker dies stays RUNNING. Workers record a heartbeat (RDB storage: Optuna's
own heartbeat table; journal file: a trial system attribute) and the owner's host/pid. A RUNNING
trial whose heartbeat is older than the grace period, or whose owner process is gone on this host,
is failed and re-enqueued with the same parameters (Optuna's ``RetryHeartbeatStaleTrialCallback``).
A slot whose worker died more than ``MAX_RETRY`` times (a run that kills its process every time) is
given up, so the sweep still completes, one record short. Ctrl-C (SIGINT) or SIGTERM release the
current trial the same way (not counted as a death), so re-running the command resumes.

Storage URLs: ``postgresql://...`` (or any SQLAlchemy URL: ``mysql://``, ``sqlite:///``) is an
Optuna ``RDBStorage`` with heartbeats; anything else is the path of an Optuna journal file
(``JournalFileBackend``; optionally written ``journal:PATH``). The default is
``<out>/optuna.journal``: embedded, no server, safe for several processes on one machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError

SLOT = "optbench_slot"          # user attr: which planned run a trial is
SURPLUS = "optbench_surplus"    # user attr: a duplicate claim, told FAIL without running
OWNER = "optbench_owner"        # system attr: host/pid of the worker running the trial
BEAT = "optbench_heartbeat"     # system attr (journal storage): last heartbeat, unix time
CONFIG = "optbench_config"      # study user attr: what the study was created for (resume check)
RELEASED = "optbench_released"  # system attr: trial number given back on Ctrl-C/SIGTERM (not a death)
MAX_RETRY = 3                   # re-runs of one configuration whose workers keep dying
ONE_MINUS = "one_minus_"        # Optuna parameter name prefix for OneMinusLogUniform hparams

# Sweep-file schema: key -> one line of meaning. Unknown keys are errors (typos never pass silently).
SCHEMA: dict[str, str] = {
    "suite": "suite name; results go to results/<suite> (letters, digits, . _ -)",
    "description": "free text, shown nowhere but kept with the results",
    "tasks": "list of task entries (see TASK_SCHEMA)",
    "optimizers": "list of optimizer names, or {name, fixed, search} mappings",
    "trials": "tuning trials per (task, dataset, optimizer); trial 0 = the optimizer's defaults when they lie in "
              "the search space, else a sampled trial like the others (a note says so); 0 = no tuning",
    "eval_seeds": "number of fresh eval seeds (seed+1 .. seed+n) or an explicit list; same for every optimizer",
    "seed": "tune seed: the seed of every tuning run and of the sampler (default 0)",
    "size": "default task size for entries that do not set one (tiny | small | paper)",
    "steps": "step budget override for every entry (default: each task's own budget)",
    "sampler": "tpe (default) or qmc, or {name: tpe, n_startup_trials: N}",
    "pruner": "off (default) or {name: median, fractions: [0.25, 0.5, 0.75], n_startup_trials: N}",
    "data_dir": "data directory (default $OPTBENCH_DATA_DIR or ~/.cache/optbench)",
    "heartbeat": "{interval: seconds, grace: seconds}: when a silent worker's trial is re-run (default 30/120)",
}
TASK_SCHEMA: dict[str, str] = {
    "task": "registered task name",
    "name": "entry name used in study names (default: the task name); must be unique",
    "datasets": "list of dataset names (default: the size's default dataset)",
    "size": "tiny | small | paper",
    "options": "task options (see the task's OPTIONS)",
    "steps": "step budget override for this entry",
    "trials": "overrides the sweep's trials for this entry",
    "eval_seeds": "overrides the sweep's eval_seeds for this entry",
    "hparams": "per-optimizer overrides for this entry: {optimizer: {fixed: {...}, search: {...}}}",
    "transfer_from": "name of an earlier entry: evaluate its best configuration per optimizer here, untuned "
                     "(e.g. tune a 130M LLM, evaluate at 360M); implies trials: 0",
}
OPTIMIZER_SCHEMA: dict[str, str] = {
    "name": "registered optimizer name",
    "fixed": "hyperparameters held fixed (removed from the search space)",
    "search": "hyperparameter -> [low, high] (same kind as the registry's) or {log|uniform|one_minus_log: "
              "[low, high]} or {choices: [...]}; ranges are in the hyperparameter's own units",
}
SAMPLERS = ("tpe", "qmc")
PRUNERS = ("median",)
SIZES = ("tiny", "small", "paper")  # harness.task.SIZES, repeated to keep YAML errors torch-free
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# YAML with line numbers
# ---------------------------------------------------------------------------------------------

def _yaml_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that also reads ``1e-3`` as a float (YAML 1.1 wants ``1.0e-3``)."""

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """Parse ``text`` into plain Python plus ``lines``: path tuple -> 1-based line of that key/item.

    Duplicate mapping keys are errors (PyYAML would silently keep the last one).
    """
    import yaml

    loader = _yaml_loader()(text)
    lines: dict[tuple, int] = {(): 1}
    try:
        node = loader.get_single_node()
        if node is None:
            raise UserError(f"{source}: line 1: the sweep file is empty")

        def build(node, path: tuple) -> Any:
            if isinstance(node, yaml.MappingNode):
                out: dict[str, Any] = {}
                for key_node, value_node in node.value:
                    key = loader.construct_object(key_node, deep=True)
                    line = key_node.start_mark.line + 1
                    if not isinstance(key, str):
                        raise UserError(f"{source}: line {line}: key {key!r} at {_where(path)} must be a string")
                    if key in out:
                        raise UserError(f"{source}: line {line}: duplicate key '{_where(path + (key,))}'")
                    lines[path + (key,)] = line
                    out[key] = build(value_node, path + (key,))
                return out
            if isinstance(node, yaml.SequenceNode):
                items = []
                for i, item in enumerate(node.value):
                    lines[path + (i,)] = item.start_mark.line + 1
                    items.append(build(item, path + (i,)))
                return items
            return loader.construct_object(node, deep=True)

        return build(node, ()), lines
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{source}: line {line}: malformed YAML: {problem}") from None
    finally:
        loader.dispose()


def _where(path: tuple) -> str:
    """``('tasks', 0, 'datasets')`` -> ``tasks[0].datasets``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


class _Checker:
    """Raises ``UserError`` messages that name the file, the line and the key."""

    def __init__(self, source: str, lines: dict[tuple, int]):
        self.source = source
        self.lines = lines

    def line(self, path: tuple) -> int:
        while path and path not in self.lines:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: tuple, message: str) -> UserError:
        return UserError(f"{self.source}: line {self.line(path)}: {message}")

    def keys(self, value: Any, path: tuple, schema: Mapping[str, str], what: str, required=()) -> dict:
        if not isinstance(value, dict):
            raise self.error(path, f"'{_where(path)}' must be a mapping with keys {', '.join(schema)}; "
                                   f"got {type(value).__name__}")
        for key in value:
            if key not in schema:
                raise self.error(path + (key,), f"unknown key '{key}' in {what}; valid: {', '.join(sorted(schema))}")
        for key in required:
            if key not in value:
                raise self.error(path, f"missing key '{key}' in {what} ('{_where(path)}')")
        return value

    def integer(self, value: Any, path: tuple, minimum: int) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise self.error(path, f"'{_where(path)}' must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, path: tuple) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(path, f"'{_where(path)}' must be a finite number, got {value!r}")
        return float(value)

    def name_list(self, value: Any, path: tuple, what: str) -> list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.error(path, f"'{_where(path)}' must be a list of {what}, got {type(value).__name__}")
        if not value:
            raise self.error(path, f"'{_where(path)}' is empty: list at least one {what[:-1]}")
        return value


# ---------------------------------------------------------------------------------------------
# The validated sweep
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SamplerConfig:
    name: str = "tpe"
    n_startup_trials: int | None = None  # TPE only; None = Optuna's default


@dataclass(frozen=True)
class PrunerConfig:
    """Median pruning at matched fractions of the step budget (so every trial of a study is compared
    at the same point of the shared LR schedule). Reported step = round(1000 * fraction)."""

    name: str = "median"
    fractions: tuple[float, ...] = (0.25, 0.5, 0.75)
    n_startup_trials: int = 5


@dataclass(frozen=True)
class Heartbeat:
    interval: int = 30
    grace: int = 120


@dataclass(frozen=True)
class StudyPlan:
    """One (task entry, dataset, optimizer): what is tuned, how many trials, which eval seeds."""

    suite: str
    entry: str              # entry name (default: task name)
    task: str
    dataset: str
    size: str
    optimizer: str
    options: Mapping[str, Any]
    steps: int | None
    trials: int
    eval_seeds: tuple[int, ...]
    seed: int
    space: Mapping[str, Any]   # hparam -> optimizers._base distribution record
    fixed: Mapping[str, Any]
    line: int                  # line of the task entry in the sweep file (for error messages)
    transfer_from: str | None = None  # study whose best configuration this plan evaluates (trials 0)

    @property
    def study(self) -> str:
        return f"{self.suite}/{self.entry}/{self.dataset}/{self.optimizer}"

    @property
    def eval_study(self) -> str:
        return f"{self.study}/eval"

    @property
    def planned_runs(self) -> int:
        return self.trials + len(self.eval_seeds)

    def config(self) -> dict[str, Any]:
        """What must not change between a study's creation and a resume (trial counts may grow)."""
        return {
            "task": self.task, "dataset": self.dataset, "size": self.size, "optimizer": self.optimizer,
            "options": dict(self.options), "steps": self.steps, "seed": self.seed,
            "space": {k: _dist_json(v) for k, v in sorted(self.space.items())},
            "fixed": {k: _jsonable(v) for k, v in sorted(self.fixed.items())},
            "transfer_from": self.transfer_from,
        }


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file. ``studies`` is the full grid, in file order."""

    path: str
    suite: str
    description: str
    studies: tuple[StudyPlan, ...]
    seed: int
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig | None = None
    heartbeat: Heartbeat = field(default_factory=Heartbeat)
    data_dir: str | None = None
    notes: tuple[str, ...] = ()  # things worth knowing that are not errors (printed by the CLI)

    @property
    def planned_runs(self) -> int:
        return sum(p.planned_runs for p in self.studies)


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
    """``load`` for a YAML string; ``source`` names it in error messages."""
    data, lines = _parse_yaml(text, source)
    chk = _Checker(source, lines)
    chk.keys(data, (), SCHEMA, "the sweep", required=("suite", "tasks", "optimizers", "trials", "eval_seeds"))

    suite = data["suite"]
    if not isinstance(suite, str) or not SUITE_NAME.match(suite):
        raise chk.error(("suite",), f"'suite' must be a name of letters, digits, '.', '_' or '-', got {suite!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise chk.error(("description",), "'description' must be text")
    seed = chk.integer(data.get("seed", 0), ("seed",), 0)
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

    # The registries import torch: only now, so plain typos are reported instantly.
    import optimizers
    import tasks

    # Optimizers (sweep-wide overrides).
    opt_list = chk.name_list(data["optimizers"], ("optimizers",), "optimizers")
    opt_overrides: dict[str, tuple[dict, dict]] = {}
    for i, item in enumerate(opt_list):
        p = ("optimizers", i)
        if isinstance(item, str):
            item = {"name": item}
        chk.keys(item, p, OPTIMIZER_SCHEMA, "an optimizer entry", required=("name",))
        name = item["name"]
        if name not in optimizers.REGISTRY:
            raise chk.error(p + ("name",) if (p + ("name",)) in lines else p,
                            f"unknown optimizer {name!r} at '{_where(p)}'; known: {', '.join(sorted(optimizers.REGISTRY))}")
        if name in opt_overrides:
            raise chk.error(p, f"optimizer {name!r} is listed twice in 'optimizers'")
        opt_overrides[name] = _overrides(chk, optimizers.REGISTRY[name], item, p)

    # Task entries.
    entries = chk.name_list(data["tasks"], ("tasks",), "tasks")
    plans: list[StudyPlan] = []
    seen: dict[tuple[str, str], tuple] = {}
    for i, entry in enumerate(entries):
        p = ("tasks", i)
        if isinstance(entry, str):
            entry = {"task": entry}
        chk.keys(entry, p, TASK_SCHEMA, "a task entry", required=("task",))
        task_name = entry["task"]
        if task_name not in tasks.REGISTRY:
            raise chk.error(p + ("task",) if (p + ("task",)) in lines else p,
                            f"unknown task {task_name!r} at '{_where(p)}'; known: {', '.join(sorted(tasks.REGISTRY))}")
        module = tasks.REGISTRY[task_name]
        entry_name = entry.get("name", task_name)
        if not isinstance(entry_name, str) or not SUITE_NAME.match(entry_name):
            raise chk.error(p + ("name",), f"'{_where(p + ('name',))}' must be a name of letters, digits, '.', '_' or '-'")
        entry_size = entry.get("size", size)
        if entry_size is None:
            raise chk.error(p, f"task entry '{_where(p)}' ({task_name}) has no 'size' and the sweep sets no default 'size'; "
                               f"known sizes: {', '.join(module.SIZES)}")
        if entry_size not in module.SIZES:
            raise chk.error(p + ("size",) if "size" in entry else ("size",),
                            f"unknown size {entry_size!r} for task {task_name}; known: {', '.join(module.SIZES)}")
        if "datasets" in entry:
            datasets = chk.name_list(entry["datasets"], p + ("datasets",), "datasets")
        else:
            datasets = [module.DEFAULT_DATASET[entry_size]]
        for j, ds in enumerate(datasets):
            if not _known_dataset(ds, module.DATASETS):
                raise chk.error(p + ("datasets", j), f"unknown dataset {ds!r} for task {task_name} at "
                                                     f"'{_where(p + ('datasets', j))}'; known: {', '.join(sorted(module.DATASETS))}")
            if datasets.index(ds) != j:
                raise chk.error(p + ("datasets", j), f"dataset {ds!r} is listed twice in '{_where(p + ('datasets',))}'")
        options = entry.get("options", {}) or {}
        if not isinstance(options, dict):
            raise chk.error(p + ("options",), f"'{_where(p + ('options',))}' must be a mapping of task options")
        for key in options:
            if key not in module.OPTIONS:
                known = ", ".join(sorted(module.OPTIONS)) or "(none)"
                raise chk.error(p + ("options", key), f"unknown option '{key}' for task {task_name}; valid: {known}")
        entry_steps = steps if entry.get("steps") is None else chk.integer(entry["steps"], p + ("steps",), 1)
        entry_trials = trials if "trials" not in entry else chk.integer(entry["trials"], p + ("trials",), 0)
        donor = entry.get("transfer_from")
        if donor is not None:
            tp = p + ("transfer_from",)
            earlier = {plan.entry: plan for plan in plans}
            if donor not in earlier:
                raise chk.error(tp, f"'{_where(tp)}' names {donor!r}, which is not an earlier task entry; "
                                    f"earlier entries: {', '.join(earlier) or '(none)'}")
            if earlier[donor].trials == 0:
                raise chk.error(tp, f"'{_where(tp)}': entry {donor!r} is not tuned (trials 0); nothing to transfer")
            if entry.get("trials", 0) != 0:
                raise chk.error(p + ("trials",), f"'{_where(p + ('trials',))}' must be 0 (or absent) with transfer_from")
            entry_trials = 0
            source_datasets = sorted({plan.dataset for plan in plans if plan.entry == donor})
        entry_seeds = eval_seeds if "eval_seeds" not in entry else _eval_seeds(chk, entry["eval_seeds"], p + ("eval_seeds",), seed)
        local = entry.get("hparams", {}) or {}
        if not isinstance(local, dict):
            raise chk.error(p + ("hparams",), f"'{_where(p + ('hparams',))}' must map optimizer names to {{fixed, search}}")
        local_overrides: dict[str, tuple[dict, dict]] = {}
        for opt_name, override in local.items():
            hp = p + ("hparams", opt_name)
            if opt_name not in opt_overrides:
                raise chk.error(hp, f"'{_where(hp)}' names optimizer {opt_name!r}, which the sweep does not run; "
                                    f"sweep optimizers: {', '.join(opt_overrides)}")
            chk.keys(override, hp, {k: v for k, v in OPTIMIZER_SCHEMA.items() if k != "name"}, "an hparams override")
            local_overrides[opt_name] = _overrides(chk, optimizers.REGISTRY[opt_name], override, hp)

        for ds in datasets:
            transfer = None
            if donor is not None:
                src_ds = ds if ds in source_datasets else (source_datasets[0] if len(source_datasets) == 1 else None)
                if src_ds is None:
                    raise chk.error(p + ("transfer_from",), f"'{_where(p)}': dataset {ds!r} is not in entry {donor!r} "
                                                            f"({', '.join(source_datasets)}), which has several to pick from")
                transfer = f"{suite}/{donor}/{src_ds}"
            key = (entry_name, ds)
            if key in seen:
                raise chk.error(p, f"task entry '{_where(p)}' repeats {entry_name}/{ds} of '{_where(seen[key])}'; "
                                   "give one of them a different 'name'")
            seen[key] = p
            for opt_name, (fixed, search) in opt_overrides.items():
                lfixed, lsearch = local_overrides.get(opt_name, ({}, {}))
                fixed_all = {**{k: v for k, v in fixed.items() if k not in lsearch}, **lfixed}
                search_all = {**{k: v for k, v in search.items() if k not in lfixed}, **lsearch}
                space = {k: v for k, v in optimizers.REGISTRY[opt_name].search_space.items() if k not in fixed_all}
                space.update(search_all)
                plans.append(StudyPlan(
                    suite=suite, entry=entry_name, task=task_name, dataset=ds, size=entry_size,
                    optimizer=opt_name, options=dict(options), steps=entry_steps, trials=entry_trials,
                    eval_seeds=entry_seeds, seed=seed, space=space, fixed=fixed_all, line=chk.line(p),
                    transfer_from=None if transfer is None else f"{transfer}/{opt_name}",
                ))
    notes: list[str] = []
    for plan in plans:
        outside = defaults_outside(plan.space, optimizers.REGISTRY[plan.optimizer].defaults) if plan.trials else []
        note = (f"{source}: line {plan.line}: {plan.entry} with {plan.optimizer}: the default "
                f"{'; '.join(outside)}, so trial 0 is sampled like the others (not the defaults)")
        if outside and note not in notes:
            notes.append(note)
    return Sweep(path=source, suite=suite, description=description, studies=tuple(plans), seed=seed,
                 sampler=sampler, pruner=pruner, heartbeat=heartbeat, data_dir=data_dir, notes=tuple(notes))


def _known_dataset(name: Any, known: Mapping[str, str]) -> bool:
    """``name`` is listed, or matches a parametric entry such as ``path:<file>`` / ``nli:<split>``."""
    if not isinstance(name, str):
        return False
    if name in known:
        return True
    prefixes = {k.split(":", 1)[0] + ":" for k in known if ":" in k}
    return any(name.startswith(p) and len(name) > len(p) for p in prefixes)


def _eval_seeds(chk: _Checker, value: Any, path: tuple, tune_seed: int) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        n = chk.integer(value, path, 1)
        return tuple(tune_seed + 1 + i for i in range(n))
    if not isinstance(value, list) or not value:
        raise chk.error(path, f"'{_where(path)}' must be a count >= 1 or a non-empty list of seeds, got {value!r}")
    seeds = [chk.integer(s, path + (i,), 0) for i, s in enumerate(value)]
    if len(set(seeds)) != len(seeds):
        raise chk.error(path, f"'{_where(path)}' repeats a seed: {seeds}")
    if tune_seed in seeds:
        raise chk.error(path, f"'{_where(path)}' contains the tune seed {tune_seed}; eval seeds must be fresh")
    return tuple(seeds)


def _sampler_config(chk: _Checker, value: Any) -> SamplerConfig:
    path = ("sampler",)
    if isinstance(value, str):
        value = {"name": value}
    chk.keys(value, path, {"name": "tpe | qmc", "n_startup_trials": "TPE random trials before modelling"},
             "'sampler'", required=("name",))
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
    chk.keys(value, path, {"name": "median", "fractions": "budget fractions to compare at",
                           "n_startup_trials": "finished trials before pruning starts"}, "'pruner'", required=("name",))
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
    chk.keys(value, path, {"interval": "seconds between heartbeats", "grace": "seconds of silence before a re-run"},
             "'heartbeat'")
    interval = chk.integer(value.get("interval", Heartbeat.interval), path + ("interval",), 1)
    grace = chk.integer(value.get("grace", max(Heartbeat.grace, 2 * interval)), path + ("grace",), 1)
    if grace <= interval:
        raise chk.error(path + ("grace",), f"'heartbeat.grace' ({grace}) must exceed 'heartbeat.interval' ({interval})")
    return Heartbeat(interval, grace)


def _overrides(chk: _Checker, spec, item: Mapping, path: tuple) -> tuple[dict, dict]:
    """Validate ``fixed`` and ``search`` of one optimizer override against the registry."""
    from optimizers._base import Categorical, LogUniform, OneMinusLogUniform, Uniform

    fixed = item.get("fixed", {}) or {}
    search = item.get("search", {}) or {}
    for key, what in (("fixed", fixed), ("search", search)):
        if not isinstance(what, dict):
            raise chk.error(path + (key,), f"'{_where(path + (key,))}' must be a mapping of hyperparameters")
        for hp in what:
            if hp not in spec.defaults:
                raise chk.error(path + (key, hp), f"unknown hyperparameter '{hp}' for optimizer '{spec.name}' at "
                                                  f"'{_where(path + (key,))}'; valid: {', '.join(sorted(spec.defaults))}")
    both = sorted(set(fixed) & set(search))
    if both:
        raise chk.error(path + ("search", both[0]), f"hyperparameter '{both[0]}' is both fixed and searched at '{_where(path)}'")
    out_search: dict[str, Any] = {}
    kinds = {"log": LogUniform, "uniform": Uniform, "one_minus_log": OneMinusLogUniform}
    for hp, rng in search.items():
        p = path + ("search", hp)
        base = spec.search_space.get(hp)
        if isinstance(rng, dict):
            if len(rng) != 1 or next(iter(rng)) not in (*kinds, "choices"):
                raise chk.error(p, f"'{_where(p)}' must be one of {{log: [lo, hi]}}, {{uniform: [lo, hi]}}, "
                                   "{one_minus_log: [lo, hi]}, {choices: [...]}")
            kind, rng = next(iter(rng.items()))
            p = p + (kind,)
        elif isinstance(base, Categorical):
            kind = "choices"
        elif isinstance(base, (LogUniform, Uniform, OneMinusLogUniform)):
            kind = {LogUniform: "log", Uniform: "uniform", OneMinusLogUniform: "one_minus_log"}[type(base)]
        else:
            raise chk.error(p, f"'{hp}' is not in optimizer '{spec.name}''s search space "
                               f"({', '.join(sorted(spec.search_space)) or 'empty'}); give its kind, e.g. {{log: [lo, hi]}}")
        if kind == "choices":
            if not isinstance(rng, list) or not rng:
                raise chk.error(p, f"'{_where(p)}' must be a non-empty list of choices, got {rng!r}")
            out_search[hp] = Categorical(tuple(tuple(c) if isinstance(c, list) else c for c in rng))
            continue
        if not isinstance(rng, list) or len(rng) != 2:
            raise chk.error(p, f"'{_where(p)}' must be a range [low, high], got {rng!r}")
        low, high = (chk.number(v, p + (k,)) for k, v in enumerate(rng))
        if not low < high:
            raise chk.error(p, f"'{_where(p)}' needs low < high, got [{low}, {high}]")
        if kind == "log" and low <= 0:
            raise chk.error(p, f"'{_where(p)}' is log-uniform: bounds must be > 0, got [{low}, {high}]")
        if kind == "one_minus_log":
            # The user writes the value's own range (momentum [0.9, 0.999]); the record holds 1 - x.
            if not high < 1:
                raise chk.error(p, f"'{_where(p)}' samples 1 - x log-uniformly: bounds must be < 1, got [{low}, {high}]")
            out_search[hp] = OneMinusLogUniform(1.0 - high, 1.0 - low)
        else:
            out_search[hp] = kinds[kind](low, high)
    return dict(fixed), out_search


# ---------------------------------------------------------------------------------------------
# Search space <-> Optuna
# ---------------------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _dist_json(dist: Any) -> dict[str, Any]:
    d = {"kind": type(dist).__name__}
    d.update({k: _jsonable(v) for k, v in vars(dist).items()})
    return d


def _choice_key(value: Any) -> Any:
    """Optuna categorical choices must be None/bool/int/float/str: encode anything else as JSON."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(_jsonable(value))


def _is_int(dist: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in (dist.low, dist.high))


def suggest(trial: Any, space: Mapping[str, Any]) -> dict[str, Any]:
    """Ask ``trial`` for one value per hyperparameter of ``space`` (optimizers._base records).

    LogUniform -> ``suggest_float(log=True)``; OneMinusLogUniform -> ``1 - x`` suggested
    log-uniformly under the name ``one_minus_<hp>``; Uniform -> ``suggest_float``; Categorical ->
    ``suggest_categorical``. Integer bounds give ``suggest_int``.
    """
    from optimizers._base import Categorical, LogUniform, OneMinusLogUniform, Uniform

    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, OneMinusLogUniform):
            out[name] = 1.0 - trial.suggest_float(ONE_MINUS + name, dist.low, dist.high, log=True)
        elif isinstance(dist, (LogUniform, Uniform)):
            log = isinstance(dist, LogUniform)
            if _is_int(dist):
                out[name] = trial.suggest_int(name, dist.low, dist.high, log=log)
            else:
                out[name] = trial.suggest_float(name, dist.low, dist.high, log=log)
        elif isinstance(dist, Categorical):
            keys = [_choice_key(c) for c in dist.choices]
            picked = trial.suggest_categorical(name, keys)
            out[name] = dist.choices[keys.index(picked)]
        else:
            raise TypeError(f"unknown search-space record {dist!r} for {name}")
    return out


def defaults_outside(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """The searched hyperparameters whose optimizer default lies outside ``space``, each as
    ``"lr=0.001 not in [1e-09, 2e-09]"`` (empty when trial 0 can run the defaults)."""
    from optimizers._base import Categorical, OneMinusLogUniform

    out = []
    for name, dist in space.items():
        value = defaults[name]
        if dist.contains(value):
            continue
        if isinstance(dist, Categorical):
            where = f"choices {list(dist.choices)}"
        elif isinstance(dist, OneMinusLogUniform):
            where = f"[{1.0 - dist.high:g}, {1.0 - dist.low:g}]"
        else:
            where = f"[{dist.low:g}, {dist.high:g}]"
        out.append(f"{name}={value!r} not in {where}")
    return out


def default_params(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any] | None:
    """Optuna parameters of trial 0: the optimizer's defaults, or None when a default lies outside a
    narrowed ``space`` (``defaults_outside``). Trial 0 is then sampled like every other trial: a
    sweep never runs a configuration outside the space its file declares, and every optimizer
    still gets the same number of trials."""
    if defaults_outside(space, defaults):
        return None
    return projected_defaults(space, defaults)


def projected_defaults(space: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults projected into ``space`` (nearest bound; a categorical without the default, its
    first choice): a valid point of the space, used to validate a plan before anything runs."""
    from optimizers._base import Categorical, OneMinusLogUniform

    params: dict[str, Any] = {}
    for name, dist in space.items():
        value = defaults[name]
        if isinstance(dist, Categorical):
            keys = [_choice_key(c) for c in dist.choices]
            key = _choice_key(value)
            params[name] = key if key in keys else keys[0]
        elif isinstance(dist, OneMinusLogUniform):
            params[ONE_MINUS + name] = min(max(1.0 - float(value), dist.low), dist.high)
        else:
            clipped = min(max(value, dist.low), dist.high)
            params[name] = int(clipped) if _is_int(dist) else float(clipped)
    return params


def hparams_from_params(params: Mapping[str, Any], space: Mapping[str, Any], fixed: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters a finished trial ran with: its Optuna ``params`` decoded + ``fixed``."""
    from optimizers._base import Categorical, OneMinusLogUniform

    out = dict(fixed)
    for name, dist in space.items():
        if isinstance(dist, OneMinusLogUniform):
            out[name] = 1.0 - params[ONE_MINUS + name]
        elif isinstance(dist, Categorical):
            keys = [_choice_key(c) for c in dist.choices]
            out[name] = dist.choices[keys.index(params[name])]
        else:
            out[name] = params[name]
    return out


def default_hparams(plan: StudyPlan) -> dict[str, Any]:
    """Hyperparameters of an untuned plan (the fixed values over the defaults), and the point every
    tuned plan is validated with before it runs: its defaults projected into the space, plus fixed
    values. (Trial 0 runs exactly the defaults only when they lie in the space: ``default_params``.)"""
    import optimizers

    spec = optimizers.REGISTRY[plan.optimizer]
    if plan.trials == 0:
        return dict(plan.fixed)
    return hparams_from_params(projected_defaults(plan.space, spec.defaults), plan.space, plan.fixed)


# ---------------------------------------------------------------------------------------------
# Storage
# ---------------------------------------------------------------------------------------------

_RDB_SCHEMES = ("postgresql", "postgres", "mysql", "sqlite", "oracle", "mssql")


def default_storage_url(out: str | os.PathLike) -> str:
    """The embedded default: an Optuna journal file in the results folder."""
    return str(Path(out).resolve() / "optuna.journal")


def is_rdb_url(url: str) -> bool:
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    return scheme in _RDB_SCHEMES


def open_storage(url: str, heartbeat: Heartbeat = Heartbeat()):
    """Open ``url`` as an Optuna storage (see the module docstring for the accepted forms).

    RDB storages get Optuna's heartbeat (``heartbeat_interval``, ``grace_period``) and
    ``RetryHeartbeatStaleTrialCallback`` so a trial of a dead worker is re-queued with its
    parameters. Journal files get the equivalent from this module (``Worker.reap``), because
    Optuna's journal storage has no heartbeat.
    """
    import optuna

    _quiet_optuna()
    if is_rdb_url(url):
        retry = _retry_callback()
        kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat.interval, "grace_period": heartbeat.grace}
        import inspect

        if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters:
            kwargs["heartbeat_stale_trial_callback"] = retry
        else:  # Optuna < 4.9
            kwargs["failed_trial_callback"] = retry
        try:
            return optuna.storages.RDBStorage(_sqlalchemy_url(url), engine_kwargs={"pool_pre_ping": True}, **kwargs)
        except ImportError as exc:
            raise UserError(f"storage {redact_url(url)} needs a database driver: {exc}; "
                            f"{_driver_hint(url)}") from None
        except Exception as exc:  # sqlalchemy.exc.OperationalError and friends: unreachable server
            raise UserError(f"cannot open storage {redact_url(url)}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    path = Path(url[len("journal:"):] if url.startswith("journal:") else url.removeprefix("file://")).expanduser()
    if path.is_dir():
        raise UserError(f"storage {path} is a folder; give a journal file path (e.g. {path / 'optuna.journal'}) "
                        "or a postgresql:// URL")
    if not path.parent.is_dir():
        raise UserError(f"storage {path}: folder {path.parent} does not exist")
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def _driver_hint(url: str) -> str:
    """What to install for the database a URL names (the driver SQLAlchemy looks for)."""
    scheme = url.split("://", 1)[0].lower()
    if scheme.startswith(("postgres", "postgresql")):
        return "install the PostgreSQL driver with `pip install 'optbench[postgres]'` (psycopg2-binary)"
    if scheme.startswith("mysql"):
        return "install a MySQL driver (e.g. `pip install pymysql` and use mysql+pymysql://...)"
    return f"install the SQLAlchemy driver for {scheme!r}"


def _sqlalchemy_url(url: str) -> str:
    """``postgres://`` (libpq style) -> ``postgresql://``; and a bare ``postgresql://`` names the
    driver that is installed: SQLAlchemy >= 2.1 defaults to psycopg 3, optbench[postgres] installs
    psycopg2."""
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql"
        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            scheme = "postgresql+psycopg2"
    return scheme + sep + rest


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def _retry_callback():
    """Optuna's retry-a-stale-trial callback (renamed in Optuna 4.9), capped at MAX_RETRY."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(max_retry=MAX_RETRY)


def _quiet_optuna() -> None:
    """Optuna logs every trial at INFO and flags heartbeats as experimental: our progress lines
    say what happened, so keep its output to real warnings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*failed_trial_callback.*", category=FutureWarning)
    # ask() warns that heartbeats belong to optimize(): Worker records them itself (_start_heartbeat).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def _stable_seed(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:4], "little")


# ---------------------------------------------------------------------------------------------
# Preflight: resolve every plan before anything is written
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TaskInfo:
    metric: str
    direction: str  # max | min
    penalty: float


def preflight(sweep: Sweep) -> dict[str, TaskInfo]:
    """Resolve every (entry, dataset, optimizer) through ``harness.loop.resolve`` with its trial-0
    hyperparameters, so bad option values, bad fixed hyperparameters and missing data files fail
    now, with the entry's line, before any study or run is written. Returns study -> TaskInfo."""
    info: dict[str, TaskInfo] = {}
    for plan in sweep.studies:
        info[plan.study] = _resolve_plan(sweep, plan)
    return info


def _resolve_plan(sweep: Sweep, plan: StudyPlan, hparams: Mapping[str, Any] | None = None,
                  seed: int | None = None, phase: str = "tune", trial: int | None = 0):
    spec, task = _resolve(sweep, plan, default_hparams(plan) if hparams is None else hparams,
                          plan.seed if seed is None else seed, phase, trial)
    return TaskInfo(task.metric.name, task.metric.direction, float(task.penalty))


def _resolve(sweep: Sweep, plan: StudyPlan, hparams: Mapping[str, Any], seed: int, phase: str, trial: int | None):
    from harness.loop import resolve

    try:
        return resolve(task=plan.task, optimizer=plan.optimizer, dataset=plan.dataset, size=plan.size,
                       hparams=dict(hparams), task_options=dict(plan.options), seed=seed, steps=plan.steps,
                       phase=phase, suite=plan.suite, study=plan.study, trial=trial, data_dir=sweep.data_dir)
    except (UserError, ValueError, KeyError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise UserError(f"{sweep.path}: line {plan.line}: {plan.entry}/{plan.dataset} with {plan.optimizer}: {msg}") from None


# ---------------------------------------------------------------------------------------------
# Worker: claims slots and runs them until the sweep is complete
# ---------------------------------------------------------------------------------------------

def _machine() -> tuple[str, str]:
    """(hostname, boot id): identifies the kernel whose process table we can check."""
    boot = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    return socket.gethostname(), boot


def _process_start(pid: int) -> str | None:
    """Start time of ``pid`` (Linux), to tell a reused pid from the original process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie / dead: the process has exited
        return "exited"
    return fields[19]


def _pid_dead(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    now = _process_start(pid)
    return now == "exited" or (start is not None and now is not None and now != start)


@dataclass
class Event:
    """One progress event: a run finished (``kind='run'``) or the worker stopped (``kind='done'``)."""

    kind: str
    worker: int
    done: int
    total: int
    study: str = ""
    phase: str = ""
    slot: Any = None
    trial: int | None = None
    status: str = ""
    value: float | None = None
    best: float | None = None
    metric: str = ""
    seconds: float = 0.0
    skipped: bool = False
    slots_done: int = 0
    slots_total: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


class Worker:
    """Claims and runs planned runs of ``sweep`` until every study is tuned and evaluated.

    Safe to run in any number of processes on any number of machines against one storage; see the
    module docstring for how claims, crashes and resumes work. ``on_event`` receives an ``Event``
    after every run.
    """

    def __init__(self, sweep: Sweep, storage_url: str, out: str | os.PathLike, *, worker_id: int = 0,
                 on_event: Callable[[Event], None] | None = None, poll_seconds: float = 1.0,
                 info: Mapping[str, TaskInfo] | None = None):
        self.sweep = sweep
        self.storage_url = storage_url
        self.out = Path(out)
        self.worker_id = worker_id
        self.on_event = on_event
        self.poll_seconds = poll_seconds
        self.storage = open_storage(storage_url, sweep.heartbeat)
        import optuna

        self.rdb = isinstance(self.storage, optuna.storages.RDBStorage)
        self._info: dict[str, TaskInfo] = dict(info or {})
        self._studies: dict[str, Any] = {}
        self._plans = {plan.study: plan for plan in sweep.studies}
        self._machine = _machine()
        self._retry = _retry_callback()
        self.runs = 0

    # -- studies -------------------------------------------------------------------------------

    def info(self, plan: StudyPlan) -> TaskInfo:
        if plan.study not in self._info:
            self._info[plan.study] = _resolve_plan(self.sweep, plan)
        return self._info[plan.study]

    def study(self, plan: StudyPlan, phase: str):
        """The tune or eval study of ``plan`` (created on first use, checked against the plan)."""
        import optuna

        name = plan.study if phase == "tune" else plan.eval_study
        if name in self._studies:
            return self._studies[name]
        direction = "maximize" if self.info(plan).direction == "max" else "minimize"
        pruner = optuna.pruners.NopPruner()
        if phase == "tune" and self.sweep.pruner is not None:
            pruner = optuna.pruners.MedianPruner(n_startup_trials=self.sweep.pruner.n_startup_trials, n_warmup_steps=0)
        study = optuna.create_study(study_name=name, storage=self.storage, direction=direction,
                                    sampler=self._sampler(plan, None), pruner=pruner, load_if_exists=True)
        config = plan.config()
        stored = study.user_attrs.get(CONFIG)
        if stored is None:
            study.set_user_attr(CONFIG, config)
        elif stored != json.loads(json.dumps(config)):
            changed = sorted(k for k in set(config) | set(stored)
                             if json.dumps(config.get(k), sort_keys=True) != json.dumps(stored.get(k), sort_keys=True))
            raise UserError(f"study {name} in {redact_url(self.storage_url)} was created with a different "
                            f"{', '.join(changed)}; resume with the original sweep file, or start afresh with "
                            "another --out/--storage or suite name")
        self._studies[name] = study
        return study

    def _sampler(self, plan: StudyPlan, trial_number: int | None):
        """TPE is re-seeded per trial from (tune seed, study, trial number): a single-worker sweep is
        reproducible and concurrent workers never draw the same random configuration. QMC keeps one
        seed per study, as its sequence position is shared through the storage."""
        import optuna

        cfg = self.sweep.sampler
        if cfg.name == "qmc":
            return optuna.samplers.QMCSampler(seed=_stable_seed(plan.seed, plan.study), scramble=True,
                                              warn_independent_sampling=False, warn_asynchronous_seeding=False)
        kwargs: dict[str, Any] = {"constant_liar": True}
        if cfg.n_startup_trials is not None:
            kwargs["n_startup_trials"] = cfg.n_startup_trials
        return optuna.samplers.TPESampler(seed=_stable_seed(plan.seed, plan.study, trial_number), **kwargs)

    # -- slots ---------------------------------------------------------------------------------

    def _ensure_slots(self, study, slots: Mapping[Any, tuple[dict, dict]]) -> None:
        """Enqueue every slot that has no live trial (WAITING, RUNNING or finished) and was not
        given up."""
        from optuna.trial import TrialState

        live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
        trials = study.get_trials(deepcopy=False)
        have = {t.user_attrs.get(SLOT) for t in trials if t.state in live}
        settled = self._finished(trials, slots)
        for slot, (params, attrs) in slots.items():
            if slot not in have and slot not in settled:
                study.enqueue_trial(params, user_attrs={SLOT: slot, **attrs})

    @staticmethod
    def _finished(trials, slots) -> dict:
        """slot -> its finished (COMPLETE/PRUNED) trial, for the wanted slots; a slot whose workers
        died more than MAX_RETRY times (a run that kills its process every time) is given up and
        maps to None, so the sweep can still complete (without that run)."""
        from optuna.trial import TrialState

        wanted = set(slots)
        out: dict[Any, Any] = {}
        deaths: dict[Any, int] = {}
        for t in trials:
            slot = t.user_attrs.get(SLOT)
            if slot not in wanted:
                continue
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and out.get(slot) is None:
                out[slot] = t
            elif t.state == TrialState.FAIL and not t.user_attrs.get(SURPLUS) and t.system_attrs.get(RELEASED) != t.number:
                deaths[slot] = deaths.get(slot, 0) + 1
                if deaths[slot] > MAX_RETRY and slot not in out:
                    out[slot] = None
        return out

    @staticmethod
    def _is_owner(trials, number: int, slot, wanted) -> bool:
        """A slot belongs to its lowest-numbered trial that has not FAILED."""
        from optuna.trial import TrialState

        if slot is None or slot not in wanted:
            return False
        return not any(t.user_attrs.get(SLOT) == slot and t.number < number and t.state != TrialState.FAIL
                       for t in trials)

    # -- crash recovery ------------------------------------------------------------------------

    def reap(self, study) -> int:
        """Fail and re-queue RUNNING trials whose worker is gone. Returns how many were re-queued."""
        import optuna
        from optuna.trial import TrialState

        before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        if self.rdb:
            optuna.storages.fail_stale_trials(study)  # Optuna's heartbeat check + retry callback
        now = time.time()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(OWNER)
            mine = isinstance(owner, dict) and owner.get("number") == t.number  # retries copy attrs
            dead = mine and (owner.get("host"), owner.get("boot")) == self._machine and _pid_dead(owner["pid"], owner.get("start"))
            stale = False
            if not self.rdb:
                beat = t.system_attrs.get(BEAT)
                last = t.datetime_start.timestamp() if t.datetime_start else now
                if isinstance(beat, dict) and beat.get("number") == t.number:
                    last = max(last, float(beat["time"]))
                stale = now - last > self.sweep.heartbeat.grace
            if dead or stale:
                self._release(study, t._trial_id)
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before

    def _release(self, study, trial_id: int) -> None:
        """FAIL a trial nobody will finish and queue a copy with the same parameters."""
        import optuna
        from optuna.trial import TrialState

        try:
            changed = self.storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # someone else finished or failed it first
        if changed:
            self._retry(study, self.storage.get_trial(trial_id))

    def _start_heartbeat(self, trial) -> tuple[threading.Event, threading.Thread]:
        """Mark the trial as ours and keep it alive until the returned event is set."""
        trial_id = trial._trial_id  # ask/tell gives no public id; the storage API needs it
        host, boot = self._machine
        self.storage.set_trial_system_attr(trial_id, OWNER, {
            "number": trial.number, "host": host, "boot": boot, "pid": os.getpid(),
            "start": _process_start(os.getpid()), "worker": self.worker_id})
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    if self.rdb:
                        self.storage.record_heartbeat(trial_id)
                    else:
                        self.storage.set_trial_system_attr(trial_id, BEAT, {"number": trial.number, "time": time.time()})
                except Exception:
                    return  # trial finished under us or storage gone: the main thread will find out
                if stop.wait(self.sweep.heartbeat.interval):
                    return

        thread = threading.Thread(target=beat, name=f"optbench-heartbeat-{trial.number}", daemon=True)
        thread.start()
        return stop, thread

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Work until every study is complete. Returns the number of runs this worker made."""
        plans = list(self.sweep.studies)
        if plans:  # workers start on different studies: less contention, better-informed TPE
            k = self.worker_id % len(plans)
            plans = plans[k:] + plans[:k]
        for plan in plans:  # on resume, re-queue trials of workers that died, before waiting on them
            for phase in ("tune", "eval"):
                if phase == "tune" and plan.trials == 0:
                    continue
                self.reap(self.study(plan, phase))
        while True:
            states = []
            for plan in plans:
                state = self._advance(plan)
                states.append(state)
                if state == "worked":
                    break
            if all(s == "done" for s in states) and len(states) == len(plans):
                self._emit(Event("done", self.worker_id, *self.progress()))
                return self.runs
            if "worked" not in states:
                time.sleep(self.poll_seconds)

    def progress(self) -> tuple[int, int]:
        """(finished planned runs, planned runs) over the whole sweep, as the storage says."""
        done = 0
        for plan in self.sweep.studies:
            if plan.trials:
                done += len(self._finished(self.study(plan, "tune").get_trials(deepcopy=False), range(plan.trials)))
            slots = self.eval_slots(plan)
            if slots is not None:
                done += len(self._finished(self.study(plan, "eval").get_trials(deepcopy=False), slots))
        return done, self.sweep.planned_runs

    def tune_slots(self, plan: StudyPlan) -> dict[int, tuple[dict, dict]]:
        """Tune slots 0..trials-1; slot 0 carries the optimizer's defaults as fixed parameters, unless
        one of them lies outside the plan's space (then slot 0 is sampled too; see ``default_params``)."""
        import optimizers

        defaults = default_params(plan.space, optimizers.REGISTRY[plan.optimizer].defaults) or {}
        return {k: ((defaults if k == 0 else {}), {}) for k in range(plan.trials)}

    def eval_slots(self, plan: StudyPlan) -> dict[str, tuple[dict, dict]] | None:
        """Eval slots, one per seed, keyed by seed and configuration: if the best configuration
        changes (the trial budget was raised after an evaluation), its eval runs are new slots.
        None while the plan is still being tuned."""
        from optuna.trial import TrialState

        tuned = plan if plan.transfer_from is None else self._plans[plan.transfer_from]
        if tuned.trials > 0:
            study = self.study(tuned, "tune")
            if len(self._finished(study.get_trials(deepcopy=False), range(tuned.trials))) < tuned.trials:
                return None
            if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                warnings.warn(f"study {tuned.study} has no complete trial (all pruned or given up): "
                              f"nothing to evaluate for {plan.study}", stacklevel=2)
                return {}
            best = study.best_trial
            hparams, best_number = hparams_from_params(best.params, tuned.space, tuned.fixed), best.number
            if tuned is not plan:
                hparams.update(plan.fixed)  # the target entry's own fixed values win
        else:
            hparams, best_number = default_hparams(plan), None
        text = json.dumps(_jsonable(hparams), sort_keys=True)
        config = hashlib.sha256(text.encode()).hexdigest()[:10]
        return {f"seed={s} config={config}": ({}, {"seed": s, "hparams": text, "best_trial": best_number})
                for s in plan.eval_seeds}

    def _advance(self, plan: StudyPlan) -> str:
        """Do one run of ``plan`` if one is free: 'worked', 'blocked' (others hold it) or 'done'."""
        if plan.trials > 0:
            tune = self.study(plan, "tune")
            slots = self.tune_slots(plan)
            self._ensure_slots(tune, slots)
            if len(self._finished(tune.get_trials(deepcopy=False), slots)) < plan.trials:
                return self._claim(plan, tune, "tune", slots)
            self._discard_waiting(tune)
        ev = self.study(plan, "eval")
        slots = self.eval_slots(plan)
        if slots is None:  # transferred from an entry that is still being tuned
            return "blocked"
        self._ensure_slots(ev, slots)
        if len(self._finished(ev.get_trials(deepcopy=False), slots)) < len(slots):
            return self._claim(plan, ev, "eval", slots)
        self._discard_waiting(ev)
        return "done"

    def _discard_waiting(self, study) -> None:
        """Every slot is finished: a trial still WAITING is a duplicate enqueued in a race. Claim
        it the way ask() does (WAITING -> RUNNING is atomic) and tell it FAIL as surplus."""
        import optuna
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            try:
                if self.storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                    self.storage.set_trial_user_attr(t._trial_id, SURPLUS, True)
                    self.storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass

    def _claim(self, plan: StudyPlan, study, phase: str, slots: Mapping) -> str:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if not self.reap(study):
                return "blocked"
        trial = study.ask()  # pops the lowest WAITING trial atomically (or makes a fresh one: surplus)
        slot = trial.user_attrs.get(SLOT)
        if not self._is_owner(study.get_trials(deepcopy=False), trial.number, slot, slots):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return "worked"
        stop, beat = self._start_heartbeat(trial)
        try:
            event = self._run_trial(plan, study, phase, trial, slot)
        except BaseException:
            stop.set()
            beat.join()
            # Interrupted or crashed: give the slot back with the same parameters, then re-raise.
            try:
                self.storage.set_trial_system_attr(trial._trial_id, RELEASED, trial.number)
                self._release(study, trial._trial_id)
            except Exception:
                pass  # storage unreachable: the heartbeat grace period will re-queue it
            raise
        stop.set()
        beat.join()
        self._emit(event)
        return "worked"

    def _run_trial(self, plan: StudyPlan, study, phase: str, trial, slot) -> Event:
        import optuna
        from optuna.trial import TrialState

        from harness import loop

        info = self.info(plan)
        if phase == "tune":
            if self.sweep.sampler.name == "tpe":
                study.sampler = self._sampler(plan, trial.number)
            hparams = {**plan.fixed, **suggest(trial, plan.space)}
            spec, task = _resolve(self.sweep, plan, hparams, plan.seed, "tune", trial.number)
        else:
            hparams = json.loads(trial.user_attrs["hparams"])
            spec, task = _resolve(self.sweep, plan, hparams, int(trial.user_attrs["seed"]), "eval",
                                  trial.user_attrs.get("best_trial"))
        pruned = False
        kwargs: dict[str, Any] = {"out_dir": str(self.out), "data_dir": self.sweep.data_dir, "task": task,
                                  "progress": False}
        if phase == "tune" and self.sweep.pruner is not None:
            fractions = list(self.sweep.pruner.fractions)
            steps = spec.steps or task.steps

            def on_eval(step: int, metrics: Mapping[str, float]) -> bool:
                # Report only at the configured budget fractions: every trial of the study is then
                # compared at the same point of the shared LR schedule.
                nonlocal pruned
                while fractions and step >= fractions[0] * steps:
                    value = float(metrics.get(info.metric, math.nan))
                    trial.report(value if math.isfinite(value) else info.penalty, round(1000 * fractions.pop(0)))
                    if trial.should_prune():
                        pruned = True
                        return True
                return False

            kwargs["on_eval"] = on_eval
        started = time.perf_counter()
        result = loop.run(spec, **kwargs)
        seconds = time.perf_counter() - started
        row = result.row
        status = str(row.get("status", ""))
        value = _finite(row.get("objective") if phase == "tune" else row.get("test_metric"))
        if value is None:  # diverged/failed: the penalty, told as COMPLETE so samplers learn from it
            value = info.penalty
        for key, val in (("run_id", row.get("run_id")), ("status", status), ("val_metric", _finite(row.get("val_metric"))),
                         ("test_metric", _finite(row.get("test_metric")))):
            trial.set_user_attr(key, val)
        try:
            if pruned or status == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Declared stale while we ran (e.g. a long stall); its re-queued copy will find our record.
            pass
        self.runs += 1
        done, total = self.progress()
        trials = study.get_trials(deepcopy=False)
        best = None
        if phase == "tune":
            values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
            if values:
                best = max(values) if info.direction == "max" else min(values)
        return Event("run", self.worker_id, done, total, study=plan.study, phase=phase, slot=slot,
                     trial=trial.number, status=status or ("pruned" if pruned else ""), value=value, best=best,
                     metric=info.metric, seconds=seconds, skipped=bool(result.skipped),
                     slots_done=len(self._finished(trials, range(plan.trials) if phase == "tune" else self.eval_slots(plan))),
                     slots_total=plan.trials if phase == "tune" else len(plan.eval_seeds))

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Driving N local workers
# ---------------------------------------------------------------------------------------------

def prepare(sweep: Sweep, out: str | os.PathLike, storage_url: str | None) -> tuple[str, dict[str, TaskInfo]]:
    """Everything that can fail on bad input, before anything is written; then create the results
    folder, copy the sweep file there (provenance) and create/check every study. Returns the
    storage URL and the per-study task info."""
    info = preflight(sweep)
    out = Path(out)
    url = storage_url or default_storage_url(out)
    if is_rdb_url(url):
        open_storage(url, sweep.heartbeat)  # unreachable server: fail before writing anything
    out.mkdir(parents=True, exist_ok=True)
    if Path(sweep.path).is_file():
        _atomic_write_text(out / "sweep.yaml", Path(sweep.path).read_text())
    worker = Worker(sweep, url, out, info=info)
    for plan in sweep.studies:
        worker.study(plan, "tune" if plan.trials else "eval")
    return url, info


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def worker_command(sweep_path: str, storage_url: str, out: str, worker_id: int) -> list[str]:
    """The command line of one local helper worker (``optbench worker``, JSON progress on stdout;
    the parent already ran the preflight checks)."""
    import sys

    return [sys.executable, "-m", "harness.cli", "worker", str(Path(sweep_path).resolve()), "--storage", storage_url,
            "--out", str(Path(out).resolve()), "--progress", "json", "--worker-id", str(worker_id), "--no-preflight"]


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_env(worker_id: int, workers: int) -> dict[str, str]:
    """Environment of a local worker: CPU threads split between workers (unless the user set them),
    and one GPU each when there are several and CUDA_VISIBLE_DEVICES is unset."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads_per_worker(workers)))
    if "CUDA_VISIBLE_DEVICES" not in env:
        try:
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:
            n = 0
        if n > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(worker_id % n)
    return env


def run_local_workers(sweep: Sweep, storage_url: str, out: str | os.PathLike, workers: int,
                      on_event: Callable[[Event], None], *, info: Mapping[str, TaskInfo] | None = None,
                      on_line: Callable[[int, str], None] | None = None) -> int:
    """Run ``workers`` workers on this machine: worker 0 in this process (it has everything
    imported already) and ``workers - 1`` ``optbench worker`` subprocesses whose JSON events are
    relayed to ``on_event``.

    Returns 0 when every worker finished cleanly, else the first non-zero exit code. On Ctrl-C or an
    error in worker 0, the subprocesses get SIGINT (each releases its trial), then it re-raises.
    """
    import signal
    import subprocess

    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            on_event(event)

    def pump(i: int, stream) -> None:
        with stream:
            relay(i, stream)

    def relay(i: int, stream) -> None:
        for line in stream:
            line = line.rstrip("\n")
            try:
                event = Event(**json.loads(line))
            except (ValueError, TypeError):
                if on_line is not None:
                    with lock:
                        on_line(i, line)
                continue
            emit(event)

    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for i in range(1, workers):
            proc = subprocess.Popen(worker_command(sweep.path, storage_url, str(out), i), env=worker_env(i, workers),
                                    stdout=subprocess.PIPE, text=True, bufsize=1)
            procs.append(proc)
            pumps.append(threading.Thread(target=pump, args=(i, proc.stdout), daemon=True))
            pumps[-1].start()
        if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(threads_per_worker(workers))
        Worker(sweep, storage_url, out, worker_id=0, on_event=emit, info=info).run()
        codes = [p.wait() for p in procs]
        for t in pumps:
            t.join()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in pumps:
            t.join(timeout=5)
        raise
    return next((c for c in codes if c != 0), 0)


def summarize(out: str | os.PathLike, sweep: Sweep) -> dict[str, int]:
    """Counts of this suite's records in ``out``: runs, tune, eval, diverged, failed."""
    from harness.records import read_runs

    df = read_runs(out)
    if len(df):
        df = df[df["suite"] == sweep.suite]
    status = df["status"] if len(df) else []
    return {
        "runs": len(df),
        "tune": int((df["phase"] == "tune").sum()) if len(df) else 0,
        "eval": int((df["phase"] == "eval").sum()) if len(df) else 0,
        "diverged": int((status == "diverged").sum()) if len(df) else 0,
        "failed": int((status == "failed").sum()) if len(df) else 0,
    }


__all__: Sequence[str] = (
    "SCHEMA", "TASK_SCHEMA", "OPTIMIZER_SCHEMA", "Sweep", "StudyPlan", "SamplerConfig", "PrunerConfig",
    "Heartbeat", "TaskInfo", "Event", "Worker", "load", "loads", "preflight", "prepare", "suggest",
    "default_params", "default_hparams", "hparams_from_params", "default_storage_url", "is_rdb_url",
    "open_storage", "redact_url", "run_local_workers", "worker_command", "worker_env", "threads_per_worker", "summarize",
)
