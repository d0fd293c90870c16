"""Custody of trials: what a worker does to trials in the storage besides running them.

A ``TrialKeeper`` is the ``Ledger`` of a sweep (``harness.sweep.ledger``) that also marks the trial it
runs as its own (host, boot, pid: ``harness.sweep.liveness``) and keeps it alive with a heartbeat,
gives back a trial nobody will finish (FAIL, and a copy with the same parameters queued), reaps the
running trials whose worker is gone, and discards the WAITING duplicates of finished slots. The slot
rules it writes by are ``harness.sweep.slots``; ``harness.sweep.worker.Worker`` is a keeper that claims
and runs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.sweep import liveness, optuna_api
from harness.sweep.ledger import Ledger
from harness.sweep.plan import Sweep
from harness.sweep.resolve import TaskInfo
from harness.sweep.slots import BEAT, OWNER, SURPLUS

if TYPE_CHECKING:
    from harness.sweep.reconcile import Reconciler


class TrialKeeper(Ledger):
    """The trials of ``sweep`` that this process holds or gives back, on this machine (``_machine``).

    The worker sets ``worker_id`` (written into the trials it owns) and ``records`` (told of every
    trial whose worker died: ``Reconciler.note_silent_death``)."""

    worker_id: int
    records: Reconciler

    def __init__(self, sweep: Sweep, storage_url: str, *, info: Mapping[str, TaskInfo] | None = None):
        super().__init__(sweep, storage_url, info=info)
        self._machine = liveness.machine()
        self._retry = optuna_api.retry_callback()

    def _discard_waiting(self, study) -> None:
        """Every slot is finished: a trial still WAITING is a duplicate enqueued in a race (or a slot
        beyond a lowered budget). Claim it the way ask() does and tell it FAIL as surplus."""
        import optuna
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            tid = optuna_api.trial_id(t)
            try:
                if optuna_api.set_state(self.storage, tid, TrialState.RUNNING):
                    optuna_api.set_user_attr(self.storage, tid, SURPLUS, True)
                    optuna_api.set_state(self.storage, tid, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass

    def reap(self, study) -> int:
        """Fail and re-queue RUNNING trials whose worker is gone. Returns how many were re-queued."""
        from optuna.trial import TrialState

        before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        if self.rdb:
            optuna_api.fail_stale_trials(study)  # Optuna's heartbeat check + retry callback
        now = time.time()
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = t.system_attrs.get(OWNER)
            mine = isinstance(owner, dict) and owner.get("number") == t.number  # retries copy attrs
            dead = (
                mine
                and (owner.get("host"), owner.get("boot")) == self._machine
                and liveness.pid_dead(owner["pid"], owner.get("start"))
            )
            stale = False
            if not self.rdb:
                beat = t.system_attrs.get(BEAT)
                last = t.datetime_start.timestamp() if t.datetime_start else now
                if isinstance(beat, dict) and beat.get("number") == t.number:
                    last = max(last, float(beat["time"]))
                stale = now - last > self.sweep.heartbeat.grace
            if dead or stale:
                self._release(study, optuna_api.trial_id(t))
                self.records.note_silent_death(study, t)
        return len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before

    def _release(self, study, trial_id: int) -> None:
        """FAIL a trial nobody will finish and queue a copy with the same parameters."""
        import optuna
        from optuna.trial import TrialState

        try:
            changed = optuna_api.set_state(self.storage, trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return  # someone else finished or failed it first
        if changed:
            self._retry(study, optuna_api.get_trial(self.storage, trial_id))

    def _start_heartbeat(self, trial) -> tuple[threading.Event, threading.Thread]:
        """Mark the trial as ours and keep it alive until the returned event is set."""
        tid = optuna_api.trial_id(trial)
        host, boot = self._machine
        optuna_api.set_system_attr(
            self.storage,
            tid,
            OWNER,
            {
                "number": trial.number,
                "host": host,
                "boot": boot,
                "pid": os.getpid(),
                "start": liveness.process_start(os.getpid()),
                "worker": self.worker_id,
            },
        )
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    if self.rdb:
                        optuna_api.record_heartbeat(self.storage, tid)
                    else:
                        optuna_api.set_system_attr(
                            self.storage, tid, BEAT, {"number": trial.number, "time": time.time()}
                        )
                except Exception:
                    return  # trial finished under us or storage gone: the main thread will find out
                if stop.wait(self.sweep.heartbeat.interval):
                    return

        thread = threading.Thread(target=beat, name=f"optbench-heartbeat-{trial.number}", daemon=True)
        thread.start()
        return stop, thread
