"""The worker: claims planned runs of a sweep through the Optuna storage, runs them, and heartbeats.

See ``harness.sweep`` for the protocol as a whole, ``harness.sweep.slots`` for the slot rules and
``harness.sweep.keeper`` for the heartbeat and the reaping of dead workers' trials. A ``Worker`` is
safe to run in any number of processes on any number of machines against one storage (and one
results folder: the run records are the ground truth, see ``harness.sweep.reconcile``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.outputs import DiskFull
from harness.run.lineage import BranchRefused
from harness.sweep import branch as branching
from harness.sweep import optuna_api
from harness.sweep import slots as slots_rules
from harness.sweep.keeper import TrialKeeper
from harness.sweep.plan import StudyPlan, Sweep
from harness.sweep.reconcile import Reconciler
from harness.sweep.resolve import TaskInfo, resolve_run, utc_now
from harness.sweep.slots import DUPLICATE, ERROR, MAX_RETRY, RELEASED, SLOT, SURPLUS
from harness.sweep.space import config_key, space_size, stable_seed, suggest, unused_params
from harness.vocab import Metric, as_direction


@dataclass
class Event:
    """One progress event: a run finished (``kind='run'``) or the worker stopped (``kind='done'``)."""

    kind: str
    worker: int
    done: int
    total: int
    study: str = ""
    phase: str = ""
    slot: Any = None
    trial: int | None = None
    status: str = ""
    value: float | None = None
    best: float | None = None
    metric: str = ""
    seconds: float = 0.0
    skipped: bool = False
    slots_done: int = 0
    slots_total: int = 0
    detail: str = ""  # status "failed": the exception's first line, and whether the slot was given up

    def to_json(self) -> str:
        return json.dumps(self.__dict__)


def _finite(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class Worker(TrialKeeper):
    """Claims and runs planned runs of ``sweep`` until every study is tuned and evaluated.

    A worker is the ``Ledger`` of the sweep (what the storage says: studies, slots, the best
    configuration) that also claims trials, runs them, heartbeats and reaps (those two, with giving
    a trial back, as a ``TrialKeeper``: ``harness.sweep.keeper``): the one owner of its state. It
    checks the records through a ``Reconciler`` over itself (``harness.sweep.reconcile``).
    ``on_event`` receives an ``Event`` after every run.
    """

    def __init__(
        self,
        sweep: Sweep,
        storage_url: str,
        out: str | os.PathLike,
        *,
        worker_id: int = 0,
        on_event: Callable[[Event], None] | None = None,
        poll_seconds: float = 1.0,
        info: Mapping[str, TaskInfo] | None = None,
    ):
        super().__init__(sweep, storage_url, info=info)
        self.out = Path(out)
        self.worker_id = worker_id
        self.on_event = on_event
        self.poll_seconds = poll_seconds
        self.records = Reconciler(self, self.out)  # its run_ids read back: records.verified
        self.runs = 0

    # -- slots ---------------------------------------------------------------------------------

    def _ensure_slots(self, study, slots: Mapping[Any, tuple[dict, dict]]) -> None:
        """Enqueue every slot that has no live trial and is not settled: with the configuration its
        earlier trials ran, if any (a lost record, a raise, a vanished worker), else its own."""
        trials = study.get_trials(deepcopy=False)
        lost = self.lost(study)
        have = {t.user_attrs.get(SLOT) for t in trials if slots_rules.is_live(t, lost)}
        states = slots_rules.slot_states(trials, slots, lost)
        for slot, (params, attrs) in slots.items():
            if slot in have or states[slot].settled:
                continue
            again = slots_rules.requeue_params(states[slot], optuna_api.planned_params)
            study.enqueue_trial(params if again is None else again, user_attrs={SLOT: slot, **attrs})

    def _advance(self, plan: StudyPlan) -> str:
        """Do one run of ``plan`` if one is free: 'worked', 'blocked' (others hold it) or 'done'."""
        for phase in self.phases(plan):
            if plan.branch_from is not None and not self.child_ready(plan, phase):
                return "blocked"  # a branch waits for its parent's tuning / evaluation
            study = self.study(plan, phase)
            slots = self.phase_slots(plan, phase)
            if slots is None:  # transferred from an entry that is still being tuned
                return "blocked"
            self._ensure_slots(study, slots)
            if len(self.settled(study, slots)) < len(slots):
                return self._claim(plan, study, phase, slots)
            # The phase is complete as the journal says: check it against the records.
            if self.records.verify(plan, phase, study, slots):
                return "worked"  # a record was lost: its slot is open again
            self.records.settle_given_up(plan, phase, study, slots)
            self._discard_waiting(study)
        return "done"

    def _claim(self, plan: StudyPlan, study, phase: str, slots: Mapping) -> str:
        from optuna.trial import TrialState

        if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            if not self.reap(study):
                return "blocked"
        trial = study.ask()  # pops the lowest WAITING trial atomically (or makes a fresh one: surplus)
        slot = trial.user_attrs.get(SLOT)
        if not self._is_owner(study.get_trials(deepcopy=False), trial.number, slot, slots, self.lost(study)):
            trial.set_user_attr(SURPLUS, True)
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return "worked"
        stop, beat = self._start_heartbeat(trial)
        try:
            event = self._run_trial(plan, study, phase, trial, slot)
        except BaseException:
            stop.set()
            beat.join()
            # Interrupted (Ctrl-C, SIGTERM) or the storage failed: give the slot back with the same
            # parameters (not a death), then re-raise.
            try:
                optuna_api.set_system_attr(self.storage, optuna_api.trial_id(trial), RELEASED, trial.number)
                self._release(study, optuna_api.trial_id(trial))
            except Exception:
                pass  # storage unreachable: the heartbeat grace period will re-queue it
            raise
        stop.set()
        beat.join()
        if event is not None:
            self._emit(event)
        return "worked"

    def _draw_again_if_taken(self, plan: StudyPlan, study, trial, slot) -> bool:
        """A finite space (only choices / integer ranges) can draw a configuration another slot
        already has; the same configuration is the same run_id, so it would add no record. Then this
        trial is told FAIL (``optbench_duplicate``) and the slot re-queued with an unused
        configuration. Returns True when that happened."""
        from optuna.trial import TrialState

        if space_size(plan.space) is None:
            return False
        mine = config_key(trial.params)
        used = set()
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number or t.user_attrs.get(SLOT) == slot:
                continue
            if slots_rules.is_duplicate(t) or slots_rules.is_surplus(t):
                continue
            params = optuna_api.planned_params(t)
            if params:
                used.add(config_key(params))
        if mine not in used:
            return False
        replacement = unused_params(plan.space, used | {mine}, stable_seed(plan.seed, plan.study, slot, trial.number))
        study.enqueue_trial(replacement, user_attrs={SLOT: slot})
        trial.set_user_attr(DUPLICATE, trial.number)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        return True

    def _run_trial(self, plan: StudyPlan, study, phase: str, trial, slot) -> Event | None:
        import optuna
        from optuna.trial import TrialState

        from harness.run import loop

        info = self.info(plan)
        # A branch's parent configuration (read from the storage once per run, used twice below).
        parent_hp, parent_slot, _ = self.parent_configuration(plan) if plan.branch_from else (None, None, 0)
        if phase == "tune":
            if self.sweep.sampler.name == "tpe":
                study.sampler = self._sampler(plan, slot)
            hparams = {**plan.fixed, **suggest(trial, plan.space)}
            if plan.branch_from is not None and parent_hp is None:
                # Every tune trial of the parent was pruned or given up: there is no configuration to take
                # the shared hyperparameters from. The child's run fails (retried, then given up), it does
                # not stop the worker.
                spec, _ = resolve_run(self.sweep, plan, hparams, plan.seed, "tune", slot)
                self._name_run(trial, spec)
                return self._record_failure(
                    plan,
                    study,
                    phase,
                    trial,
                    slot,
                    spec,
                    info,
                    f"its parent study {plan.branch_from} has no complete tune trial (all pruned or given up): "
                    "no configuration to branch from",
                    utc_now(),
                    0.0,
                )
            if plan.branch_from is not None:
                assert parent_hp is not None
                hparams.update(branching.shared_part(plan, parent_hp))
            if self._draw_again_if_taken(plan, study, trial, slot):
                return None
            spec, task = resolve_run(self.sweep, plan, hparams, plan.seed, "tune", slot)
        else:
            hparams = json.loads(trial.user_attrs["hparams"])
            spec, task = resolve_run(
                self.sweep, plan, hparams, int(trial.user_attrs["seed"]), "eval", trial.user_attrs.get("best_trial")
            )
        self._check_data(plan, spec)
        parent_checkpoint = None
        if plan.branch_from is not None:  # the branched spec names its parent: its own run_id
            # (an eval slot of a child exists only once its parent has a configuration: Ledger.eval_slots)
            assert parent_hp is not None, f"{plan.study}: an eval slot without a parent configuration"
            spec, parent_checkpoint = branching.branch_start(self.sweep, self.out, plan, spec, parent_hp, parent_slot)
        self._name_run(trial, spec)
        pruned = False
        kwargs: dict[str, Any] = {
            "out_dir": str(self.out),
            "data_dir": self.sweep.data_dir,
            "task": task,
            "progress": False,
            "checkpoints": self._checkpoints(plan, phase, spec),
        }
        if phase == "tune" and self.sweep.pruner is not None:
            fractions = list(self.sweep.pruner.fractions)
            steps = spec.train_steps or task.steps  # a budget's own steps when tuned at that budget

            def on_eval(step: int, metrics: Mapping[str, float]) -> bool:
                # Report only at the configured budget fractions: every trial of the study is then
                # compared at the same point of the shared LR schedule.
                nonlocal pruned
                while fractions and step >= fractions[0] * steps:
                    value = float(metrics.get(info.metric, math.nan))
                    trial.report(value if math.isfinite(value) else info.penalty, round(1000 * fractions.pop(0)))
                    if trial.should_prune():
                        pruned = True
                        return True
                return False

            kwargs["on_eval"] = on_eval
        started, started_at = time.perf_counter(), utc_now()
        try:
            try:
                result = loop.run(spec, branch_from=parent_checkpoint, **kwargs)
            except BranchRefused as exc:
                # Whatever is wrong with the parent's checkpoint (unreadable, another run's), the child
                # runs from scratch: the same result at full cost. Not the child's failure.
                spec = branching.from_scratch(plan, spec, exc)
                self._name_run(trial, spec)
                result = loop.run(spec, **kwargs)
        except DiskFull:
            raise  # not the run's failure: the trial is given back and the sweep stops, exit 1
        except Exception as exc:  # the run raised: a result ("failed"), not a crash of the sweep
            return self._record_failure(
                plan, study, phase, trial, slot, spec, info, _first_line(exc), started_at, time.perf_counter() - started
            )
        seconds = time.perf_counter() - started
        row = result.row
        status = str(row.get("status", ""))
        value = _finite(row.get("objective") if phase == "tune" else row.get("test_metric"))
        if value is None:  # diverged/failed: the penalty, told as COMPLETE so samplers learn from it
            value = info.penalty
        for key, val in (
            ("run_id", row.get("run_id")),
            ("status", status),
            ("val_metric", _finite(row.get("val_metric"))),
            ("test_metric", _finite(row.get("test_metric"))),
        ):
            trial.set_user_attr(key, val)
        try:
            if pruned or status == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            else:
                study.tell(trial, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Declared stale while we ran (e.g. a long stall); its re-queued copy will find our record.
            pass
        self.records.verified.add(spec.run_id)
        self.runs += 1
        return self._run_event(
            plan,
            study,
            phase,
            trial,
            slot,
            status or ("pruned" if pruned else ""),
            value,
            seconds,
            bool(result.skipped),
        )

    def _name_run(self, trial, spec: Any) -> None:
        """The trial names the run it makes (its run_id, and its spec, from which a given-up slot's
        failure record can be written again), before the run starts: a trial whose worker dies still
        names its run. An unreadable file where the record belongs is moved aside, and so is the
        failure record of an earlier attempt of the slot under another run_id (a SoftX child that ran
        branched, then from scratch): one record per slot."""
        previous = trial.user_attrs.get("run_id")  # a re-queued trial carries its predecessor's
        if previous and previous != spec.run_id:
            self.records.set_aside_superseded(previous, spec.run_id)
        trial.set_user_attr("run_id", spec.run_id)
        trial.set_user_attr("spec", spec.to_json())
        self.records.set_aside_unreadable(spec.run_id)

    @staticmethod
    def _check_data(plan: StudyPlan, spec: Any) -> None:
        """A ``path:`` file is the content it had when the sweep file was read (the studies are named
        by it). Edited since: refuse to run more of this sweep on it (a run it was edited under has
        failed already, ``harness.run.loop.run``)."""
        from harness.spec import PATH_PREFIX

        # spec.dataset_key is read after the run's data was loaded: a file changed before this point
        # shows here, one changed later at the run's end.
        if plan.dataset.startswith(PATH_PREFIX) and spec.dataset_key != plan.dataset_key:
            raise UserError(
                f"the data file {plan.dataset[len(PATH_PREFIX) :]} changed since this sweep started "
                f"({plan.dataset_key} then, {spec.dataset_key} now), and its studies ({plan.study}, ...) "
                "are for the content it had; put that back to go on, or re-run the command to start "
                "new studies for the new content"
            )

    def _checkpoints(self, plan: StudyPlan, phase: str, spec: Any):
        """The run's checkpoint policy: the sweep's wall-clock cadence, plus the branch points its
        children start from when ``plan`` is a parent (``harness.sweep.branch``)."""
        from harness.run.checkpoint import CheckpointPolicy

        keep = branching.keep_steps(self.sweep, plan, phase, spec) if self.sweep.children(plan) else frozenset()
        return CheckpointPolicy(every_seconds=self.sweep.checkpoint_every, keep_steps=keep)

    def _run_event(self, plan, study, phase, trial, slot, status, value, seconds, skipped, detail="") -> Event:
        from optuna.trial import TrialState

        info = self.info(plan)
        done, total = self.progress()
        trials = study.get_trials(deepcopy=False)
        best = None
        if phase == "tune":
            values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
            if values:
                best = Metric(info.metric, as_direction(info.direction)).best(values)
        wanted = range(plan.trials) if phase == "tune" else (self.eval_slots(plan) or {})
        return Event(
            "run",
            self.worker_id,
            done,
            total,
            study=plan.study,
            phase=phase,
            slot=slot,
            trial=trial.number,
            status=status,
            value=value,
            best=best,
            metric=info.metric,
            seconds=seconds,
            skipped=skipped,
            slots_done=len(self._finished(trials, wanted, self.lost(study))),
            slots_total=plan.trials if phase == "tune" else len(plan.eval_seeds),
            detail=detail,
        )

    def _record_failure(self, plan, study, phase, trial, slot, spec, info, detail, started_at, seconds) -> Event:
        """A run raised: write its record (status ``failed``), mark the trial, and re-queue the same
        configuration -- unless it has now raised more than ``MAX_RETRY`` times (given up)."""
        from optuna.trial import TrialState

        self.records.write_failure(spec, info, detail, started_at, seconds)
        trial.set_user_attr(ERROR, {"number": trial.number, "detail": detail})
        trial.set_user_attr("status", "failed")
        state = slots_rules.slot_states(study.get_trials(deepcopy=False), [slot], self.lost(study))[slot]
        attempts = state.errors + 1  # this trial is still RUNNING, so not counted yet
        tid = optuna_api.trial_id(trial)
        if attempts > MAX_RETRY:
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            detail = f"{detail} (given up after {attempts} attempts)"
        else:
            self._release(study, tid)
            detail = f"{detail} (attempt {attempts} of {MAX_RETRY + 1}; queued again)"
        self.runs += 1
        return self._run_event(plan, study, phase, trial, slot, "failed", None, seconds, False, detail)

    def _emit(self, event: Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Work until every study is complete. Returns the number of runs this worker made."""
        plans = list(self.sweep.studies)
        if plans:  # workers start on different studies: less contention, better-informed TPE
            k = self.worker_id % len(plans)
            plans = plans[k:] + plans[:k]
        for plan in plans:  # on resume, re-queue trials of workers that died, before waiting on them
            for phase in self.phases(plan):
                self.reap(self.study(plan, phase))
        self.records.verify_all()  # the records are the truth: a lost one opens its slot again
        while True:
            states = []
            for plan in plans:
                state = self._advance(plan)
                states.append(state)
                if state == "worked":
                    break
            if all(s == "done" for s in states) and len(states) == len(plans):
                if any(p.branch_from for p in plans):
                    branching.cleanup(self.out)  # nothing will branch any more
                self._emit(Event("done", self.worker_id, *self.progress()))
                return self.runs
            if "worked" not in states:
                time.sleep(self.poll_seconds)
