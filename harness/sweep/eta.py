"""The time a sweep has left, from the measured run times of its finished runs.

One computation for the progress lines of ``optbench sweep`` / ``suite`` (local and SLURM
launchers) and for ``optbench status``:

- A finished run's **measured time** is its wall time (a progress event's ``seconds``, or a
  finished trial's ``datetime_complete - datetime_start`` in the storage). Runs skipped because
  their record already existed cost nothing and are not measurements.
- Each study's **price per run** is the mean of its measured runs (the mean, not the median: the
  prices are summed). A study with none yet takes the mean of the runs of studies of the same task,
  size and dataset (other optimizers), else the mean of every measured run; the estimate then says
  how many studies it had to guess (``Estimate.guessed``).
- **Work left** = the sum, over studies, of runs left times price. **Time left** = work left divided
  by the workers running, but never less than the price of the dearest run left (one run is not
  split between workers).
- No estimate (None) before ``MIN_MEASURED`` runs are measured, nor without a running worker.

It assumes the workers never wait (an eval phase waits for its tune phase, a branched study for its
parent: with few studies left, fewer workers are busy than run), and that a run's price does not
change with its configuration; a run in progress counts as a whole run left.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MIN_MEASURED = 3  # measured runs before any estimate is shown


@dataclass(frozen=True)
class Estimate:
    """Seconds left, and what they rest on."""

    seconds: float
    measured: int  # measured runs the prices come from
    workers: int  # workers the work left is divided between
    guessed: int  # studies with runs left and no measured run of their own

    def text(self, short: bool = False) -> str:
        """``~4m10s left``; with ``(rough: 2 studies unmeasured)`` when prices were guessed
        (``short``: ``(rough)``)."""
        rough = ""
        if self.guessed:
            rough = (
                " (rough)"
                if short
                else f" (rough: {self.guessed} stud{'y' if self.guessed == 1 else 'ies'} unmeasured)"
            )
        return f"~{duration(self.seconds)} left{rough}"


def duration(seconds: float) -> str:
    """``45s``, ``4m10s``, ``2h05m``, ``3d04h``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def estimate(
    left: Mapping[str, int], seconds: Mapping[str, Sequence[float]], group: Mapping[str, Any], workers: int
) -> Estimate | None:
    """Time left (see the module docstring). ``left``: study -> planned runs without a finished
    trial; ``seconds``: study -> measured run times; ``group``: study -> its (task, size, dataset)
    key, for studies not measured yet; ``workers``: workers running."""
    measured = [float(s) for runs in seconds.values() for s in runs]
    if len(measured) < MIN_MEASURED or workers < 1:
        return None
    overall = statistics.fmean(measured)
    by_group: dict[Any, list[float]] = defaultdict(list)
    for study, runs in seconds.items():
        by_group[group.get(study, study)].extend(float(s) for s in runs)
    work, dearest, guessed = 0.0, 0.0, 0
    for study, n in left.items():
        if n <= 0:
            continue
        own = seconds.get(study)
        if own:
            price = statistics.fmean(own)
        else:
            guessed += 1
            same = by_group.get(group.get(study, study))
            price = statistics.fmean(same) if same else overall
        work += n * price
        dearest = max(dearest, price)
    busy = max(1, min(workers, sum(n for n in left.values() if n > 0)))
    return Estimate(max(work / busy, dearest), len(measured), busy, guessed)


# ---------------------------------------------------------------------------------------------
# What the storage says (status, the SLURM follower, a resumed local sweep)
# ---------------------------------------------------------------------------------------------


def group_of(plan: Any) -> tuple:
    """The studies whose runs cost alike: one task, size, dataset, step budget and budget fraction
    (any optimizer)."""
    return (plan.task, plan.size, plan.dataset_key, plan.steps, getattr(plan, "budget", 1.0))


def planned_per_study(sweep: Any) -> dict[str, int]:
    return {plan.study: plan.planned_runs for plan in sweep.studies}


def trial_seconds(trial: Any) -> float | None:
    """A finished (COMPLETE or PRUNED) trial's wall time in the storage; None otherwise."""
    if (
        trial.state.name not in ("COMPLETE", "PRUNED")
        or trial.datetime_start is None
        or trial.datetime_complete is None
    ):
        return None
    return max(0.0, (trial.datetime_complete - trial.datetime_start).total_seconds())


@dataclass
class Tally:
    """Per study: planned runs, finished ones (per phase, as the storage says) and measured times.
    ``update`` takes a progress event; ``left`` and ``estimate`` answer from what it holds."""

    planned: dict[str, int]
    group: dict[str, Any]
    done: dict[tuple[str, str], int]
    seconds: dict[str, list[float]]

    @classmethod
    def empty(cls, sweep: Any) -> Tally:
        return cls(planned_per_study(sweep), {p.study: group_of(p) for p in sweep.studies}, {}, defaultdict(list))

    @classmethod
    def from_ledger(cls, ledger: Any) -> Tally:
        """What the storage says now: every settled slot, and the wall time of every finished trial
        of a wanted slot (``harness.sweep.ledger.Ledger``)."""
        tally = cls.empty(ledger.sweep)
        for plan in ledger.sweep.studies:
            for phase in ledger.phases(plan):
                slots = ledger.phase_slots(plan, phase)
                if slots is None:
                    continue
                settled = ledger.settled(ledger.study(plan, phase), slots)
                tally.done[(plan.study, phase)] = len(settled)
                tally.seconds[plan.study].extend(
                    s for s in (trial_seconds(t) for t in settled.values() if t is not None) if s is not None
                )
        return tally

    def update(self, event: Any) -> None:
        """A progress event (``harness.sweep.worker.Event``) of a finished run."""
        if event.kind != "run" or event.study not in self.planned:
            return
        self.done[(event.study, event.phase)] = max(self.done.get((event.study, event.phase), 0), event.slots_done)
        if not event.skipped and event.status != "failed":
            self.seconds[event.study].append(float(event.seconds))

    def left(self) -> dict[str, int]:
        finished: dict[str, int] = defaultdict(int)
        for (study, _), n in self.done.items():
            finished[study] += n
        return {study: max(0, n - finished[study]) for study, n in self.planned.items()}

    def estimate(self, workers: int) -> Estimate | None:
        return estimate(self.left(), self.seconds, self.group, workers)


__all__ = ["Estimate", "MIN_MEASURED", "Tally", "duration", "estimate", "group_of", "trial_seconds"]
