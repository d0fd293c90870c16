"""Sweep files: the schema, YAML with line numbers, and validation into a ``Sweep`` of ``StudyPlan``s.

Everything a user can get wrong in a sweep file is found here, before anything runs or is written:
unknown keys and names, impossible budgets, and search ranges the optimizer itself refuses (every
bound of a searched range is built on a throw-away parameter, see ``_probe_ranges``). Errors name the
file, the line and the key (``harness.errors.UserError``). The registries (torch) are imported only
after the plain YAML checks, so a typo is reported instantly.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.spec import SEED_LIMIT, dataset_id
from harness.sweep.space import (
    defaults_outside,
    dist_json,
    hparams_from_params,
    jsonable,
    projected_defaults,
    space_size,
)
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
}
OPTIMIZER_SCHEMA: dict[str, str] = {
    "name": "registered optimizer name",
    "fixed": "hyperparameters held fixed (removed from the search space)",
    "search": "hyperparameter -> [low, high] (same kind as the registry's) or {log|uniform|one_minus_log: "
              "[low, high]} or {choices: [...]}; ranges are in the hyperparameter's own units",
    "branch_from": "the optimizer this one is before its switch (softsignum: signum, softmuon: muon, hardswitchsign: "
                   "signum), also in the sweep: this optimizer takes that one's tuned configuration for the "
                   "hyperparameters they share, and every run of it starts from that optimizer's checkpoint at "
                   "S = floor(alpha_sign K) (same seed and configuration) and runs only S+1..K. Its own "
                   "hyperparameters (e.g. alpha_sign as {choices: [...]}) are tuned over those branches",
}
REPLICATE_SEED_STRIDE = 1000  # replicate r tunes with seed + 1000 r
SAMPLERS = ("tpe", "qmc")
PRUNERS = ("median",)
SIZES = VOCAB_SIZES  # torch-free, so a YAML typo is reported before torch loads
SUITE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # a folder name and part of study names
MAX_SEED = SEED_LIMIT - 1  # every seed a sweep uses, derived ones included (harness.spec.SEED_LIMIT)


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
    replicate: int = 0         # tuning replicate; ``seed`` is this replicate's tune seed
    branch_from: str | None = None  # study of the plan whose checkpoints this plan's runs start from
    shared: tuple[str, ...] = ()    # hyperparameters taken from that plan's tuned configuration
    dataset_key: str = ""           # dataset_id(dataset) when the sweep file was read (pinned: see study)

    def __post_init__(self) -> None:
        if not self.dataset_key:
            object.__setattr__(self, "dataset_key", dataset_id(self.dataset))

    @property
    def study(self) -> str:
        """``<suite>/<entry>/<dataset>/<optimizer>``, plus ``/r<k>`` for replicate k > 0 (replicate 0
        keeps the plain name, so raising ``replicates`` on an existing sweep keeps its studies). A
        user's file is named by its content (``harness.spec.dataset_id``), so the sampler seed, which
        derives from the study name, does not depend on where the file sits. The content is the one
        the file had when the sweep file was read (``dataset_key``): a file edited during a sweep does
        not rename its studies; its runs fail instead (``harness.sweep.worker``)."""
        base = f"{self.suite}/{self.entry}/{self.dataset_key}/{self.optimizer}"
        return f"{base}/r{self.replicate}" if self.replicate else base

    @property
    def eval_study(self) -> str:
        return f"{self.study}/eval"

    @property
    def planned_runs(self) -> int:
        return self.trials + len(self.eval_seeds)

    def config(self) -> dict[str, Any]:
        """What must not change between a study's creation and a resume (trial counts may grow)."""
        return {
            "task": self.task, "dataset": self.dataset_key, "size": self.size, "optimizer": self.optimizer,
            "options": dict(self.options), "steps": self.steps, "seed": self.seed,
            "space": {k: dist_json(v) for k, v in sorted(self.space.items())},
            "fixed": {k: jsonable(v) for k, v in sorted(self.fixed.items())},
            "transfer_from": self.transfer_from,
            # Only when set: studies created before these keys existed resume unchanged.
            **({"replicate": self.replicate} if self.replicate else {}),
            **({"branch_from": self.branch_from, "shared": list(self.shared)} if self.branch_from else {}),
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
    checkpoint_every: float | None = 600.0  # seconds between a run's checkpoints (None: off)

    def plan(self, study: str) -> StudyPlan:
        return next(p for p in self.studies if p.study == study)

    def children(self, plan: StudyPlan) -> tuple[StudyPlan, ...]:
        """The plans whose runs branch from ``plan``'s checkpoints."""
        return tuple(p for p in self.studies if p.branch_from == plan.study)

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
        raise chk.error(("suite",), f"'suite' must be a name of 1 to 64 letters, digits, '.', '_' or '-' (it names the "
                                    f"results folder), got {suite!r}")
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

    # The registries (and plugins) import torch: only now, so plain typos are reported instantly.
    from harness import plugins

    # Optimizers (sweep-wide overrides).
    opt_list = chk.name_list(data["optimizers"], ("optimizers",), "optimizers")
    opt_overrides: dict[str, tuple[dict, dict]] = {}
    opt_index: dict[str, int] = {}
    branches: dict[str, str] = {}  # optimizer -> the optimizer it branches from
    opt_specs: dict[str, Any] = {}  # optimizer -> its OptimizerSpec (built-in or plugin)
    for i, item in enumerate(opt_list):
        p = ("optimizers", i)
        if isinstance(item, str):
            item = {"name": item}
        chk.keys(item, p, OPTIMIZER_SCHEMA, "an optimizer entry", required=("name",))
        name = item["name"]
        try:
            opt_specs[name] = plugins.optimizer(str(name))
        except UserError as exc:
            raise chk.error(p + ("name",) if (p + ("name",)) in lines else p, f"'{_where(p)}': {exc}") from None
        if name in opt_overrides:
            raise chk.error(p, f"optimizer {name!r} is listed twice in 'optimizers'")
        opt_overrides[name] = _overrides(chk, opt_specs[name], item, p)
        opt_index[name] = i
        if "branch_from" in item:
            branches[name] = item["branch_from"]
    _check_branches(chk, branches, opt_index, opt_specs)

    # Task entries.
    entries = chk.name_list(data["tasks"], ("tasks",), "tasks")
    plans: list[StudyPlan] = []
    seen: dict[tuple[str, str], tuple] = {}
    probed: set[str] = set()
    for i, entry in enumerate(entries):
        p = ("tasks", i)
        if isinstance(entry, str):
            entry = {"task": entry}
        chk.keys(entry, p, TASK_SCHEMA, "a task entry", required=("task",))
        task_name = entry["task"]
        try:
            record = plugins.task(str(task_name))  # the task's TaskSpec: built-in, entry point or import path
        except UserError as exc:
            raise chk.error(p + ("task",) if (p + ("task",)) in lines else p, f"'{_where(p)}': {exc}") from None
        entry_name = entry.get("name", record.name)  # a plugin path (pkg.mod:TASK) names its entry by its record
        if not isinstance(entry_name, str) or not SUITE_NAME.match(entry_name):
            raise chk.error(p + ("name",), f"'{_where(p + ('name',))}' must be a name of 1 to 64 letters, digits, '.', "
                                           "'_' or '-'")
        entry_size = entry.get("size", size)
        if entry_size is None:
            raise chk.error(p, f"task entry '{_where(p)}' ({task_name}) has no 'size' and the sweep sets no default 'size'; "
                               f"known sizes: {', '.join(record.sizes)}")
        if entry_size not in record.sizes:
            raise chk.error(p + ("size",) if "size" in entry else ("size",),
                            f"unknown size {entry_size!r} for task {task_name}; known: {', '.join(record.sizes)}")
        if "datasets" in entry:
            datasets = chk.name_list(entry["datasets"], p + ("datasets",), "datasets")
        else:
            datasets = [record.default_dataset[entry_size]]
        for j, ds in enumerate(datasets):
            if not _known_dataset(ds, record):
                known = ", ".join(sorted(d.name for d in record.datasets))
                raise chk.error(p + ("datasets", j), f"unknown dataset {ds!r} for task {task_name} at "
                                                     f"'{_where(p + ('datasets', j))}'; known: {known}")
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
        entry_steps = steps if entry.get("steps") is None else chk.integer(entry["steps"], p + ("steps",), 1)
        entry_trials = trials if "trials" not in entry else chk.integer(entry["trials"], p + ("trials",), 0)
        entry_replicates = replicates if "replicates" not in entry else \
            chk.integer(entry["replicates"], p + ("replicates",), 1)
        entry_optimizers = _entry_optimizers(chk, entry, p, opt_index, branches)
        donor = entry.get("transfer_from")
        if donor is not None:
            tp = p + ("transfer_from",)
            earlier = {plan.entry for plan in plans}
            if donor not in earlier:
                raise chk.error(tp, f"'{_where(tp)}' names {donor!r}, which is not an earlier task entry; "
                                    f"earlier entries: {', '.join(sorted(earlier)) or '(none)'}")
            if not any(plan.trials for plan in plans if plan.entry == donor):
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
            local_overrides[opt_name] = _overrides(chk, opt_specs[opt_name], override, hp)

        for ds in datasets:
            transfer = None
            if donor is not None:
                src_ds = ds if ds in source_datasets else (source_datasets[0] if len(source_datasets) == 1 else None)
                if src_ds is None:
                    raise chk.error(p + ("transfer_from",), f"'{_where(p)}': dataset {ds!r} is not in entry {donor!r} "
                                                            f"({', '.join(source_datasets)}), which has several to pick from")
                transfer = f"{suite}/{donor}/{dataset_id(src_ds)}"
            key = (entry_name, ds)
            if key in seen:
                raise chk.error(p, f"task entry '{_where(p)}' repeats {entry_name}/{ds} of '{_where(seen[key])}'; "
                                   "give one of them a different 'name'")
            seen[key] = p
            for replicate, opt_name in ((r, o) for r in range(entry_replicates) for o in entry_optimizers):
                fixed, search = opt_overrides[opt_name]
                lfixed, lsearch = local_overrides.get(opt_name, ({}, {}))
                fixed_all = {**{k: v for k, v in fixed.items() if k not in lsearch}, **lfixed}
                search_all = {**{k: v for k, v in search.items() if k not in lfixed}, **lsearch}
                space = {k: v for k, v in opt_specs[opt_name].search_space.items() if k not in fixed_all}
                space.update(search_all)
                tune_seed = seed + REPLICATE_SEED_STRIDE * replicate
                if tune_seed > MAX_SEED:
                    where = p + ("replicates",) if "replicates" in entry else ("replicates",)
                    raise chk.error(where, f"replicate {replicate} would tune with seed {tune_seed} (seed + "
                                           f"{REPLICATE_SEED_STRIDE} r), above the largest seed {MAX_SEED}; "
                                           "lower 'seed' or 'replicates'")
                if tune_seed in entry_seeds:
                    raise chk.error(p, f"replicate {replicate} tunes with seed {tune_seed}, which is also an eval seed "
                                       f"of {entry_name}; eval seeds must be fresh (pick other eval seeds)")
                plan_trials, shared, parent = entry_trials, (), None
                transfer_study = None if transfer is None else f"{transfer}/{opt_name}"
                if replicate and transfer_study:
                    transfer_study += f"/r{replicate}"
                if transfer_study and transfer_study not in {q.study for q in plans}:
                    raise chk.error(p + ("transfer_from",), f"'{_where(p)}' transfers from {donor!r}, which has no study "
                                                            f"{transfer_study} (fewer replicates or optimizers than this entry)")
                if opt_name in branches:
                    parent_name = branches[opt_name]
                    shared = tuple(sorted(set(opt_specs[parent_name].defaults) & set(opt_specs[opt_name].defaults)))
                    _check_branch_overrides(chk, opt_name, parent_name, shared, fixed_all, search_all,
                                            p, opt_index)
                    space = {k: v for k, v in space.items() if k not in shared}
                    n_own = space_size(space) if space else 0
                    plan_trials = 0 if not space else (min(entry_trials, n_own) if n_own else entry_trials)
                    base = f"{suite}/{entry_name}/{dataset_id(ds)}/{parent_name}"
                    parent = f"{base}/r{replicate}" if replicate else base
                plan = StudyPlan(
                    suite=suite, entry=entry_name, task=task_name, dataset=ds, size=entry_size,
                    optimizer=opt_name, options=dict(options), steps=entry_steps, trials=plan_trials,
                    eval_seeds=entry_seeds, seed=tune_seed, space=space, fixed=fixed_all, line=chk.line(p),
                    transfer_from=transfer_study, replicate=replicate, branch_from=parent, shared=shared,
                )
                origins = {hp: (p + ("hparams", opt_name, "search", hp)) if hp in lsearch
                           else ("optimizers", opt_index[opt_name], "search", hp) for hp in search_all}
                _probe_ranges(chk, plan, origins, probed)
                n_configs = space_size(plan.space) if plan.trials else None
                if n_configs is not None and plan.trials > n_configs:
                    where = p + ("trials",) if "trials" in entry else ("trials",)
                    raise chk.error(where, f"{entry_name}/{ds} with {opt_name}: {plan.trials} trials, but its search space "
                                           f"has only {n_configs} distinct configuration(s) (every searched hyperparameter is "
                                           "a choice or an integer range); lower 'trials' or widen the space")
                plans.append(plan)
    notes: list[str] = []
    for plan in plans:
        outside = defaults_outside(plan.space, opt_specs[plan.optimizer].defaults) if plan.trials else []
        note = (f"{source}: line {plan.line}: {plan.entry} with {plan.optimizer}: the default "
                f"{'; '.join(outside)}, so trial 0 is sampled like the others (not the defaults)")
        if outside and note not in notes:
            notes.append(note)
    return Sweep(path=source, suite=suite, description=description, studies=tuple(plans), seed=seed,
                 sampler=sampler, pruner=pruner, heartbeat=heartbeat, data_dir=data_dir, notes=tuple(notes),
                 checkpoint_every=checkpoint_every)


def _checkpoint_every(chk: _Checker, value: Any) -> float | None:
    if value in (None, False, "off"):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise chk.error(("checkpoint_every",), f"'checkpoint_every' must be a number of seconds > 0 or off, got {value!r}")
    return float(value)


def _check_branches(chk: _Checker, branches: Mapping[str, str], opt_index: Mapping[str, int], registry) -> None:
    """``branch_from`` names an optimizer of the sweep that the branching optimizer *is* before its
    switch (a fact of its registry spec), and that does not branch itself."""
    for name, parent in branches.items():
        where = ("optimizers", opt_index[name], "branch_from")
        declared = registry[name].branch_from
        if declared is None:
            import optimizers

            can = ", ".join(sorted(k for k, v in optimizers.REGISTRY.items() if v.branch_from))
            raise chk.error(where, f"optimizer {name!r} cannot branch: it is not another optimizer for its first steps "
                                   f"(optimizers that can: {can})")
        if parent != declared:
            raise chk.error(where, f"'{_where(where)}': {name} can branch only from {declared!r} (it is {declared} "
                                   f"before its switch), not from {parent!r}")
        if parent not in opt_index:
            raise chk.error(where, f"'{_where(where)}': {name} branches from {parent!r}, which the sweep does not run; "
                                   f"add {parent} to 'optimizers'")
        if parent in branches:
            raise chk.error(where, f"'{_where(where)}': {parent} branches itself; a branch needs a parent that runs whole")


def _check_branch_overrides(chk: _Checker, name: str, parent: str, shared: tuple[str, ...], fixed: Mapping[str, Any],
                            search: Mapping[str, Any], entry_path: tuple, opt_index: Mapping[str, int]) -> None:
    """A branch takes the shared hyperparameters from its parent's tuned configuration: setting or
    searching them on the branch would run a configuration its parent's checkpoint does not hold.
    Its own ``alpha_sign`` must be fixed or a list of choices: the parent keeps one checkpoint per S."""
    from optimizers._base import Categorical

    clash = sorted((set(fixed) | set(search)) & set(shared))
    if clash:
        raise chk.error(("optimizers", opt_index[name]), f"{name} branches from {parent} and takes {', '.join(clash)} from "
                                                         f"its tuned configuration; set or search them on {parent} instead")
    alpha = search.get("alpha_sign")
    if alpha is not None and not isinstance(alpha, Categorical):
        raise chk.error(("optimizers", opt_index[name], "search", "alpha_sign"),
                        f"{name} branches from {parent}: search alpha_sign as {{choices: [...]}} (the parent keeps "
                        "one checkpoint per S = floor(alpha_sign K)), not as a range")


def _entry_optimizers(chk: _Checker, entry: Mapping[str, Any], path: tuple, opt_index: Mapping[str, int],
                      branches: Mapping[str, str]) -> list[str]:
    """The entry's ``optimizers`` (default: every sweep optimizer), in the sweep's order."""
    if "optimizers" not in entry:
        return list(opt_index)
    where = path + ("optimizers",)
    names = chk.name_list(entry["optimizers"], where, "optimizers")
    for j, name in enumerate(names):
        if name not in opt_index:
            raise chk.error(where + (j,), f"'{_where(where + (j,))}' names {name!r}, which the sweep does not run; "
                                          f"sweep optimizers: {', '.join(opt_index)}")
    for name in names:
        if name in branches and branches[name] not in names:
            raise chk.error(where, f"'{_where(where)}' runs {name}, which branches from {branches[name]}: "
                                   f"list {branches[name]} too")
    return [name for name in opt_index if name in names]


def _probe_ranges(chk: _Checker, plan: StudyPlan, origins: Mapping[str, tuple], probed: set[str]) -> None:
    """Build the optimizer on a throw-away parameter at every bound of every range the sweep file
    declares (each choice of a categorical), the other hyperparameters at their defaults projected
    into the space plus the fixed values: a range the optimizer refuses anywhere at its edges fails
    here, naming its key and line, instead of as a run-time error after some runs were written.
    (Bounds, not the interior: the optimizers' checks are box constraints, so the edges decide.)
    Registry ranges are trusted (the optimizer contract tests cover them)."""
    import torch

    from harness import plugins
    from optimizers._base import Categorical, OneMinusLogUniform

    if not origins or not plan.trials:
        return
    spec = plugins.optimizer(plan.optimizer)
    key = repr((plan.optimizer, sorted((k, dist_json(v)) for k, v in plan.space.items()),
                sorted((k, repr(v)) for k, v in plan.fixed.items())))
    if key in probed:
        return
    probed.add(key)
    base = hparams_from_params(projected_defaults(plan.space, spec.defaults), plan.space, plan.fixed)

    def build(hparams: Mapping[str, Any]) -> str | None:
        probe = {"matrix": [torch.nn.Parameter(torch.zeros(2, 2))], "vector": [torch.nn.Parameter(torch.zeros(2))]}
        try:
            spec.build(probe, dict(hparams), plan.steps or 100)
        except (ValueError, TypeError) as exc:
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None

    if build(base) is not None:
        return  # the fixed values themselves are refused: preflight reports that with the entry's line
    for hp, path in origins.items():
        dist = plan.space.get(hp)
        if dist is None:
            continue
        if isinstance(dist, Categorical):
            values = list(dist.choices)
        elif isinstance(dist, OneMinusLogUniform):
            values = [1.0 - dist.high, 1.0 - dist.low]
        else:
            values = [dist.low, dist.high]
        for value in values:
            problem = build({**base, hp: value})
            if problem is not None:
                raise chk.error(path, f"'{_where(path)}': {hp}={value!r} lies in the range but optimizer "
                                      f"{plan.optimizer!r} refuses it ({problem}); give a range whose every value is valid")


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


