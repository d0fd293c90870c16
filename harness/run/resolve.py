"""Resolution: names -> a fully specified ``RunSpec``, and the LR schedule a spec trains with.

:func:`resolve` builds the task and a ``RunSpec`` with every default filled in (the optimizer's
hyperparameters, the task's dataset, steps and options, the complete schedule override), checking
every value before anything runs or is written. :func:`complete_spec` does the same for a hand-made
spec on its way into ``harness.run.loop.run``, so its run_id names the run that actually happens.
:func:`run_schedule` is the schedule ``harness.run.loop.train`` steps the LR along
(``harness.run.schedules``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from harness import plugins
from harness.errors import UserError, unknown
from harness.results import store as records
from harness.run import schedules
from harness.run.delay import check_delay
from harness.spec import RunSpec, seed_problem, steps_problem
from harness.task import SIZES, Task


def resolve(
    *,
    task: str,
    optimizer: str,
    dataset: str | None = None,
    size: str = "tiny",
    hparams: Mapping[str, Any] | None = None,
    task_options: Mapping[str, Any] | None = None,
    seed: int = 0,
    steps: int | None = None,
    phase: str = "run",
    suite: str = "adhoc",
    study: str = "",
    trial: int | None = None,
    amp: str | None = None,
    compile: bool = False,
    data_dir: str | os.PathLike | None = None,
    replicate: int = 0,
    delay: int = 0,
    budget: float = 1.0,
    schedule: Mapping[str, Any] | None = None,
) -> tuple[RunSpec, Task]:
    """Build the task and a fully resolved ``RunSpec`` (defaults merged, steps filled in).

    ``delay``: gradients reach the optimizer this many steps late (``harness.run.delay``). ``budget``:
    the fraction of the ``steps`` (``K``) the run takes. ``schedule``: keys over the task's LR
    schedule (``{"kind": "wsd", "decay_fraction": 0.2, "decay_shape": "sqrt"}``; warmup_steps and
    min_lr_ratio default to the task's), stored complete in the spec (``{}`` when it is the task's).

    Raises :class:`UserError` for unknown names and impossible values, before anything is written.
    """
    task_spec = plugins.task(task)  # a built-in, an entry point or pkg.module:ATTR; else UserError
    opt_spec = plugins.optimizer(optimizer)
    if steps is not None and steps_problem(steps):
        raise UserError(f"invalid steps: {steps_problem(steps)}")
    if seed_problem(seed):
        raise UserError(f"invalid seed: {seed_problem(seed)}")
    if amp not in (None, "bf16"):
        raise UserError(f"invalid amp: {amp!r}; known: bf16 (or none)")
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    try:
        check_delay(delay)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    built = task_spec.make(size, dataset=dataset, data_dir=data_dir, **dict(task_options or {}))
    total = schedules.budget_steps(steps or built.steps, budget)  # ScheduleError (a UserError) when out of (0, 1]
    override = _run_schedule_override(built, steps or built.steps, total, schedule)
    try:
        resolved_hp = opt_spec.resolve(hparams)
        # Validate values now (the optimizer constructor checks them) on a throwaway parameter, so a
        # bad value is a clean error before anything runs or is written.
        probe = {"matrix": [nn.Parameter(torch.zeros(2, 2))], "vector": [nn.Parameter(torch.zeros(2))]}
        opt_spec.build(probe, resolved_hp, total)
    except (ValueError, TypeError) as exc:  # TypeError: a plugin class refusing an argument
        raise UserError(str(exc)) from None
    spec = RunSpec(
        task=task,
        optimizer=optimizer,
        dataset=built.dataset,
        size=built.size,
        hparams=resolved_hp,
        task_options=dict(built.options),
        seed=seed,
        steps=steps or built.steps,
        phase=phase,
        suite=suite,
        study=study,
        amp=amp,
        compile=compile,
        trial=trial,
        replicate=replicate,
        delay=delay,
        budget=budget,
        schedule=override,
    )
    return spec, built


def _run_schedule_override(task: Task, total_full: int, total: int, override: Mapping[str, Any] | None) -> dict:
    """The complete schedule ``override`` asks for over ``task``'s (``{}``: the task's own), checked
    for a run of ``total`` of ``total_full`` steps (a wsd decay of one step, or inside the warmup,
    is refused here, before anything runs)."""
    default = schedules.task_schedule(task, total_full)
    canonical = schedules.canonical_override(default, override)
    sched = schedules.Schedule.from_mapping(canonical) if canonical else default
    if sched.kind == "wsd":
        schedules.decay_start(total, sched)
    return canonical


def run_schedule(spec: RunSpec, task: Task) -> schedules.Schedule:
    """The LR schedule ``spec`` trains with: its override, else the task's for its full budget."""
    if spec.schedule:
        return schedules.Schedule.from_mapping(spec.schedule)
    return schedules.task_schedule(task, int(spec.steps or task.steps))


def complete_spec(spec: RunSpec, task: Task | None, data_dir, out_dir) -> tuple[RunSpec, Task | None]:
    """Complete a hand-made spec so its run_id names the run that actually happens: hyperparameters
    merged over the optimizer's defaults; dataset, steps and task options from the task. Returns
    ``(spec, None)`` when the completed spec already has a record under ``out_dir`` and no task was
    built (building a task can load a dataset: not worth it for a run that is skipped)."""
    hparams = plugins.optimizer(spec.optimizer).resolve(spec.hparams)
    if hparams != spec.hparams:
        spec = spec.with_(hparams=hparams)
    if task is not None and spec.dataset and spec.steps is not None:
        train_steps = spec.train_steps
        assert train_steps is not None  # RunSpec.train_steps is None only while steps is
        override = _run_schedule_override(task, spec.steps, int(train_steps), spec.schedule)
        return (spec.with_(schedule=override) if override != spec.schedule else spec), task
    if (
        task is None
        and spec.dataset
        and spec.steps is not None
        and out_dir is not None
        and records.is_finished(out_dir, spec.run_id)
    ):
        return spec, None
    resolved, built = resolve(
        task=spec.task,
        optimizer=spec.optimizer,
        dataset=spec.dataset or None,
        size=spec.size,
        hparams=spec.hparams,
        task_options=spec.task_options,
        seed=spec.seed,
        steps=spec.steps,
        data_dir=data_dir,
        delay=spec.delay,
        budget=spec.budget,
        schedule=spec.schedule,
    )
    spec = spec.with_(
        dataset=resolved.dataset, task_options=resolved.task_options, steps=resolved.steps, schedule=resolved.schedule
    )
    return spec, task or built
