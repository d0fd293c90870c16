"""Practical margins: how large a difference must be to matter, per benchmark.

A margin is declared in the sweep file (``margin:`` at sweep or task-entry level, or per dataset of
an entry), given on the command line (``optbench leaderboard --margin``), or else the documented
default for the metric (``harness.stats.verdicts.default_margin``: 0.005 absolute for scores in [0, 1],
0.01 nats for losses, 1% relative otherwise). A relative margin is resolved against the mean of the
benchmark's reference optimizer (AdamW when it ran, else the best mean), so every comparison on one
benchmark uses the same margin in metric units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.stats import verdicts
from harness.stats.verdicts import Margin
from harness.vocab import Metric


@dataclass(frozen=True)
class MarginPolicy:
    """Declared margins: per (task, dataset), per task, or for everything (``everywhere``); what is
    not declared falls back to the metric's default. ``source`` names where they were declared."""

    per_benchmark: Mapping[tuple[str, str], Margin] = field(default_factory=dict)
    per_task: Mapping[str, Margin] = field(default_factory=dict)
    everywhere: Margin | None = None
    source: str = ""

    def declared(self, task: str, dataset: str) -> Margin | None:
        return self.per_benchmark.get((task, dataset)) or self.per_task.get(task) or self.everywhere

    def resolve(self, task: str, dataset: str, metric: Metric, reference: tuple[str, float]) -> tuple[float, str]:
        """(margin in metric units, the rule in words) for one benchmark; ``reference`` is the
        (optimizer, mean) a relative margin is taken of."""
        declared = self.declared(task, dataset)
        margin = declared or verdicts.default_margin(metric)
        where = self.source if declared is not None else f"default for {metric.name}"
        name, mean = reference
        value = margin.resolve(mean)
        rule = f"{margin} of {name}'s mean, {where}" if margin.kind == "relative" else where
        return (value if math.isfinite(value) else math.nan), rule


def reference_of(means: Mapping[str, float], metric: Metric, baseline: str) -> tuple[str, float]:
    """The optimizer a relative margin is taken of: ``baseline`` when it has a mean, else the best."""
    if math.isfinite(means.get(baseline, math.nan)):
        return baseline, means[baseline]
    finite = {k: v for k, v in means.items() if math.isfinite(v)}
    if not finite:
        return baseline, math.nan
    best = metric.best(finite.values())
    return next(k for k, v in finite.items() if v == best), best


def policy_from_plan(declared: Mapping | None, source: str = "the sweep file") -> MarginPolicy | None:
    """The margins a sweep file declared, as ``plan.json`` holds them (``harness.results.budget.
    declared_margins``: ``everywhere`` and per (task, dataset) ``benchmarks``); None when it declared none."""
    if not declared:
        return None

    def margin(form: Mapping) -> Margin:
        return Margin(str(form["kind"]), float(form["value"]))

    everywhere = declared.get("everywhere")
    per_benchmark = {(str(b["task"]), str(b["dataset"])): margin(b["margin"]) for b in declared.get("benchmarks") or ()}
    return MarginPolicy(
        per_benchmark=per_benchmark, everywhere=None if everywhere is None else margin(everywhere), source=source
    )


def policy_from_cli(text: str | None) -> MarginPolicy:
    """``--margin 0.005`` / ``--margin 1%``: one margin for every benchmark (ValueError if malformed)."""
    if text is None:
        return MarginPolicy()
    return MarginPolicy(everywhere=verdicts.parse_margin(text), source="--margin")
