"""Learning-rate schedules as data: a frozen ``Schedule`` record, the per-step multiplier
``lr_factor``, and the budget-branch arithmetic of warmup-stable-decay (WSD) schedules.

Torch-free and pure (numbers in, numbers out), so sweep-file checks and reports can use it.

Conventions (every kind; those of the training loop's schedule since its first version):

* Steps are 0-based: a run of ``total`` steps takes steps ``0 .. total - 1``; the factor multiplies
  the base LR of every parameter group at that step.
* Warmup: linear over ``warmup_steps`` *absolute* steps, ``(step + 1) / warmup_steps`` (from
  ``1 / W`` at step 0 to 1 at step ``W - 1``). ``warmup_steps = 0``: no warmup.
* ``constant``: 1 after the warmup.
* ``cosine`` / ``linear``: from 1 at step ``W`` to ``min_lr_ratio`` at the last step ``total - 1``:
  progress ``p = (step - W) / max(1, total - W - 1)`` (capped at 1); shape ``(1 + cos(pi p)) / 2`` or
  ``1 - p``; factor ``min_lr_ratio + (1 - min_lr_ratio) * shape``. For these kinds ``lr_factor``
  returns exactly (bit for bit) the floats of the loop's original ``lr_factor(step, total, warmup,
  kind, min_ratio)``, so runs that do not use WSD do not change.
* ``wsd`` (warmup-stable-decay, "constant LR + cooldown": Hägele et al. 2024, "Scaling Laws and
  Compute-Optimal Training Beyond Fixed Training Durations", NeurIPS, arXiv:2405.18392): the warmup,
  then the peak (factor 1) until the decay starts at step ``D(T)``, then a decay from 1 at step
  ``D(T)`` to ``min_lr_ratio`` at the last step ``T - 1``, with progress
  ``p = (step - D) / max(1, T - D - 1)`` (the cosine/linear convention above with ``D`` in place of
  ``W``), where

      L(T) = max(1, floor(decay_fraction * T + 0.5))   decay steps (rounded half up)
      D(T) = T - L(T)                                   first decay step

  Shapes: ``linear``: ``1 - p``; ``sqrt``: the "1-sqrt" cooldown of Hägele et al. 2024 (section 3;
  ``decay_type="sqrt"`` in their code, github.com/epfml/schedules-and-scaling):
  ``min + (1 - min) * (1 - sqrt(p))``. A wsd run with ``D(T) = W`` is the ``linear`` schedule with
  warmup ``W``, bit for bit. Their code holds the peak at the first decay step too but reaches the
  final factor only after the last step; here the last step trains at ``min_lr_ratio``, as the
  loop's cosine and linear always did. A wsd schedule needs ``L(T) >= 2`` (with one decay step that
  step would train at the peak: no decay) and ``D(T) >= W`` (the decay may not start inside the
  warmup); ``decay_start`` / ``lr_factor`` raise ``ScheduleError`` otherwise.

Budget branches (issue 21). A budget is a fraction ``b`` of the full step budget ``K``; its run has
``T = budget_steps(K, b) = max(1, floor(b K + 0.5))`` steps. Because the warmup is in absolute steps
and the stable phase is at the peak, every wsd run of the same ``Schedule`` has the same factor at
every step before its decay, whatever its length; and ``D(T)`` never decreases as ``T`` grows (``L``
grows by at most one step when ``T`` grows by one, since ``decay_fraction <= 1``), so for ``T <= K``
the full run's steps ``< D(T)`` are warmup or stable steps too. A run of ``T`` steps that starts
from the full run's checkpoint after ``D(T)`` steps and takes steps ``D(T) .. T - 1`` with
``lr_factor(step, T, schedule)`` therefore applies the factors of a from-scratch run of ``T`` steps
at every step (``branch_points`` lists the pairs and checks the conditions).

On the run path: a run trains with its task's schedule (``task_schedule``: ``Task.schedule``, warmup
``round(warmup_fraction K)``, ``min_lr_ratio``) unless its ``RunSpec.schedule`` overrides it: the keys
given over the task's (``resolve_override``), stored complete, ``{}`` when equal to the task's
(``canonical_override``). A budget run (``RunSpec.budget`` b < 1) takes ``T = budget_steps(K, b)``
steps with ``lr_factor(step, T, schedule)``; the warmup stays the full budget's. Branching a budget
run from the full run's checkpoint after ``D(T)`` steps: ``harness.run.lineage``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from harness.errors import UserError

KINDS = ("constant", "cosine", "linear", "wsd")
DECAY_SHAPES = ("linear", "sqrt")
WSD_ONLY = ("decay_fraction", "decay_shape")
FIELDS = ("kind", "warmup_steps", "min_lr_ratio", "decay_fraction", "decay_shape")


class ScheduleError(UserError, ValueError):
    """An impossible schedule or budget: a ``UserError`` (the CLI exits 2 with the message) that is
    also a ``ValueError`` (what pure callers and ``Task`` validation expect)."""


def _round_half_up(x: float) -> int:
    """``floor(x + 0.5)``: 2.5 -> 3 (Python's ``round`` would give 2); the rounding of budget and
    decay lengths here."""
    return int(math.floor(x + 0.5))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Schedule:
    """The LR schedule of a run (see the module docstring for the formulas).

    ``kind``: constant, cosine, linear or wsd. ``warmup_steps``: linear warmup length in absolute
    steps (0: none). ``min_lr_ratio``: the factor at the last step, in [0, 1]. wsd only:
    ``decay_fraction`` in (0, 1] (required: the decay covers ``round(decay_fraction * T)`` of a run's
    ``T`` steps; Hägele et al.'s README example uses 0.2) and ``decay_shape`` ``linear`` (default)
    or ``sqrt`` (1-sqrt). Other kinds take neither.
    """

    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    decay_fraction: float | None = None
    decay_shape: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ScheduleError(f"unknown schedule {self.kind!r}; known: {', '.join(KINDS)}")
        if not _is_int(self.warmup_steps) or self.warmup_steps < 0:
            raise ScheduleError(f"warmup_steps must be an integer >= 0 (absolute steps), got {self.warmup_steps!r}")
        if not _is_real(self.min_lr_ratio) or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ScheduleError(f"min_lr_ratio must be a number in [0, 1], got {self.min_lr_ratio!r}")
        object.__setattr__(self, "min_lr_ratio", float(self.min_lr_ratio))
        if self.kind != "wsd":
            given = [k for k in WSD_ONLY if getattr(self, k) is not None]
            if given:
                raise ScheduleError(
                    f"{' and '.join(given)} apply to schedule wsd only, not {self.kind!r} "
                    f"(known schedules: {', '.join(KINDS)})"
                )
            return
        f = self.decay_fraction
        if f is None:
            raise ScheduleError(
                "schedule wsd needs decay_fraction, the fraction of each run's steps its decay takes, "
                "in (0, 1] (e.g. 0.2, Hägele et al. 2024)"
            )
        if not _is_real(f) or not 0.0 < f <= 1.0:
            raise ScheduleError(f"decay_fraction must be a number in (0, 1], got {f!r}")
        object.__setattr__(self, "decay_fraction", float(f))
        shape = "linear" if self.decay_shape is None else self.decay_shape
        if shape not in DECAY_SHAPES:
            raise ScheduleError(
                f"unknown decay_shape {shape!r}; known: {', '.join(DECAY_SHAPES)} "
                "(sqrt: the 1-sqrt cooldown of Hägele et al. 2024)"
            )
        object.__setattr__(self, "decay_shape", shape)

    @classmethod
    def from_fraction(
        cls, kind: str, warmup_fraction: float, total: int, min_lr_ratio: float = 0.0, **wsd: Any
    ) -> Schedule:
        """The schedule the loop has always derived from a task: warmup ``int(round(warmup_fraction
        * total))`` steps (Python's rounding, as the loop does). For wsd budget branches pass the
        *full* budget ``K`` as ``total``: the warmup must be the same in every branch."""
        if not _is_real(warmup_fraction) or not 0.0 <= warmup_fraction < 1.0:
            raise ScheduleError(f"warmup_fraction must be a number in [0, 1), got {warmup_fraction!r}")
        _check_total(total)
        return cls(kind=kind, warmup_steps=int(round(warmup_fraction * total)), min_lr_ratio=min_lr_ratio, **wsd)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Schedule:
        """A schedule from a mapping (a sweep file's ``schedule:`` block, a record), unknown keys refused."""
        if not isinstance(values, Mapping):
            raise ScheduleError(f"a schedule is a mapping with keys {', '.join(FIELDS)}; got {values!r}")
        extra = sorted(set(map(str, values)) - set(FIELDS))
        if extra:
            raise ScheduleError(f"unknown schedule key(s) {', '.join(extra)}; known: {', '.join(FIELDS)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """The fields, without the wsd-only ones for other kinds (what ``from_mapping`` reads back)."""
        d = asdict(self)
        if self.kind != "wsd":
            for key in WSD_ONLY:
                d.pop(key)
        return d


def task_schedule(task: Any, total_full: int) -> Schedule:
    """The schedule a task declares (``Task.schedule``, ``warmup_fraction``, ``min_lr_ratio``) for a run
    whose full budget is ``total_full`` steps: what a run without a ``schedule`` override trains with."""
    return Schedule.from_fraction(task.schedule, task.warmup_fraction, total_full, task.min_lr_ratio)


def resolve_override(default: Schedule, override: Mapping[str, Any] | None) -> Schedule:
    """``override``'s keys over ``default`` (a task's schedule): ``{"kind": "wsd", "decay_fraction":
    0.2}`` keeps the task's warmup steps and floor, adds the decay. Unknown keys and impossible values
    raise ``ScheduleError`` naming the valid ones."""
    if not override:
        return default
    if not isinstance(override, Mapping):
        raise ScheduleError(f"a schedule is a mapping with keys {', '.join(FIELDS)}; got {override!r}")
    extra = sorted(set(map(str, override)) - set(FIELDS))
    if extra:
        raise ScheduleError(f"unknown schedule key(s) {', '.join(extra)}; known: {', '.join(FIELDS)}")
    merged = default.to_dict()
    if override.get("kind", default.kind) != "wsd":
        for key in WSD_ONLY:
            merged.pop(key, None)
    merged.update(override)
    return Schedule.from_mapping(merged)


def canonical_override(default: Schedule, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a ``RunSpec`` stores as its ``schedule``: the complete schedule ``override`` asks for, or
    ``{}`` when that is the task's own (so asking for the task's schedule by name names the same run)."""
    resolved = resolve_override(default, override)
    return {} if resolved == default else resolved.to_dict()


def _check_total(total: Any) -> None:
    if not _is_int(total) or total < 1:
        raise ScheduleError(f"a run's total steps must be an integer >= 1, got {total!r}")


def decay_steps(total: int, schedule: Schedule) -> int:
    """``L(T) = max(1, floor(decay_fraction * T + 0.5))``: how many of a wsd run's ``total`` steps
    decay (the first of them still at the peak; see the module docstring)."""
    if schedule.kind != "wsd":
        raise ScheduleError(f"decay_steps is defined for schedule wsd, not {schedule.kind!r}")
    _check_total(total)
    assert schedule.decay_fraction is not None  # Schedule.__post_init__ requires it for wsd
    return max(1, _round_half_up(schedule.decay_fraction * total))


def decay_start(total: int, schedule: Schedule) -> int:
    """``D(T) = T - L(T)``: the first decay step of a wsd run of ``total`` steps (0-based), i.e. the
    number of warmup and stable steps before it. Raises ``ScheduleError`` when the decay would be a
    single step or would start inside the warmup."""
    length = decay_steps(total, schedule)
    start = total - length
    if length < 2:
        raise ScheduleError(
            f"a wsd decay over decay_fraction {schedule.decay_fraction:g} of {total} steps is {length} step; it needs at "
            f"least 2 (the first decay step is still at the peak): raise decay_fraction or the steps"
        )
    if start < schedule.warmup_steps:
        raise ScheduleError(
            f"the wsd decay of a {total}-step run (decay_fraction {schedule.decay_fraction:g}: the last {length} steps) "
            f"would start at step {start}, inside the {schedule.warmup_steps}-step warmup: lower decay_fraction or "
            "warmup, or raise the steps"
        )
    return start


def lr_factor(step: int, total: int, schedule: Schedule) -> float:
    """Multiplier of the base LR at 0-based ``step`` of a run of ``total`` steps under ``schedule``.

    Equal, bit for bit, to the loop's original ``lr_factor(step, total, warmup_steps, kind,
    min_lr_ratio)`` for constant, cosine and linear; wsd as in the module docstring."""
    if not 0 <= step < total:
        raise ScheduleError(f"step {step!r} is outside the run's steps 0..{total - 1}")
    warmup, low = schedule.warmup_steps, schedule.min_lr_ratio
    if warmup > 0 and step < warmup:
        if schedule.kind == "wsd":
            decay_start(total, schedule)  # a wsd run whose decay collides with its warmup is refused at every step
        return (step + 1) / warmup
    kind = schedule.kind
    if kind == "constant":
        return 1.0
    if kind == "wsd":
        start = decay_start(total, schedule)
        if step < start:
            return 1.0
    else:
        start = warmup
    span = max(1, total - start - 1)
    progress = min(1.0, (step - start) / span)
    if kind == "cosine":
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif kind == "linear" or schedule.decay_shape == "linear":
        shape = 1.0 - progress
    else:  # wsd, 1-sqrt (Hägele et al. 2024)
        shape = 1.0 - math.sqrt(progress)
    return low + (1.0 - low) * shape


# ----------------------------------------------------------------------------------- budget branches


class BranchPoint(NamedTuple):
    """One budget of a wsd run: its fraction of the full budget, its steps ``T`` and its first
    decay step ``D(T)`` (the step of the full run's checkpoint the branch starts from; 0: it starts
    from scratch)."""

    fraction: float
    steps: int
    decay_start: int


def budget_steps(total_full: int, fraction: float) -> int:
    """``T = max(1, floor(fraction * K + 0.5))``: the steps of budget ``fraction`` of ``K`` steps."""
    _check_total(total_full)
    if not _is_real(fraction) or not 0.0 < fraction <= 1.0:
        raise ScheduleError(f"a budget is a fraction of the task's steps in (0, 1], got {fraction!r}")
    return max(1, _round_half_up(float(fraction) * total_full))


def branch_points(total_full: int, fractions: Iterable[float], schedule: Schedule) -> list[BranchPoint]:
    """The budgets ``fractions`` of a wsd run of ``total_full`` steps, smallest first: each one's
    steps and decay start (see the module docstring). The point with ``steps == total_full`` is the
    full run itself, whose checkpoints after ``decay_start`` steps start the others.

    Raises ``ScheduleError`` for a schedule that is not wsd, no budgets, a budget outside (0, 1],
    two budgets with the same steps, or a budget whose decay is one step or starts inside the
    warmup (naming the budget)."""
    if schedule.kind != "wsd":
        raise ScheduleError(
            f"budgets branch from the stable phase of a wsd schedule; this one is {schedule.kind!r} "
            f"(known schedules: {', '.join(KINDS)})"
        )
    if isinstance(fractions, (str, bytes)) or not isinstance(fractions, Iterable):
        raise ScheduleError(f"budgets are a list of fractions of the task's steps in (0, 1], got {fractions!r}")
    fractions = list(fractions)
    if not fractions:
        raise ScheduleError("budgets: give at least one fraction of the task's steps in (0, 1], e.g. [0.25, 0.5, 1.0]")
    points: list[BranchPoint] = []
    by_steps: dict[int, float] = {}
    for fraction in fractions:
        steps = budget_steps(total_full, fraction)
        if steps in by_steps:
            raise ScheduleError(
                f"budgets {by_steps[steps]!r} and {fraction!r} of {total_full} steps are both {steps} "
                "steps: give distinct budgets"
            )
        by_steps[steps] = fraction
        try:
            start = decay_start(steps, schedule)
        except ScheduleError as exc:
            raise ScheduleError(f"budget {fraction!r} ({steps} of {total_full} steps): {exc}") from None
        points.append(BranchPoint(float(fraction), steps, start))
    points.sort(key=lambda p: p.steps)
    full_start = decay_start(total_full, schedule)
    late = [p for p in points if p.decay_start > full_start]
    if late:  # impossible by the monotonicity argument of the module docstring; checked all the same
        raise ScheduleError(
            f"budget {late[0].fraction!r} would decay from step {late[0].decay_start}, after the full "
            f"run's stable phase ends at step {full_start}"
        )
    return points
