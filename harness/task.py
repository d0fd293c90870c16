"""What a task is: a typed, frozen record per task family (``TaskSpec``), and what it builds for one
run (``Task``, a frozen record of builders and numbers). Plain data, not a class tower.

A task module ``tasks/<name>.py`` exports one ``TASK = TaskSpec(...)``: its name, sizes, datasets
(``Dataset`` records, parametric families such as ``path:<file>`` included), typed options (``Option``
records, checked by the one validator here), metrics with their directions, and three steps:

  locate(request, data_dir) -> key   the files are there (or are downloaded when allowed), else a
                                     UserError naming the file to fetch; returns what to load (hashable)
  load(key) -> data                  read and preprocess; cached once per process (one cache for
                                     every task: ``load_data``, ``harness/data_cache.py``)
  build(request, data) -> Task       cheap and pure: model builder, data stream, loss, metric, budget

``TaskSpec.make(size, dataset, data_dir, **options)`` runs them in that order after checking the
request (``TaskSpec.request``: sizes, dataset names, options; no file is touched). The loaders
themselves live in ``tasks/data/`` (images, text, tokens, graphs, tables), shared between tasks.

This module declares; what a task uses at run time lives one floor down and is part of this module's
public names (``__all__``), where plugin authors import it: the data cache (``harness/data_cache.py``)
and the batch-index and parameter-role helpers (``harness/task_tools.py``).
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn

from harness import paths
from harness.data_cache import clear_data_cache, load_data
from harness.errors import UserError, unknown
from harness.task_tools import check_roles, device_generator, epoch_indices, roles_by_module
from harness.vocab import ROLES, SIZES, Metric

__all__ = [
    "SIZES",
    "ROLES",
    "Metric",
    "Task",
    "TaskData",
    "TaskSpec",
    "TaskRequest",
    "Option",
    "Dataset",
    "TinyRun",
    # defined one floor down (harness/data_cache.py, harness/task_tools.py), imported from here by tasks
    "load_data",
    "clear_data_cache",
    "device_generator",
    "epoch_indices",
    "check_roles",
    "roles_by_module",
    "is_lr_key",
]


class TaskData(Protocol):
    """Data for one task, built once per run on the run's device.

    ``batches`` is an endless stream of training batches whose order (and any augmentation) is
    drawn only from ``generator``; under DDP each rank gets its own shard.
    """

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[Any]: ...

    # A stream may also take ``start=k`` (skip k batches by replaying their random draws only): the
    # loop then resumes a checkpointed run cheaply; without it the loop draws and drops k batches.


@dataclass(frozen=True)
class Task:
    """One benchmark workload at one size on one dataset.

    Builders:
      make_model(generator) -> nn.Module           init drawn only from ``generator``
      make_data(device) -> TaskData                deterministic (splits fixed by the task's data seed)
      loss(model, batch) -> scalar Tensor          training loss of one batch
      evaluate(model, data, split) -> dict         split in {"val", "test"}; contains ``metric.name``
                                                   and "loss"; called under no_grad with model.eval()
      roles(model) -> {role: [params]}             every trainable parameter exactly once
    Numbers: default step budget, eval cadence, LR schedule shape shared by every optimizer,
    gradient clipping, the value Optuna is told for a diverged run (``penalty``) and an optional
    ``target`` for steps-to-target.
    """

    name: str
    dataset: str
    size: str
    metric: Metric
    steps: int
    eval_every: int
    make_model: Callable[[torch.Generator], nn.Module]
    make_data: Callable[[torch.device], TaskData]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    evaluate: Callable[[nn.Module, TaskData, str], dict[str, float]]
    roles: Callable[[nn.Module], dict[str, list[nn.Parameter]]]
    penalty: float
    target: float | None = None
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    batch_size: int | None = None
    grad_accum: int = 1  # micro-batches per optimizer step: the loop splits each batch along dim 0
    options: Mapping[str, Any] = field(default_factory=dict)  # resolved task options, for the record
    description: str = ""

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")
        if self.steps < 1 or self.eval_every < 1 or self.grad_accum < 1:
            raise ValueError("steps, eval_every and grad_accum must be >= 1")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; known: constant, cosine, linear")


# --------------------------------------------------------------------------------------------------
# The task record: options, datasets, the tiny-run rule, and the spec itself


@dataclass(frozen=True)
class Option:
    """One task option (``--set task.<name>=value``, a sweep entry's ``options:``).

    ``type``: ``int``, ``float``, ``bool``, ``str``, or a tuple of them (the value must be one).
    ``default``: the value when the option is not given. ``None`` means "none" unless ``auto`` says
    who picks it (e.g. ``auto="size"``): the task fills it in when it resolves the request, and the
    run record holds the resolved value. ``choices``, ``minimum`` and ``below`` (an exclusive upper
    bound) constrain the value; cross-option rules (hidden a multiple of heads) are the task's.
    """

    name: str
    type: type | tuple[type, ...]
    default: Any = None
    description: str = ""
    auto: str = ""
    choices: tuple = ()
    minimum: float | None = None
    below: float | None = None

    @property
    def types(self) -> tuple[builtins.type, ...]:  # the builtin: ``type`` here is the field above
        return self.type if isinstance(self.type, tuple) else (self.type,)

    def requirement(self) -> str:
        """What a valid value is, in words (the tail of every error message)."""
        types = self.types
        if self.choices:
            return "be one of " + ", ".join(map(str, self.choices))
        if types == (bool,):
            return "be true or false"
        if types == (str,):
            return "be non-empty text"
        if len(types) > 1:
            return "be " + " or ".join(
                {int: "an integer", float: "a number", str: "text", bool: "true/false"}[t] for t in types
            )
        noun = "an integer" if types == (int,) else "a number"
        if self.minimum is not None and self.below is not None:
            return f"lie in [{self.minimum:g}, {self.below:g})"
        if self.minimum is not None:
            return f"be {noun} >= {self.minimum:g}"
        return f"be {noun}"

    def shown_default(self) -> str:
        if self.default is None:
            return f"chosen by {self.auto}" if self.auto else "none"
        return repr(self.default)

    def check(self, value: Any, task: str) -> Any:
        """``value`` coerced to the option's type and validated; ``UserError`` naming the option, the
        task and what would be valid. Strings from the command line are coerced ("3" -> 3, "1e6" ->
        1000000 for an integer, "true" -> True); integral floats pass as integers."""
        if value is None and "none" in self.choices:
            value = "none"  # `--set task.X=none` reads as None; here "none" is one of the choices
        if value is None and self.default is None:
            return None
        coerced = self._coerce(value)
        if coerced is _INVALID:
            raise UserError(f"invalid option {self.name}={value!r} for task {task} (must {self.requirement()})")
        if self.choices and coerced not in self.choices:
            raise unknown(self.name, coerced, self.choices)
        number = isinstance(coerced, (int, float)) and not isinstance(coerced, bool)
        if number and (
            (self.minimum is not None and coerced < self.minimum) or (self.below is not None and coerced >= self.below)
        ):
            raise UserError(f"invalid option {self.name}={value!r} for task {task} (must {self.requirement()})")
        return coerced

    def _coerce(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value if bool in self.types else _INVALID
        for kind in self.types:
            if isinstance(value, kind) and not (kind is str and not value):
                if kind is float and isinstance(value, float):  # (kind is float implies the isinstance)
                    return float(value) if math.isfinite(value) else _INVALID  # inf / nan are never a setting
                return value
        for kind in self.types:
            converted = _convert(value, kind)
            if converted is not _INVALID:
                return converted
        return _INVALID


_INVALID = object()


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` when that is lossless (text from the command line, 3.0 for an int)."""
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return _INVALID
    if kind is str:
        return _INVALID  # numbers are not silently turned into names
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return _INVALID
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return _INVALID
    if kind is float:
        return float(value)
    return int(value) if float(value).is_integer() else _INVALID


@dataclass(frozen=True)
class Dataset:
    """A dataset a task accepts, as ``optbench list --task`` shows it.

    ``name`` is a dataset name, or a parametric family written with a placeholder
    (``path:<file>``, ``nli:<split>[,<split>...]``): any name starting with the part before ``<``
    belongs to it, and the task's own parser checks the rest. ``offline``: usable without network
    (generated, bundled with a library, or the user's own file). ``fetch``: where a download comes
    from and goes to. ``metric``: the metric under the default options when it is not the task's
    first one (GraphLand regression sets report R2, OpenML regressions RMSE).
    """

    name: str
    about: str
    offline: bool = False
    fetch: str = ""
    metric: Metric | None = None

    @property
    def family(self) -> str | None:
        """``"path:"`` for ``path:<file>``; None for a plain name."""
        return self.name.split("<", 1)[0] if "<" in self.name else None

    def matches(self, name: str) -> bool:
        return name.startswith(self.family) if self.family is not None else name == self.name


_LR_KEY = re.compile(r"(?:.*_)?lr(?:_.*)?")


def is_lr_key(name: str) -> bool:
    """A learning-rate hyperparameter by name: ``lr``, ``aux_lr``, ``sgd_lr``, ``lr_head`` ..."""
    return bool(_LR_KEY.fullmatch(name))


@dataclass(frozen=True)
class TinyRun:
    """How this task's ``tiny`` size trains with *any* optimizer in a few steps (the contract tests;
    a new optimizer needs no edits there). Every learning-rate hyperparameter (``is_lr_key``) with a
    positive search range is set ``lr_position`` of the way up that range on a log scale (0: the low
    end, 1: the high end): the defaults are tuned for full-size runs and barely move a tiny model in
    20 steps, while the search ranges say, per optimizer, what a sensible step size is. The run
    passes when the mean training loss of the last ``window`` steps lies ``min_drop`` below that of
    the first ``window`` steps."""

    steps: int = 20
    lr_position: float = 0.9
    window: int = 3
    min_drop: float = 0.05
    dataset: str | None = None  # None: the task's tiny default

    def hparams(self, defaults: Mapping[str, Any], search_space: Mapping[str, Any]) -> dict[str, Any]:
        """The learning rates to set for an optimizer with these ``defaults`` and ``search_space``
        (distributions with ``low``/``high``); other hyperparameters keep their defaults."""
        out = {}
        for key in defaults:
            dist = search_space.get(key)
            low, high = getattr(dist, "low", None), getattr(dist, "high", None)
            if is_lr_key(key) and isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low <= high:
                out[key] = math.exp((1 - self.lr_position) * math.log(low) + self.lr_position * math.log(high))
        return out


@dataclass(frozen=True)
class TaskRequest:
    """One checked request: size, dataset (a concrete name) and the options with every default
    resolved. ``dataset_given`` is False when the dataset is the size's default (the llm task then
    follows the chosen model's own corpus)."""

    task: str
    size: str
    dataset: str
    options: Mapping[str, Any]
    dataset_given: bool = True

    def with_options(self, **changes: Any) -> TaskRequest:
        return replace(self, options={**self.options, **changes})


@dataclass(frozen=True, eq=False)
class TaskSpec:
    """A task family as one typed record (see the module docstring for the three steps).

    ``resolve(request) -> request`` (optional, pure) fills the options left to size / dataset
    (``Option.auto``), checks rules between options and parses parametric dataset names.
    ``groups`` names sets of datasets run together (``gnn_graphland``'s ``graphland7``): asking for
    one as a dataset is an error that lists its members.
    """

    name: str
    description: str
    datasets: tuple[Dataset, ...]
    default_dataset: Mapping[str, str]
    options: tuple[Option, ...]
    metrics: tuple[Metric, ...]
    locate: Callable[[TaskRequest, Path], Hashable]
    load: Callable[[Any], Any]
    build: Callable[[TaskRequest, Any], Task]
    tiny: TinyRun = TinyRun()
    resolve: Callable[[TaskRequest], TaskRequest] | None = None
    sizes: tuple[str, ...] = SIZES
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [o.name for o in self.options]
        problems = [f"sizes {self.sizes} not within {SIZES}"] if not set(self.sizes) <= set(SIZES) else []
        problems += [f"option {n!r} declared twice" for n in sorted({n for n in names if names.count(n) > 1})]
        problems += [f"no default dataset for size {s!r}" for s in self.sizes if s not in self.default_dataset]
        problems += [
            f"default dataset {d!r} is not declared"
            for d in self.default_dataset.values()
            if self.find_dataset(d) is None
        ]
        problems += ["no metric declared"] if not self.metrics else []
        problems += [
            f"dataset {d.name!r} reports {d.metric}, not among the task's metrics"
            for d in self.datasets
            if d.metric is not None and d.metric not in self.metrics
        ]
        if problems:
            raise ValueError(f"task {self.name!r}: " + "; ".join(problems))

    # --- lookups ---------------------------------------------------------------------------------

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise self._unknown_options([name])

    def find_dataset(self, name: str) -> Dataset | None:
        """The record for ``name``: its own entry, or the parametric family it belongs to."""
        if not isinstance(name, str):
            return None
        exact = [d for d in self.datasets if d.family is None and d.name == name]
        return next(iter(exact or [d for d in self.datasets if d.matches(name)]), None)

    def metric_for(self, dataset: str) -> Metric:
        """The metric ``dataset`` reports under the default options."""
        found = self.find_dataset(dataset)
        return found.metric if found is not None and found.metric is not None else self.metrics[0]

    # --- the one validator -------------------------------------------------------------------------

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Every declared option, given values checked and coerced (``Option.check``), others at
        their defaults; unknown names raise ``UserError`` listing the valid ones."""
        bad = sorted(set(options) - {o.name for o in self.options})
        if bad:
            raise self._unknown_options(bad)
        return {o.name: o.check(options[o.name], self.name) if o.name in options else o.default for o in self.options}

    def _unknown_options(self, bad: list[str]) -> UserError:
        known = ", ".join(sorted(o.name for o in self.options)) or "(none)"
        return UserError(f"unknown option(s) {', '.join(map(repr, bad))} for task {self.name}; known: {known}")

    def request(self, size: str = "tiny", dataset: str | None = None, **options: Any) -> TaskRequest:
        """Check a request without touching any file: the size, the dataset name (the size's default
        when None), every option; then the task's own ``resolve``. Raises ``UserError``."""
        if size not in self.sizes:
            raise unknown("size", size, self.sizes)
        given = dataset is not None
        dataset = self.default_dataset[size] if dataset is None else dataset
        if isinstance(dataset, str) and dataset in self.groups:
            raise UserError(
                f"{dataset!r} is a group of datasets, not one; run each of: {', '.join(self.groups[dataset])}"
            )
        if self.find_dataset(dataset) is None:
            raise unknown("dataset", dataset, [d.name for d in self.datasets])
        request = TaskRequest(self.name, size, dataset, self.check_options(options), given)
        return self.resolve(request) if self.resolve is not None else request

    def make(
        self, size: str = "tiny", dataset: str | None = None, data_dir: str | Path | None = None, **options: Any
    ) -> Task:
        """Check the request, locate the data (downloading when allowed), load it (cached per
        process) and build the ``Task``. Raises ``UserError`` for bad input and missing files."""
        request = self.request(size, dataset, **options)
        key = self.locate(request, paths.data_dir(data_dir))
        return self.build(request, load_data(self.load, key))
