"""The slot rules: which trial of a study holds which planned run, and when a run is given up.

Pure functions over Optuna ``FrozenTrial`` lists (no storage access), shared by the worker
(``harness.sweep.worker``), the reconciliation with the run records (``harness.sweep.reconcile``) and the
tests. Vocabulary (trial and study attributes written by the worker):

- ``optbench_slot`` (user attr): the planned run a trial is for: tune slot ``k`` (0..trials-1) or an
  eval slot ``"seed=<s> config=<hash>"``.
- ``optbench_surplus`` (user attr): a duplicate claim, told FAIL without running.
- ``optbench_duplicate`` (user attr, = the trial's number): a finite space drew a configuration another
  slot already has; told FAIL without running, the slot re-queued with an unused configuration.
- ``optbench_error`` (user attr, ``{number, detail}``): the run raised a Python exception (recorded as
  status ``failed``). Counts toward giving the slot up: more than ``MAX_RETRY`` of them and the slot
  is given up, its last failure record kept.
- ``optbench_released`` (system attr, = the trial's number): given back on Ctrl-C / SIGTERM.
- any other FAIL is a *silent death*: the worker vanished (SIGKILL, the OOM killer, preemption, power
  loss). It is re-queued with the same configuration and does not count toward ``MAX_RETRY``; only a
  slot whose worker vanished more than ``MAX_SILENT_DEATHS`` times is given up (a run that gets its
  process OOM-killed every time would otherwise loop forever on a cluster that restarts workers).
- ``optbench_lost:<trial number>`` (study user attr): a finished trial whose run record is missing or
  unreadable (``harness.sweep.reconcile``); its slot is open again and re-queued with the same configuration.

Markers that hold a trial number are compared with the trial's own number, because Optuna's retry
callback copies a failed trial's attributes onto its re-queued copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SLOT = "optbench_slot"
SURPLUS = "optbench_surplus"
DUPLICATE = "optbench_duplicate"
ERROR = "optbench_error"
OWNER = "optbench_owner"  # system attr: host/pid of the worker running the trial
BEAT = "optbench_heartbeat"  # system attr (journal storage): last heartbeat, unix time
CONFIG = "optbench_config"  # study user attr: what the study was created for (resume check)
RELEASED = "optbench_released"
LOST = "optbench_lost:"  # study user attr prefix, + trial number
MAX_RETRY = 3  # re-runs of a configuration whose run keeps raising
MAX_SILENT_DEATHS = 10  # safety cap on re-runs of a slot whose worker keeps vanishing


def _state(t: Any) -> str:
    return t.state.name  # COMPLETE, PRUNED, FAIL, RUNNING, WAITING


def is_error(t: Any) -> bool:
    mark = t.user_attrs.get(ERROR)
    return _state(t) == "FAIL" and isinstance(mark, dict) and mark.get("number") == t.number


def is_released(t: Any) -> bool:
    return t.system_attrs.get(RELEASED) == t.number


def is_duplicate(t: Any) -> bool:
    return t.user_attrs.get(DUPLICATE) == t.number


def is_surplus(t: Any) -> bool:
    return bool(t.user_attrs.get(SURPLUS))


def is_silent_death(t: Any) -> bool:
    return _state(t) == "FAIL" and not (is_error(t) or is_released(t) or is_duplicate(t) or is_surplus(t))


def lost_trials(study_attrs: Mapping[str, Any]) -> dict[int, dict]:
    """Trial number -> why its record was found lost, from a study's user attributes."""
    return {int(k[len(LOST) :]): v for k, v in study_attrs.items() if k.startswith(LOST)}


@dataclass
class SlotState:
    """What the trials of one slot say about it."""

    done: Any = None  # the finished (COMPLETE/PRUNED, record not lost) trial, lowest number
    errors: int = 0  # runs that raised
    silent: int = 0  # workers that vanished
    trials: list = field(default_factory=list)

    @property
    def given_up(self) -> bool:
        return self.done is None and (self.errors > MAX_RETRY or self.silent > MAX_SILENT_DEATHS)

    @property
    def settled(self) -> bool:
        return self.done is not None or self.given_up


def slot_states(trials: Iterable[Any], slots: Iterable[Any], lost: Iterable[int] = ()) -> dict[Any, SlotState]:
    """Slot -> ``SlotState`` for every wanted slot (trials sorted by number)."""
    lost = set(lost)
    states = {slot: SlotState() for slot in slots}
    for t in sorted(trials, key=lambda t: t.number):
        state = states.get(t.user_attrs.get(SLOT))
        if state is None:
            continue
        state.trials.append(t)
        if _state(t) in ("COMPLETE", "PRUNED") and t.number not in lost:
            if state.done is None:
                state.done = t
        elif is_error(t):
            state.errors += 1
        elif is_silent_death(t):
            state.silent += 1
    return states


def finished(trials: Iterable[Any], slots: Iterable[Any], lost: Iterable[int] = ()) -> dict:
    """slot -> its finished trial for the wanted slots that are settled; a given-up slot maps to
    None, so the sweep can complete without it (its failure record says why)."""
    return {slot: s.done for slot, s in slot_states(trials, slots, lost).items() if s.settled}


def is_owner(trials: Iterable[Any], number: int, slot: Any, wanted: Iterable[Any], lost: Iterable[int] = ()) -> bool:
    """A slot belongs to its lowest-numbered trial that has not FAILED and whose record is not lost."""
    if slot is None or slot not in set(wanted):
        return False
    lost = set(lost)
    return not any(
        t.user_attrs.get(SLOT) == slot and t.number < number and _state(t) != "FAIL" and t.number not in lost
        for t in trials
    )


def is_live(t: Any, lost: Iterable[int] = ()) -> bool:
    """WAITING, RUNNING, or finished with its record in place."""
    return _state(t) in ("WAITING", "RUNNING") or (_state(t) in ("COMPLETE", "PRUNED") and t.number not in set(lost))


def requeue_params(state: SlotState, planned_params) -> dict | None:
    """The Optuna parameters to re-queue a slot with: those of its latest trial that ran (or was
    enqueued with) a configuration -- a lost record, a raise, a vanished worker -- so a re-run is the
    same configuration and the same run_id. None when no trial of the slot had one (e.g. a TPE slot
    whose worker died before its configuration was drawn): the slot's own parameters then."""
    for t in reversed(state.trials):
        if is_duplicate(t) or is_surplus(t):
            continue
        params = planned_params(t)
        if params:
            return params
    return None
