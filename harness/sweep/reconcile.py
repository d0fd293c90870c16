"""The run records are the truth; the Optuna journal only schedules.

A finished trial in the journal promises a run record (``runs/<run_id>.parquet``). A record can be
lost after the fact (deleted, truncated by a full disk, corrupted by a bad copy), and the journal
would never know. So a worker checks the promises against the records: at start (every finished
trial of the sweep) and whenever a phase of a study is complete (its trials not yet checked). A
finished trial whose record is missing or unreadable is marked lost (study user attribute
``optbench_lost:<number>``, see ``harness.sweep.slots``), which opens its slot again: it is re-queued
with the same configuration, so the re-run has the same run_id and recreates the same record (a
SoftX child whose parent checkpoint is gone by then runs from scratch: its from-scratch run_id). An
unreadable file is moved aside to ``<file>.corrupt`` first, named in a warning -- never silently
skipped, never silently overwritten.

All of it works over a ``Reconciler``: a small frozen context of what the storage says about the
sweep (a ``harness.sweep.ledger.Ledger``; a worker is one), the results folder whose records are
checked, and the run_ids already read back. ``Reconciler.census`` is the final count the CLI
prints: how many planned runs have a readable record.

The check reads files under the worker's ``--out``: workers on several machines must share that
folder (a network file system), as they share the storage; a worker that cannot see the others'
records would re-run them.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.results import store as records
from harness.sweep import optuna_api
from harness.sweep import slots as rules
from harness.sweep.branch import shared_part
from harness.sweep.ledger import Ledger
from harness.sweep.plan import StudyPlan
from harness.sweep.resolve import resolve_run, utc_now
from harness.sweep.slots import LOST, MAX_RETRY, MAX_SILENT_DEATHS, SLOT
from harness.sweep.space import hparams_from_params
from harness.sweep.storage import SweepWarning


def _warn(message: str) -> None:
    warnings.warn(message, SweepWarning, stacklevel=3)


def _where(plan: StudyPlan, phase: str, slot: Any) -> str:
    return f"{plan.study} {phase} slot {slot}"


@dataclass(frozen=True)
class Reconciler:
    """The journal (``ledger``) against the records under ``out``. ``verified`` holds the run_ids
    whose record was read back (by this context, or added by the worker that wrote them)."""

    ledger: Ledger
    out: Path
    verified: set[str] = field(default_factory=set)

    def set_aside_unreadable(self, run_id: str) -> str:
        """Before a run: an unreadable file where its record belongs is moved aside (with a warning),
        so the run replaces it instead of crashing on it or skipping itself. Returns the record state."""
        state, why = records.record_state(self.out, run_id)
        if state == "corrupt":
            path = records.run_path(self.out, run_id)
            moved = records.quarantine(path)
            _warn(f"run record {path} is unreadable ({why}); moved it to {moved.name} and running the run again")
        return state

    def set_aside_superseded(self, old_run_id: str, new_run_id: str) -> None:
        """An earlier attempt of a slot failed under ``old_run_id`` and the slot now runs as
        ``new_run_id`` (a SoftX child whose parent checkpoint is no longer usable runs from scratch):
        its failure record is moved aside to ``<file>.superseded``, so the slot keeps one record."""
        if records.record_state(self.out, old_run_id)[0] != "failed":
            return
        path = records.run_path(self.out, old_run_id)
        target = path.with_name(path.name + ".superseded")
        try:
            path.replace(target)
        except FileNotFoundError:  # another worker moved it first
            return
        _warn(
            f"the failure record {path} of an earlier attempt is superseded by run {new_run_id}; "
            f"moved it to {target.name}"
        )

    def verify(self, plan: StudyPlan, phase: str, study: Any, slots: Any) -> int:
        """Check the records of the finished trials of one phase of ``plan`` (those not read back
        yet). Marks the trials whose record is missing or unreadable as lost, which opens their slots
        again. Returns how many were lost."""
        lost_now = 0
        done = rules.finished(study.get_trials(deepcopy=False), slots, self.ledger.lost(study))
        for slot, trial in done.items():
            if trial is None:
                continue
            run_id = trial.user_attrs.get("run_id")
            if not run_id or run_id in self.verified:
                continue
            state, why = records.record_state(self.out, run_id)
            if state == "ok":
                self.verified.add(run_id)
                continue
            path = records.run_path(self.out, run_id)
            if state == "corrupt":
                moved = records.quarantine(path)
                what = f"is unreadable ({why}); moved it to {moved.name}"
            elif state == "failed":
                what = "holds a failure although the journal says the run finished"
            else:
                what = "is missing"
            study.set_user_attr(f"{LOST}{trial.number}", {"run_id": run_id, "state": state})
            _warn(
                f"run record {path} of {_where(plan, phase, slot)} {what}; the run is queued again "
                "(same configuration, same run_id)"
            )
            lost_now += 1
        return lost_now

    def verify_all(self) -> int:
        """``verify`` every phase of every plan (a worker's start)."""
        lost = 0
        for plan in self.ledger.sweep.studies:
            for phase in self.ledger.phases(plan):
                slots = self.ledger.phase_slots(plan, phase)
                if slots:
                    lost += self.verify(plan, phase, self.ledger.study(plan, phase), slots)
        return lost

    def write_failure(self, spec: Any, info: Any, detail: str, started_at: str, seconds: float) -> None:
        """Write the ``failed`` record of a run (it raised, or its worker kept vanishing)."""
        row = records.failure_row(
            spec,
            metric=info.metric,
            direction=info.direction,
            penalty=info.penalty,
            detail=detail,
            started_at=started_at,
            finished_at=utc_now(),
            wall_seconds=seconds,
            environment=_environment(),
        )
        records.write_run(self.out, row, [])

    def note_silent_death(self, study: Any, trial: Any) -> None:
        """After a vanished worker's trial was re-queued: warn once a slot has lost several workers."""
        slot = trial.user_attrs.get(SLOT)
        state = rules.slot_states(study.get_trials(deepcopy=False), [slot], self.ledger.lost(study))[slot]
        if state.silent > MAX_RETRY:
            _warn(
                f"{study.study_name} slot {slot} has lost its worker {state.silent} times without a Python "
                f"exception (killed from outside, the OOM killer, preemption); re-queued again -- such deaths are "
                f"not the run's failures, but after {MAX_SILENT_DEATHS} the slot is given up"
            )

    def settle_given_up(self, plan: StudyPlan, phase: str, study: Any, slots: Any) -> None:
        """A given-up slot is settled by its ``failed`` record. When that record is missing or
        unreadable -- a slot given up after ``MAX_SILENT_DEATHS`` vanished workers never had one; a
        failure record can be deleted or cut short like any other -- it is written again from the
        journal: the spec the last attempt ran (the trial's ``spec`` attribute) and the error it raised
        (``optbench_error``), an unreadable file moved aside first. The run is not tried again: given
        up stays given up."""
        states = rules.slot_states(study.get_trials(deepcopy=False), slots, self.ledger.lost(study))
        for slot, state in states.items():
            if not state.given_up:
                continue
            last = _last_attempt(state)
            run_id = last.user_attrs.get("run_id")
            if run_id:
                have, why = records.record_state(self.out, run_id)
                if have in ("ok", "failed"):
                    continue
                if have == "corrupt":
                    moved = records.quarantine(records.run_path(self.out, run_id))
                    _warn(
                        f"the failure record {records.run_path(self.out, run_id)} of given-up "
                        f"{_where(plan, phase, slot)} is unreadable ({why}); moved it to {moved.name}"
                    )
            spec = self._given_up_spec(plan, phase, last)
            if spec is None:
                _warn(f"{_where(plan, phase, slot)} was given up before its configuration was drawn; no record")
                continue
            if state.errors > MAX_RETRY:
                error = last.user_attrs.get(rules.ERROR) or {}
                detail = str(error.get("detail") or "failed")
                why = f"given up after {state.errors} attempts raised"
            else:
                detail = (
                    f"given up: its worker vanished {state.silent} times during this run without a Python "
                    "exception (killed from outside, the OOM killer, preemption)"
                )
                why = detail
            start = last.datetime_start.isoformat(timespec="seconds") if last.datetime_start else utc_now()
            self.write_failure(spec, self.ledger.info(plan), detail, start, 0.0)
            _warn(
                f"{_where(plan, phase, slot)} ({why}; {detail}): wrote its failure record "
                f"{records.run_path(self.out, spec.run_id)} from the journal"
            )

    def _given_up_spec(self, plan: StudyPlan, phase: str, trial: Any) -> Any:
        """The ``RunSpec`` a given-up trial ran: stored on the trial when it started, else (journals
        written before that) rebuilt from its parameters; None when it never had a configuration."""
        from harness.spec import RunSpec

        sweep = self.ledger.sweep
        stored = trial.user_attrs.get("spec")
        if stored:
            try:
                return RunSpec.from_json(stored)
            except (TypeError, ValueError):
                pass
        if phase == "tune":
            params = optuna_api.planned_params(trial)
            if not params:
                return None
            hparams = hparams_from_params(params, plan.space, plan.fixed)
            if plan.branch_from is not None:  # a branch's tune run also ran its parent's shared values
                parent_hp, _, _ = self.ledger.parent_configuration(plan)
                hparams.update(shared_part(plan, parent_hp or {}))
            return resolve_run(sweep, plan, hparams, plan.seed, "tune", trial.user_attrs.get(SLOT))[0]
        if "hparams" not in trial.user_attrs:
            return None
        return resolve_run(
            sweep,
            plan,
            json.loads(trial.user_attrs["hparams"]),
            int(trial.user_attrs["seed"]),
            "eval",
            trial.user_attrs.get("best_trial"),
        )[0]

    def census(self) -> Census:
        """Count, for every planned run of the sweep (tune slots 0..trials-1, one eval run per eval
        seed of the best of them), whether its record is readable, from the records themselves."""
        ledger = self.ledger
        out = Census(planned=ledger.sweep.planned_runs)
        for plan in ledger.sweep.studies:
            for phase in ledger.phases(plan):
                slots = ledger.phase_slots(plan, phase)
                wanted = plan.trials if phase == "tune" else len(plan.eval_seeds)
                if not slots:
                    why = (
                        "not reached (its tuning is unfinished)"
                        if slots is None
                        else "impossible (no complete tune trial)"
                    )
                    out.missing += [f"{plan.study} {phase}: {wanted} run(s) {why}"]
                    continue
                study = ledger.study(plan, phase)
                for slot, state in rules.slot_states(
                    study.get_trials(deepcopy=False), slots, ledger.lost(study)
                ).items():
                    self._count(out, plan, phase, slot, state)
        return out

    def _count(self, out: Census, plan: StudyPlan, phase: str, slot: Any, state: Any) -> None:
        """Add one planned run (``slot`` of ``plan``'s ``phase``) to the census."""
        trial = state.done if state.done is not None else (_last_attempt(state) if state.given_up else None)
        run_id = trial.user_attrs.get("run_id") if trial is not None else None
        row = _read(self.out, run_id) if run_id else None
        if row is None and state.given_up:
            assert trial is not None  # a given-up slot has a last attempt (_last_attempt)
            error = (trial.user_attrs.get(rules.ERROR) or {}).get("detail") or "no error recorded"
            out.unrecorded.append(f"{_where(plan, phase, slot)} (run {run_id or 'never configured'}: {error})")
            return
        if row is None:
            out.missing.append(_where(plan, phase, slot))
            return
        out.recorded += 1
        out.tune += row.get("phase") == "tune"
        out.eval += row.get("phase") == "eval"
        out.diverged += row.get("status") == "diverged"
        out.failed += row.get("status") == "failed"
        if state.given_up:
            tries = (
                f"{state.errors} attempts raised"
                if state.errors > MAX_RETRY
                else f"its worker vanished {state.silent} times"
            )
            out.given_up.append(f"{_where(plan, phase, slot)} ({tries}; {row.get('status_detail') or 'failed'})")


def _environment() -> dict[str, Any]:
    import platform

    import torch

    from harness.run import loop

    return {
        "git_sha": loop.git_sha(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "device": loop.device_label(loop.pick_device(None)),
    }


def _last_attempt(state: Any) -> Any:
    """The given-up slot's last trial that ran (raised, or lost its worker)."""
    return next((t for t in reversed(state.trials) if rules.is_error(t) or rules.is_silent_death(t)), state.trials[-1])


@dataclass
class Census:
    """How many planned runs have a readable record (the sweep's final line)."""

    planned: int = 0
    recorded: int = 0
    tune: int = 0
    eval: int = 0
    diverged: int = 0
    failed: int = 0
    given_up: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # a re-run makes these
    unrecorded: list[str] = field(default_factory=list)  # given up with no record a re-run could write

    @property
    def complete(self) -> bool:
        return self.recorded == self.planned and not self.unrecorded


def _read(out: Any, run_id: str) -> dict | None:
    try:
        row = records.read_runs_file(records.run_path(out, run_id))
    except Exception:
        return None
    return row if row.get("run_id") == run_id else None
