"""From a plan to runs: the ``RunSpec`` and ``Task`` of one run of a ``StudyPlan``
(``resolve_run``), and every plan resolved once before anything is written (``preflight``), which
also gives each study its metric, direction and penalty (``TaskInfo``). Torch is imported only when a
plan is resolved (through ``harness.run.loop``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import UserError
from harness.sweep.plan import StudyPlan, Sweep
from harness.sweep.space import default_hparams


@dataclass(frozen=True)
class TaskInfo:
    metric: str
    direction: str  # max | min
    penalty: float


def preflight(sweep: Sweep) -> dict[str, TaskInfo]:
    """Resolve every (entry, dataset, optimizer) through ``harness.run.resolve.resolve`` with its trial-0
    hyperparameters, so bad option values, bad fixed hyperparameters and missing data files fail
    now, with the entry's line, before any study or run is written. Returns study -> TaskInfo."""
    return {plan.study: resolve_plan(sweep, plan) for plan in sweep.studies}


def resolve_plan(sweep: Sweep, plan: StudyPlan) -> TaskInfo:
    _, task = resolve_run(sweep, plan, default_hparams(plan), plan.seed, "tune", 0)
    return TaskInfo(task.metric.name, task.metric.direction, float(task.penalty))


def resolve_run(sweep: Sweep, plan: StudyPlan, hparams: Mapping[str, Any], seed: int, phase: str, trial: int | None):
    """(RunSpec, Task) of one run of ``plan``; a bad value is a ``UserError`` naming the entry's line."""
    from harness.run.resolve import resolve

    try:
        spec, task = resolve(
            task=plan.task,
            optimizer=plan.optimizer,
            dataset=plan.dataset,
            size=plan.size,
            hparams=dict(hparams),
            task_options=dict(plan.options),
            seed=seed,
            steps=plan.steps,
            phase=phase,
            suite=plan.suite,
            study=plan.study,
            trial=trial,
            data_dir=sweep.data_dir,
            replicate=plan.replicate,
            delay=plan.delay,
            budget=plan.budget,
            schedule=dict(plan.schedule) or None,
        )
        return (spec.with_(cell=dict(plan.cell)) if plan.cell else spec), task
    except (UserError, ValueError, KeyError) as exc:
        msg = exc.args[0] if exc.args else str(exc)
        raise UserError(
            f"{sweep.path}: line {plan.line}: {plan.entry}/{plan.dataset} with {plan.optimizer}: {msg}"
        ) from None


def utc_now() -> str:
    """Now, UTC, to the second (ISO 8601): the ``started_at`` / ``finished_at`` of a record."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
