"""Conditions and axes of a sweep file: how every run of a task entry trains besides its optimizer and
hyperparameters, and the cells an entry is split into.

Keys (at sweep level, and at task-entry level where an entry's value replaces the sweep's; ``axes``
and ``schedule`` merge key by key, the entry's winning):

* ``schedule``: an LR schedule over the task's own (``harness.run.schedules``: ``kind``,
  ``warmup_steps``, ``min_lr_ratio``, ``decay_fraction``, ``decay_shape``), e.g. ``{kind: wsd,
  decay_fraction: 0.2}``. Keys not given keep the task's.
* ``delay``: gradients reach the optimizer this many steps late (``harness.run.delay``); a list
  (``delay: [0, 1]``) is the axis ``delay``.
* ``axes``: ``{name: [v1, v2, ...]}``; every combination of values is a *cell* with its own
  studies, tuned like any other (its own trials, same budget). A name is a condition
  (``harness.vocab.CONDITION_AXES``: ``delay`` and the schedule keys, ``schedule`` taking a kind) that
  changes how every optimizer trains, or a hyperparameter, fixed at the value on the optimizers that
  have it (removed from their search space) and absent from the others' cells. A branching optimizer
  (SoftX) that takes a hyperparameter from its parent (X) follows the parent's cell for it.
* ``reuse_tuning: true``: only the first cell (the first value of every axis) is tuned; every other
  cell evaluates that cell's best configuration, with its own axis values (``transfer_from``).
* ``budgets: [0.25, 0.5, 1.0]`` (fractions of the step budget, needs ``schedule.kind: wsd``): per eval
  run, the full run once, and a decay branch per shorter budget starting from the full run's
  checkpoint where that budget's decay starts (``harness.run.lineage.branch_step``). Tuning targets
  the full budget; ``budget_tuning: every`` tunes each budget on its own instead (each trial a run of
  that budget from scratch: the tuning cost grows by the sum of the budgets, and no eval run branches).
* ``margin``: the practical margin of the leaderboard's verdicts (``0.005`` absolute, ``"1%"``
  relative); at entry level also ``{dataset: margin}``. Written to ``plan.json``.

Study names: ``.../<optimizer>[/r<k>][/<k1>=<v1>,<k2>=<v2>][/budget=<b>]``; a delay of 0 is left out of
the name (so adding ``delay: [0, 1]`` to a sweep keeps its delay-0 studies), never out of the
record's ``cell`` column.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.sweep.yamlfile import _Checker, _where
from harness.vocab import CONDITION_AXES, SCHEDULE_AXES

KEYS: dict[str, str] = {
    "schedule": "LR schedule over the task's: {kind: constant|cosine|linear|wsd, warmup_steps, min_lr_ratio, "
    "decay_fraction, decay_shape: linear|sqrt} (wsd: warmup, constant peak, decay over the last "
    "decay_fraction of the steps; Hägele et al. 2024)",
    "delay": "gradient delay in steps (0: none; 1: the one-step delayed setting), or a list: the axis 'delay'",
    "axes": "{name: [values]}: one cell per combination, each with its own studies. A name is a condition "
    "(delay, schedule, warmup_steps, decay_fraction, decay_shape, min_lr_ratio) or a hyperparameter, "
    "fixed on the optimizers that have it",
    "reuse_tuning": "true: tune only the first cell (first value of every axis); the others evaluate its best "
    "configuration (default false: every cell tuned with the same budget)",
    "budgets": "fractions of the step budget, e.g. [0.25, 0.5, 1.0] (needs schedule kind wsd): per eval run, "
    "a decay branch per budget from the full run's stable phase",
    "budget_tuning": "full (default: tune at the full budget, budgets branch) or every (tune each budget on "
    "its own, runs from scratch: tuning costs the sum of the budgets)",
    "margin": "practical margin of the leaderboard's verdicts: 0.005 (absolute) or '1%' (relative); per entry "
    "also {dataset: margin}",
}
SCHEDULE_FIELDS = ("kind", "warmup_steps", "min_lr_ratio", "decay_fraction", "decay_shape")
BUDGET_TUNING = ("full", "every")


@dataclass(frozen=True)
class Conditions:
    """The condition keys of one level (sweep, or an entry over the sweep's)."""

    schedule: Mapping[str, Any] = field(default_factory=dict)
    delay: int = 0
    axes: tuple[tuple[str, tuple], ...] = ()
    reuse_tuning: bool = False
    budgets: tuple[float, ...] = ()
    budget_tuning: str = "full"
    margin: Any = None  # None, a Margin, or {dataset: Margin} (entry level)
    axis_paths: Mapping[str, tuple] = field(default_factory=dict)  # axis -> where it was declared

    def cells(self) -> list[dict[str, Any]]:
        """Every combination of axis values, in file order (the first: every axis at its first value)."""
        if not self.axes:
            return [{}]
        names = [name for name, _ in self.axes]
        return [dict(zip(names, combo)) for combo in itertools.product(*(values for _, values in self.axes))]


def read(chk: _Checker, data: Mapping[str, Any], path: tuple, base: Conditions | None = None) -> Conditions:
    """The condition keys of ``data`` (a sweep, or a task entry at ``path`` over ``base``)."""
    base = base or Conditions()
    schedule = dict(base.schedule)
    if "schedule" in data:
        schedule.update(_schedule(chk, data["schedule"], path + ("schedule",)))
    axes = dict(base.axes)
    axis_paths = dict(base.axis_paths)
    if "axes" in data:
        value = data["axes"]
        if not isinstance(value, Mapping) or not value:
            raise chk.error(
                path + ("axes",),
                f"'{_where(path + ('axes',))}' must map axis names to lists of values, e.g. {{alpha_sign: [0.3, 0.5]}}",
            )
        for name, values in value.items():
            axes[str(name)] = _axis_values(chk, str(name), values, path + ("axes", name))
            axis_paths[str(name)] = path + ("axes", name)
    delay = base.delay
    if "delay" in data:
        value = data["delay"]
        if isinstance(value, list):
            if "delay" in (data.get("axes") or {}):
                raise chk.error(
                    path + ("delay",),
                    f"'{_where(path + ('delay',))}': the delay is given twice (also in 'axes'); keep one",
                )
            axes["delay"] = _axis_values(chk, "delay", value, path + ("delay",))
            axis_paths["delay"] = path + ("delay",)
            delay = 0
        else:
            delay = chk.integer(value, path + ("delay",), 0)
            axes.pop("delay", None)
    if "delay" in axes and delay:
        raise chk.error(path + ("delay",), "a scalar 'delay' and a 'delay' axis cannot both apply; keep one")
    reuse = base.reuse_tuning
    if "reuse_tuning" in data:
        reuse = data["reuse_tuning"]
        if not isinstance(reuse, bool):
            raise chk.error(path + ("reuse_tuning",), f"'{_where(path + ('reuse_tuning',))}' must be true or false")
    budgets = base.budgets
    if "budgets" in data:
        budgets = _budgets(chk, data["budgets"], path + ("budgets",))
    budget_tuning = base.budget_tuning
    if "budget_tuning" in data:
        budget_tuning = data["budget_tuning"]
        if budget_tuning not in BUDGET_TUNING:
            raise chk.error(
                path + ("budget_tuning",), f"unknown budget_tuning {budget_tuning!r}; known: {', '.join(BUDGET_TUNING)}"
            )
    margin = base.margin
    if "margin" in data:
        margin = _margin(chk, data["margin"], path + ("margin",), per_dataset=bool(path))
    out = Conditions(
        schedule=schedule,
        delay=delay,
        axes=tuple(axes.items()),
        reuse_tuning=reuse,
        budgets=budgets,
        budget_tuning=budget_tuning,
        margin=margin,
        axis_paths=axis_paths,
    )
    if out.budgets and path:  # checked on each entry: its schedule may be its own
        kinds = {cell_schedule(schedule, cell).get("kind") for cell in out.cells()}
        if kinds != {"wsd"}:
            where = path + ("budgets",) if "budgets" in data else ("budgets",)
            raise chk.error(
                where,
                f"'{_where(where)}' branches each budget from the stable phase of a wsd schedule; "
                f"set schedule: {{kind: wsd, decay_fraction: 0.2}} (schedule here: "
                f"{', '.join(sorted(str(k or 'the task' + chr(39) + 's own') for k in kinds))})",
            )
    return out


def _schedule(chk: _Checker, value: Any, path: tuple) -> dict[str, Any]:
    """A ``schedule`` mapping: known keys, each value of the right kind (the whole schedule, over the
    task's, is checked when each plan is resolved, with the entry's line)."""
    from harness.run.schedules import DECAY_SHAPES, KINDS

    if isinstance(value, str):
        value = {"kind": value}
    chk.keys(value, path, {k: k for k in SCHEDULE_FIELDS}, f"'{_where(path)}'")
    out = dict(value)
    for key, item in out.items():
        _schedule_value(chk, key, item, path + (key,), KINDS, DECAY_SHAPES)
    return out


def _schedule_value(
    chk: _Checker, key: str, value: Any, path: tuple, kinds: Sequence[str], shapes: Sequence[str]
) -> None:
    if key == "kind" and value not in kinds:
        raise chk.error(path, f"unknown schedule {value!r} at '{_where(path)}'; known: {', '.join(kinds)}")
    if key == "decay_shape" and value not in shapes:
        raise chk.error(
            path,
            f"unknown decay_shape {value!r} at '{_where(path)}'; known: {', '.join(shapes)} "
            "(sqrt: the 1-sqrt cooldown of Hägele et al. 2024)",
        )
    if key == "warmup_steps":
        chk.integer(value, path, 0)
    if key in ("min_lr_ratio", "decay_fraction"):
        number = chk.number(value, path)
        low_ok = number >= 0 if key == "min_lr_ratio" else number > 0
        if not (low_ok and number <= 1):
            bounds = "[0, 1]" if key == "min_lr_ratio" else "(0, 1]"
            raise chk.error(path, f"'{_where(path)}' must lie in {bounds}, got {value!r}")


def _axis_values(chk: _Checker, name: str, values: Any, path: tuple) -> tuple:
    from harness.run.schedules import DECAY_SHAPES, KINDS

    if not isinstance(values, list) or not values:
        raise chk.error(path, f"axis '{name}' at '{_where(path)}' must be a non-empty list of values")
    out = []
    for i, value in enumerate(values):
        if isinstance(value, (Mapping, list)):
            raise chk.error(
                path + (i,), f"'{_where(path + (i,))}': an axis value is a number, text or true/false, got {value!r}"
            )
        if name == "delay":
            value = chk.integer(value, path + (i,), 0)
        elif name == "schedule":
            _schedule_value(chk, "kind", value, path + (i,), KINDS, DECAY_SHAPES)
        elif name in SCHEDULE_AXES:
            _schedule_value(chk, name, value, path + (i,), KINDS, DECAY_SHAPES)
        if value in out:
            raise chk.error(path, f"axis '{name}' at '{_where(path)}' repeats the value {value!r}")
        out.append(value)
    return tuple(out)


def _budgets(chk: _Checker, value: Any, path: tuple) -> tuple[float, ...]:
    items = chk.name_list(value, path, "budgets")
    out: list[float] = []
    for i, item in enumerate(items):
        number = chk.number(item, path + (i,))
        if not 0 < number <= 1:
            raise chk.error(
                path + (i,), f"'{_where(path + (i,))}' must be a fraction of the step budget in (0, 1], got {item!r}"
            )
        if number in out:
            raise chk.error(path, f"'{_where(path)}' repeats the budget {item!r}")
        out.append(float(number))
    if not any(b < 1 for b in out):
        raise chk.error(path, f"'{_where(path)}' needs a budget below 1.0 (the full budget always runs)")
    return tuple(sorted(out))


def _margin(chk: _Checker, value: Any, path: tuple, per_dataset: bool) -> Any:
    from harness.stats.verdicts import MARGIN_KINDS, parse_margin

    if per_dataset and isinstance(value, Mapping) and not (len(value) == 1 and next(iter(value)) in MARGIN_KINDS):
        return {str(ds): _margin(chk, m, path + (ds,), per_dataset=False) for ds, m in value.items()}
    try:
        return parse_margin(value)
    except ValueError as exc:
        raise chk.error(path, f"'{_where(path)}': {exc}") from None


# ------------------------------------------------------------------------------------------- cells


def applies(axis: str, optimizer: str, specs: Mapping[str, Any], branches: Mapping[str, str]) -> bool:
    """Whether ``axis`` splits ``optimizer``'s studies: a condition always; a hyperparameter when the
    optimizer has it, or when it branches from a parent that has it (it follows the parent's cell)."""
    if axis in CONDITION_AXES:
        return True
    if axis in specs[optimizer].defaults:
        return True
    parent = branches.get(optimizer)
    return parent is not None and axis in specs[parent].defaults


def sets(axis: str, optimizer: str, specs: Mapping[str, Any], shared: Sequence[str]) -> bool:
    """Whether a hyperparameter axis is fixed on ``optimizer`` itself (not taken from its parent)."""
    return axis not in CONDITION_AXES and axis in specs[optimizer].defaults and axis not in shared


def check_axis_names(
    chk: _Checker, cond: Conditions, optimizers: Sequence[str], specs: Mapping[str, Any], entry_path: tuple
) -> None:
    """Every axis is a condition or a hyperparameter of at least one of the entry's optimizers."""
    for name, _ in cond.axes:
        if name in CONDITION_AXES or any(name in specs[o].defaults for o in optimizers):
            continue
        hps = sorted({hp for o in optimizers for hp in specs[o].defaults})
        where = cond.axis_paths.get(name, entry_path)
        raise chk.error(
            where,
            f"unknown axis '{name}' at '{_where(where)}': not a condition "
            f"({', '.join(CONDITION_AXES)}) nor a hyperparameter of this entry's optimizers "
            f"({', '.join(optimizers)}: {', '.join(hps)})",
        )


def cell_schedule(base: Mapping[str, Any], cell: Mapping[str, Any]) -> dict[str, Any]:
    """The schedule override of a cell: the entry's, with the cell's schedule axes over it. With a
    ``schedule`` axis, the entry's wsd-only keys apply to its wsd cells only."""
    out = dict(base)
    for key in SCHEDULE_AXES:
        if key in cell:
            out["kind" if key == "schedule" else key] = cell[key]
    if "schedule" in cell and cell["schedule"] != "wsd":
        # the entry's wsd keys (decay_fraction, decay_shape) describe its wsd cells, not this one
        for key in ("decay_fraction", "decay_shape"):
            if key not in cell:
                out.pop(key, None)
    return out
