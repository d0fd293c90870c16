"""Expansion: a validated sweep file into its grid of ``StudyPlan``s.

``harness.sweep.schema`` validates the file (keys, names, values) into an ``Optimizers`` and, task
entry by task entry, an ``Entry``; a ``Grid`` turns each entry, as soon as it is validated, into one
plan per (dataset, replicate, optimizer): the optimizer's space narrowed or extended by the sweep
and the entry, the replicate's tune seed, the donor study of a ``transfer_from`` entry, the parent
study and shared hyperparameters of a ``branch_from`` optimizer. What can only be checked on a
finished plan is checked here, with the same file/line messages: seeds that collide, a donor without
the study, a branch that sets what it takes from its parent, search ranges the optimizer refuses at
their bounds (``probe_ranges``), more trials than a finite space holds. Expanding entry by entry
keeps the first problem reported the first one in the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from harness.spec import dataset_id
from harness.sweep import axes
from harness.sweep.plan import MAX_SEED, REPLICATE_SEED_STRIDE, StudyPlan, cell_suffix, dist_json
from harness.sweep.space import defaults_outside, hparams_from_params, projected_defaults, space_size
from harness.sweep.yamlfile import _Checker, _where


@dataclass(frozen=True)
class Optimizers:
    """The sweep's ``optimizers`` list, validated."""

    overrides: Mapping[str, tuple[dict, dict]]  # name -> sweep-wide (fixed, search)
    index: Mapping[str, int]  # name -> its position in the list (file order)
    branches: Mapping[str, str]  # name -> the optimizer it branches from
    specs: Mapping[str, Any]  # name -> its OptimizerSpec (built-in or plugin)


@dataclass(frozen=True)
class Entry:
    """One task entry, validated: everything its plans are made of."""

    path: tuple  # ("tasks", i): where messages point
    keys: frozenset[str]  # keys the entry sets (a message then points at its own key)
    name: str
    task: str
    size: str
    datasets: tuple[str, ...]
    options: Mapping[str, Any]
    steps: int | None
    trials: int
    replicates: int
    optimizers: tuple[str, ...]  # the sweep optimizers this entry runs, in the sweep's order
    eval_seeds: tuple[int, ...]
    overrides: Mapping[str, tuple[dict, dict]]  # optimizer -> the entry's own (fixed, search)
    donor: str | None = None  # transfer_from: an earlier entry's name
    source_datasets: tuple[str, ...] = ()  # the donor entry's datasets
    conditions: axes.Conditions = axes.Conditions()  # schedule, delay, axes, budgets, margin


class Grid:
    """The plans of a sweep, made entry by entry in file order (``add``)."""

    def __init__(self, chk: _Checker, suite: str, seed: int, optimizers: Optimizers):
        self.chk = chk
        self.suite = suite
        self.seed = seed
        self.opt = optimizers
        self.plans: list[StudyPlan] = []
        self._seen: dict[tuple[str, str], tuple] = {}  # (entry name, dataset) -> the entry's path
        self._margins: dict[tuple[str, str], Any] = {}  # (task, dataset key) -> its declared margin
        self._probed: set[str] = set()

    def add(self, entry: Entry) -> None:
        """Append the plans of ``entry``: datasets, then replicates, then optimizers."""
        chk, p = self.chk, entry.path
        for ds in entry.datasets:
            transfer = None
            if entry.donor is not None:
                sources = entry.source_datasets
                src_ds = ds if ds in sources else (sources[0] if len(sources) == 1 else None)
                if src_ds is None:
                    raise chk.error(
                        p + ("transfer_from",),
                        f"'{_where(p)}': dataset {ds!r} is not in entry "
                        f"{entry.donor!r} ({', '.join(sources)}), which has several "
                        "to pick from",
                    )
                transfer = f"{self.suite}/{entry.donor}/{dataset_id(src_ds)}"
            key = (entry.name, ds)
            if key in self._seen:
                raise chk.error(
                    p,
                    f"task entry '{_where(p)}' repeats {entry.name}/{ds} of '{_where(self._seen[key])}'; "
                    "give one of them a different 'name'",
                )
            self._seen[key] = p
            margin = entry.conditions.margin
            margin = margin.get(ds) if isinstance(margin, dict) else margin
            if margin is not None:
                self._margins[(entry.task, dataset_id(ds))] = margin
            for replicate in range(entry.replicates):
                made: set[str] = set()
                for cell in entry.conditions.cells():
                    for opt_name in entry.optimizers:
                        own = self._own_cell(entry, opt_name, cell)
                        study = self._study_name(entry, ds, replicate, opt_name, own)
                        if study in made:  # an axis this optimizer does not have: one study for every value
                            continue
                        made.add(study)
                        plan = self._plan(entry, ds, replicate, opt_name, transfer, own)
                        self.plans.append(plan)
                        self.plans.extend(self._budget_plans(entry, plan))

    def _own_cell(self, entry: Entry, opt_name: str, cell: Mapping[str, Any]) -> dict[str, Any]:
        """The part of ``cell`` that splits ``opt_name``'s studies, plus a scalar delay."""
        own = {k: v for k, v in cell.items() if axes.applies(k, opt_name, self.opt.specs, self.opt.branches)}
        if entry.conditions.delay and "delay" not in own:
            own["delay"] = entry.conditions.delay
        return own

    def _study_name(
        self, entry: Entry, ds: str, replicate: int, opt_name: str, cell: Mapping[str, Any], budget: float = 1.0
    ) -> str:
        base = f"{self.suite}/{entry.name}/{dataset_id(ds)}/{opt_name}"
        return (f"{base}/r{replicate}" if replicate else base) + cell_suffix(cell, budget)

    def _budget_plans(self, entry: Entry, plan: StudyPlan) -> list[StudyPlan]:
        """The plans of ``plan``'s shorter budgets (``budgets:``). Tuned at the full budget (the
        default): untuned decay branches of the full plan's eval runs (a SoftX plan's from its X's full
        runs, evaluating the SoftX plan's configuration). ``budget_tuning: every``: tuned plans of
        their own whose runs train the budget from scratch (SoftX branching from X at that budget)."""
        cond, out = entry.conditions, []
        for b in (b for b in cond.budgets if b < 1.0):
            if cond.budget_tuning == "every":
                parent = None if plan.branch_from is None else f"{plan.branch_from}/budget={b:g}"
                donor = None if plan.transfer_from is None else f"{plan.transfer_from}/budget={b:g}"
                out.append(replace(plan, budget=b, branch_from=parent, transfer_from=donor))
            elif plan.branch_from is None:
                shared = tuple(sorted(self.opt.specs[plan.optimizer].defaults))
                out.append(
                    replace(
                        plan, budget=b, trials=0, space={}, branch_from=plan.study, shared=shared, transfer_from=None
                    )
                )
            else:
                out.append(replace(plan, budget=b, trials=0, transfer_from=plan.study))
        return out

    def _plan(
        self, entry: Entry, ds: str, replicate: int, opt_name: str, transfer: str | None, cell: Mapping[str, Any]
    ) -> StudyPlan:
        chk, p, opt = self.chk, entry.path, self.opt
        fixed, search = opt.overrides[opt_name]
        lfixed, lsearch = entry.overrides.get(opt_name, ({}, {}))
        fixed_all = {**{k: v for k, v in fixed.items() if k not in lsearch}, **lfixed}
        search_all = {**{k: v for k, v in search.items() if k not in lfixed}, **lsearch}
        parent_name = opt.branches.get(opt_name)
        shared_names = (
            ()
            if parent_name is None
            else tuple(sorted(set(opt.specs[parent_name].defaults) & set(opt.specs[opt_name].defaults)))
        )
        for hp, value in cell.items():  # a hyperparameter axis: fixed at the cell's value
            if axes.sets(hp, opt_name, opt.specs, shared_names):
                search_all.pop(hp, None)
                fixed_all[hp] = value
        space = {k: v for k, v in opt.specs[opt_name].search_space.items() if k not in fixed_all}
        space.update(search_all)
        tune_seed = self.seed + REPLICATE_SEED_STRIDE * replicate
        if tune_seed > MAX_SEED:
            where = p + ("replicates",) if "replicates" in entry.keys else ("replicates",)
            raise chk.error(
                where,
                f"replicate {replicate} would tune with seed {tune_seed} (seed + "
                f"{REPLICATE_SEED_STRIDE} r), above the largest seed {MAX_SEED}; "
                "lower 'seed' or 'replicates'",
            )
        if tune_seed in entry.eval_seeds:
            raise chk.error(
                p,
                f"replicate {replicate} tunes with seed {tune_seed}, which is also an eval seed "
                f"of {entry.name}; eval seeds must be fresh (pick other eval seeds)",
            )
        plan_trials, shared, parent = entry.trials, (), None
        transfer_study = None if transfer is None else f"{transfer}/{opt_name}"
        if replicate and transfer_study:
            transfer_study += f"/r{replicate}"
        if transfer_study:
            transfer_study += cell_suffix(cell)
        base_cell = self._own_cell(entry, opt_name, entry.conditions.cells()[0])
        if entry.conditions.reuse_tuning and transfer_study is None and cell != base_cell:
            # reuse_tuning: this cell evaluates the first cell's best configuration, untuned
            transfer_study = self._study_name(entry, ds, replicate, opt_name, base_cell)
            plan_trials = 0
        if transfer_study and transfer_study not in {q.study for q in self.plans}:
            raise chk.error(
                p + ("transfer_from",),
                f"'{_where(p)}' transfers from {entry.donor!r}, which has no study "
                f"{transfer_study} (fewer replicates or optimizers than this entry)",
            )
        if parent_name is not None:
            shared = shared_names
            check_branch_overrides(chk, opt_name, parent_name, shared, fixed_all, search_all, opt.index)
            space = {k: v for k, v in space.items() if k not in shared}
            n_own = space_size(space) if space else 0
            if plan_trials:
                plan_trials = 0 if not space else (min(entry.trials, n_own) if n_own else entry.trials)
            parent_cell = {k: v for k, v in cell.items() if axes.applies(k, parent_name, opt.specs, opt.branches)}
            parent = self._study_name(entry, ds, replicate, parent_name, parent_cell)
        plan = StudyPlan(
            suite=self.suite,
            entry=entry.name,
            task=entry.task,
            dataset=ds,
            size=entry.size,
            optimizer=opt_name,
            options=dict(entry.options),
            steps=entry.steps,
            trials=plan_trials,
            eval_seeds=entry.eval_seeds,
            seed=tune_seed,
            space=space,
            fixed=fixed_all,
            line=chk.line(p),
            transfer_from=transfer_study,
            replicate=replicate,
            branch_from=parent,
            shared=shared,
            delay=int(cell.get("delay", 0)),
            schedule=axes.cell_schedule(entry.conditions.schedule, cell),
            cell=dict(cell),
        )
        origins = {
            hp: (p + ("hparams", opt_name, "search", hp))
            if hp in lsearch
            else ("optimizers", opt.index[opt_name], "search", hp)
            for hp in search_all
        }
        probe_ranges(chk, plan, origins, self._probed)
        n_configs = space_size(plan.space) if plan.trials else None
        if n_configs is not None and plan.trials > n_configs:
            where = p + ("trials",) if "trials" in entry.keys else ("trials",)
            raise chk.error(
                where,
                f"{entry.name}/{ds} with {opt_name}: {plan.trials} trials, but its search space "
                f"has only {n_configs} distinct configuration(s) (every searched hyperparameter is "
                "a choice or an integer range); lower 'trials' or widen the space",
            )
        return plan

    def margins(self, everywhere: Any) -> dict[str, Any]:
        """The declared margins as ``plan.json`` holds them (``harness.results.budget``): the sweep's
        (every benchmark) and each benchmark's (task, dataset) from its entry."""

        def form(m: Any) -> dict[str, Any]:
            return {"kind": m.kind, "value": m.value}

        if everywhere is None and not self._margins:
            return {}
        return {
            "everywhere": None if everywhere is None else form(everywhere),
            "benchmarks": [{"task": t, "dataset": d, "margin": form(m)} for (t, d), m in self._margins.items()],
        }

    def notes(self, source: str) -> tuple[str, ...]:
        """Things worth knowing that are not errors: a tuned plan whose optimizer default lies outside
        its space samples its trial 0 like the others (once per entry and optimizer)."""
        notes: list[str] = []
        for plan in self.plans:
            outside = defaults_outside(plan.space, self.opt.specs[plan.optimizer].defaults) if plan.trials else []
            note = (
                f"{source}: line {plan.line}: {plan.entry} with {plan.optimizer}: the default "
                f"{'; '.join(outside)}, so trial 0 is sampled like the others (not the defaults)"
            )
            if outside and note not in notes:
                notes.append(note)
        return tuple(notes)


def check_branch_overrides(
    chk: _Checker,
    name: str,
    parent: str,
    shared: tuple[str, ...],
    fixed: Mapping[str, Any],
    search: Mapping[str, Any],
    opt_index: Mapping[str, int],
) -> None:
    """A branch takes the shared hyperparameters from its parent's tuned configuration: setting or
    searching them on the branch would run a configuration its parent's checkpoint does not hold.
    Its own ``alpha_sign`` must be fixed or a list of choices: the parent keeps one checkpoint per S."""
    from optimizers._base import Categorical

    clash = sorted((set(fixed) | set(search)) & set(shared))
    if clash:
        raise chk.error(
            ("optimizers", opt_index[name]),
            f"{name} branches from {parent} and takes {', '.join(clash)} from "
            f"its tuned configuration; set or search them on {parent} instead",
        )
    alpha = search.get("alpha_sign")
    if alpha is not None and not isinstance(alpha, Categorical):
        raise chk.error(
            ("optimizers", opt_index[name], "search", "alpha_sign"),
            f"{name} branches from {parent}: search alpha_sign as {{choices: [...]}} (the parent keeps "
            "one checkpoint per S = floor(alpha_sign K)), not as a range",
        )


def probe_ranges(chk: _Checker, plan: StudyPlan, origins: Mapping[str, tuple], probed: set[str]) -> None:
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
    key = repr(
        (
            plan.optimizer,
            sorted((k, dist_json(v)) for k, v in plan.space.items()),
            sorted((k, repr(v)) for k, v in plan.fixed.items()),
        )
    )
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
                raise chk.error(
                    path,
                    f"'{_where(path)}': {hp}={value!r} lies in the range but optimizer "
                    f"{plan.optimizer!r} refuses it ({problem}); give a range whose every value is valid",
                )
