"""The shared vocabulary of optbench, in one torch-free module: task sizes, parameter roles, and
``Metric`` (a metric name with its direction) through which every "is this better" goes.

Torch-free on purpose: sweep-file validation, leaderboards and reports read these names without
paying for ``import torch`` (a test imports this module in a fresh interpreter and checks that).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# Every task has these sizes: tiny (tests, seconds), small (offline demo, CPU minutes), paper (the
# published setup, GPU); see docs/protocol.md#budgets-schedules-and-what-is-measured.
SIZES = ("tiny", "small", "paper")

# Parameter roles a task may declare. Optimizers route by role, never by parameter name.
#   matrix      hidden 2-D weights and conv kernels (Muon-family targets)
#   conv_first  the stem convolution (kept out of Muon, as in the Muon reference)
#   embedding   token / feature embeddings
#   head        the output layer
#   vector      1-D parameters: biases, norm gains (never weight-decayed)
ROLES = ("matrix", "conv_first", "embedding", "head", "vector")

# Sweep axes (``axes:`` in a sweep file; a run record's ``cell`` column holds a run's axis values).
# A *condition* axis changes how every optimizer of a cell trains (the gradient delay, the LR schedule
# and its keys); every other axis is a hyperparameter, set only on the optimizers that have it. A
# leaderboard ranks the optimizers of one condition together, and names a hyperparameter cell as an
# entry of its own: ``softsignum[alpha_sign=0.5]``. ``budget`` is a condition of WSD decay branches
# (``budgets:``), not an axis.
SCHEDULE_AXES = ("schedule", "warmup_steps", "decay_fraction", "decay_shape", "min_lr_ratio")
CONDITION_AXES = ("delay", *SCHEDULE_AXES)
CONDITION_COLUMNS = ("budget", "delay")  # conditions with a column of their own (defaults: 1.0, 0)

DIRECTIONS = ("max", "min")
Direction = Literal["max", "min"]


def as_direction(value: str) -> Direction:
    """``value`` as a metric direction, for a direction read from data (a sweep file, a results
    table) rather than written in code; a ValueError naming both choices otherwise."""
    if value == "max":
        return "max"
    if value == "min":
        return "min"
    raise ValueError(f"metric direction must be 'max' or 'min', got {value!r}")


@dataclass(frozen=True)
class Metric:
    """A metric and its direction, declared once; every comparison goes through it.

    NaN (a diverged or missing value) is never better than anything and never reaches a target.
    """

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric direction must be 'max' or 'min', got {self.direction!r}")

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``; NaN is never better, anything beats NaN."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.direction == "max" else a < b

    def reached(self, value: float, target: float | None) -> bool:
        """True when ``value`` is at least as good as ``target`` (steps-to-target); never for NaN or
        when there is no target."""
        if target is None or math.isnan(value):
            return False
        return value == target or self.better(value, target)

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 otherwise (to turn any metric into 'larger is better')."""
        return 1.0 if self.direction == "max" else -1.0

    @property
    def optuna_direction(self) -> Literal["maximize", "minimize"]:
        """The same direction in Optuna's words: ``maximize`` or ``minimize``."""
        return "maximize" if self.direction == "max" else "minimize"

    def best(self, values: Iterable[float]) -> float:
        """The best of ``values`` (NaN ignored); NaN when there is no number among them."""
        best = math.nan
        for value in values:
            if self.better(float(value), best):
                best = float(value)
        return best
