"""A validated sweep as plain frozen data: the ``Sweep`` and its ``StudyPlan``s (what each study tunes
and evaluates), the sampler, pruner and heartbeat settings, and the JSON form of a plan's
configuration. No validation (``harness.sweep.schema``), no expansion (``harness.sweep.expand``), no
Optuna and no torch: every module of the sweep can import this one, and it imports none of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.spec import SEED_LIMIT, dataset_id

REPLICATE_SEED_STRIDE = 1000  # replicate r tunes with seed + 1000 r
MAX_SEED = SEED_LIMIT - 1  # every seed a sweep uses, derived ones included (harness.spec.SEED_LIMIT)


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


def dist_json(dist: Any) -> dict[str, Any]:
    """A search-space record (``optimizers._base``) as JSON: its kind and its fields."""
    d = {"kind": type(dist).__name__}
    d.update({k: jsonable(v) for k, v in vars(dist).items()})
    return d


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    return str(value)


def cell_suffix(cell: Mapping[str, Any], budget: float = 1.0) -> str:
    """The part of a study name after the optimizer (and replicate) that names its cell and budget."""
    named = [f"{k}={format_value(v)}" for k, v in cell.items() if not (k == "delay" and v == 0)]
    out = "/" + ",".join(named) if named else ""
    if budget != 1.0:
        out += f"/budget={budget:g}"
    return out


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
    entry: str  # entry name (default: task name)
    task: str
    dataset: str
    size: str
    optimizer: str
    options: Mapping[str, Any]
    steps: int | None
    trials: int
    eval_seeds: tuple[int, ...]
    seed: int
    space: Mapping[str, Any]  # hparam -> optimizers._base distribution record
    fixed: Mapping[str, Any]
    line: int  # line of the task entry in the sweep file (for error messages)
    transfer_from: str | None = None  # study whose best configuration this plan evaluates (trials 0)
    replicate: int = 0  # tuning replicate; ``seed`` is this replicate's tune seed
    branch_from: str | None = None  # study of the plan whose checkpoints this plan's runs start from
    shared: tuple[str, ...] = ()  # hyperparameters taken from that plan's tuned configuration
    dataset_key: str = ""  # dataset_id(dataset) when the sweep file was read (pinned: see study)
    delay: int = 0  # gradient delay of every run (harness.run.delay)
    schedule: Mapping[str, Any] = field(default_factory=dict)  # LR schedule override ({}: the task's)
    budget: float = 1.0  # fraction of the step budget its runs train (a WSD budget: see axes)
    cell: Mapping[str, Any] = field(default_factory=dict)  # the axis values of its cell (harness.sweep.axes)

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
        base = f"{base}/r{self.replicate}" if self.replicate else base
        return base + cell_suffix(self.cell, self.budget)

    @property
    def eval_study(self) -> str:
        return f"{self.study}/eval"

    @property
    def planned_runs(self) -> int:
        return self.trials + len(self.eval_seeds)

    def config(self) -> dict[str, Any]:
        """What must not change between a study's creation and a resume (trial counts may grow)."""
        return {
            "task": self.task,
            "dataset": self.dataset_key,
            "size": self.size,
            "optimizer": self.optimizer,
            "options": dict(self.options),
            "steps": self.steps,
            "seed": self.seed,
            "space": {k: dist_json(v) for k, v in sorted(self.space.items())},
            "fixed": {k: jsonable(v) for k, v in sorted(self.fixed.items())},
            "transfer_from": self.transfer_from,
            # Only when set: studies created before these keys existed resume unchanged.
            **({"replicate": self.replicate} if self.replicate else {}),
            **({"branch_from": self.branch_from, "shared": list(self.shared)} if self.branch_from else {}),
            **({"delay": self.delay} if self.delay else {}),
            **({"schedule": {k: jsonable(v) for k, v in sorted(self.schedule.items())}} if self.schedule else {}),
            **({"budget": self.budget} if self.budget != 1.0 else {}),
            **({"cell": {k: jsonable(v) for k, v in self.cell.items()}} if self.cell else {}),
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
    margins: Mapping[str, Any] = field(default_factory=dict)  # declared margins, as plan.json holds them

    def plan(self, study: str) -> StudyPlan:
        return next(p for p in self.studies if p.study == study)

    def children(self, plan: StudyPlan) -> tuple[StudyPlan, ...]:
        """The plans whose runs branch from ``plan``'s checkpoints."""
        return tuple(p for p in self.studies if p.branch_from == plan.study)

    @property
    def planned_runs(self) -> int:
        return sum(p.planned_runs for p in self.studies)
