"""The one place that touches Optuna beyond its documented user API. optbench uses Optuna as a client;
where a private attribute is unavoidable it lives here, behind one adapter whose test fails loudly when
Optuna changes (tests/test_sweep_healing.py::test_optuna_adapter_against_the_installed_optuna).

Why each is needed: ask/tell gives no public trial id, but the storage API (state changes without
``tell``, attributes of a trial we did not ``ask`` for, heartbeats) is keyed by it; ``enqueue_trial``
keeps the parameters of a queued trial in the system attribute ``fixed_params`` until it runs; the
RDB storage's retry-callback keyword was renamed in Optuna 4.9.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

FIXED_PARAMS = "fixed_params"  # system attr set by Study.enqueue_trial (optuna/study/study.py)
RETRIED_FROM = "failed_trial"  # system attr set by RetryFailedTrialCallback: the first failed trial


def trial_id(trial: Any) -> int:
    """The storage id of a ``Trial`` (from ask) or a ``FrozenTrial``."""
    return trial._trial_id


def planned_params(frozen: Any) -> dict[str, Any]:
    """The parameters a trial runs or ran with: its params, or for a queued trial that has not
    suggested yet, the parameters it was enqueued with."""
    return dict(frozen.params) or dict(frozen.system_attrs.get(FIXED_PARAMS) or {})


def retried_from(frozen: Any) -> int | None:
    """Number of the first failed trial this one re-runs (None for an original)."""
    return frozen.system_attrs.get(RETRIED_FROM)


def set_state(storage: Any, tid: int, state: Any) -> bool:
    """Move a trial to ``state`` without ``tell`` (WAITING -> RUNNING claims it; RUNNING -> FAIL
    gives it up). False when another process changed it first; raises Optuna's
    ``UpdateFinishedTrialError`` when it is already finished."""
    return storage.set_trial_state_values(tid, state=state)


def set_system_attr(storage: Any, tid: int, key: str, value: Any) -> None:
    storage.set_trial_system_attr(tid, key, value)


def set_user_attr(storage: Any, tid: int, key: str, value: Any) -> None:
    storage.set_trial_user_attr(tid, key, value)


def record_heartbeat(storage: Any, tid: int) -> None:
    """RDB storage: Optuna's own heartbeat row for the trial."""
    storage.record_heartbeat(tid)


def get_trial(storage: Any, tid: int) -> Any:
    return storage.get_trial(tid)


def study_user_attrs(storage: Any, name: str) -> dict[str, Any] | None:
    """User attributes of study ``name`` without creating it (None when it does not exist)."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    return storage.get_study_user_attrs(study_id)


def retry_callback() -> Any:
    """Optuna's re-queue-a-failed-trial callback (renamed in Optuna 4.9), without a retry limit:
    ``harness.sweep.worker`` decides when a slot is given up (it tells a run that raised from a
    worker killed from outside; Optuna's callback cannot)."""
    import optuna

    cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls(max_retry=None)


def rdb_storage(url: str, interval: int, grace: int) -> Any:
    """An ``RDBStorage`` with Optuna's heartbeat and the retry callback under whichever keyword this
    Optuna calls it."""
    import optuna

    kwargs: dict[str, Any] = {"heartbeat_interval": interval, "grace_period": grace}
    if "heartbeat_stale_trial_callback" in inspect.signature(optuna.storages.RDBStorage).parameters:
        kwargs["heartbeat_stale_trial_callback"] = retry_callback()
    else:  # Optuna < 4.9
        kwargs["failed_trial_callback"] = retry_callback()
    return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)


def fail_stale_trials(study: Any) -> None:
    """RDB storage: Optuna's heartbeat check (fails stale trials, runs the retry callback)."""
    import optuna

    optuna.storages.fail_stale_trials(study)
