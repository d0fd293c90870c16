"""Running a sweep on this machine: checks before anything is written (``prepare``), then N local
workers (``run_local_workers``): worker 0 in this process, the others ``optbench worker`` processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.outputs import atomic_write_text, writable_dir, writable_file
from harness.results import budget
from harness.sweep import optuna_api
from harness.sweep.ledger import config_refusal
from harness.sweep.plan import Sweep
from harness.sweep.resolve import TaskInfo, preflight
from harness.sweep.storage import (
    check_journal_path,
    default_storage_url,
    is_rdb_url,
    journal_path,
    open_storage,
)
from harness.sweep.worker import Event, Worker


def check_outputs(sweep: Sweep, out: str | os.PathLike, storage_url: str | None) -> tuple[Path, str, Any]:
    """Everything about where a sweep writes, checked before anything is written: the results
    folder (not a file, writable or creatable), the storage (a journal file that can be written in
    a folder that exists or is the results folder; a database that answers), and every existing
    study against its plan (a changed sweep file is refused here, not after some studies were
    touched). Returns ``(out, url, storage or None)``; the storage is None when the journal does
    not exist yet (nothing to check against)."""
    out = writable_dir(out, "results folder (--out)")
    url = storage_url or default_storage_url(out)
    storage = None
    if is_rdb_url(url):
        storage = open_storage(url, sweep.heartbeat)  # unreachable server: fail before writing anything
    else:
        path = journal_path(url)
        if path.parent.resolve() != out.resolve():
            check_journal_path(path)  # its own folder must exist; the results folder is created below
        writable_file(path, "Optuna journal (--storage)")
        if path.exists():
            storage = open_storage(url, sweep.heartbeat)  # repairs a torn tail; appends nothing
    if storage is not None:
        for plan in sweep.studies:
            for name in (plan.study, plan.eval_study):
                refusal = config_refusal(plan, name, optuna_api.study_user_attrs(storage, name), url)
                if refusal:
                    raise UserError(refusal)
    return out, url, storage


def prepare(sweep: Sweep, out: str | os.PathLike, storage_url: str | None) -> tuple[str, dict[str, TaskInfo]]:
    """Everything that can fail on bad input, before anything is written (``preflight``,
    ``check_outputs``); then create the results folder, write the budget of every study there
    (``plan.json``, which the leaderboard reads: ``budget_plan``) and a copy of the sweep file
    (``sweep.yaml``, provenance: always the file that was accepted), and create every study.
    Returns the storage URL and the per-study task info."""
    info = preflight(sweep)
    out, url, _ = check_outputs(sweep, out, storage_url)
    out.mkdir(parents=True, exist_ok=True)
    if Path(sweep.path).is_file():
        text = Path(sweep.path).read_text()
        # plan.json first: a stop between the two leaves a plan.json the leaderboard refuses (it
        # names this command), never an old budget next to a new sweep file.
        atomic_write_text(budget.plan_path(out), json.dumps(budget_plan(sweep, info, text), indent=1) + "\n")
        atomic_write_text(out / budget.SWEEP_FILE, text)
    worker = Worker(sweep, url, out, info=info)
    for plan in sweep.studies:
        worker.study(plan, "tune" if plan.trials else "eval")
    return url, info


def budget_plan(sweep: Sweep, info: Mapping[str, TaskInfo], text: str) -> dict:
    """What ``<out>/plan.json`` holds (``harness.results.budget``, format ``PLAN_FORMAT``): per study,
    in file order, what the leaderboard needs to keep only the runs inside the sweep's budget, tied to
    the sweep file's ``text`` by its digest."""
    return {
        "format": budget.PLAN_FORMAT,
        "suite": sweep.suite,
        "sweep_sha256": budget.sweep_digest(text),
        "studies": [
            {
                "study": p.study,
                "trials": p.trials,
                "eval_seeds": list(p.eval_seeds),
                "transfer_from": p.transfer_from,
                "branch_from": p.branch_from,
                "direction": info[p.study].direction,
                "budget": p.budget,
                "delay": p.delay,
                "cell": dict(p.cell),
            }
            for p in sweep.studies
        ],
        **({"margins": dict(sweep.margins)} if sweep.margins else {}),
    }


def worker_command(sweep_path: str, storage_url: str, out: str, worker_id: int) -> list[str]:
    """The command line of one local helper worker (``optbench worker``, JSON progress on stdout;
    the parent already ran the preflight checks)."""
    import sys

    return [
        sys.executable,
        "-m",
        "harness.cli",
        "worker",
        str(Path(sweep_path).resolve()),
        "--storage",
        storage_url,
        "--out",
        str(Path(out).resolve()),
        "--progress",
        "json",
        "--worker-id",
        str(worker_id),
        "--no-preflight",
    ]


def threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // workers)


def worker_env(worker_id: int, workers: int) -> dict[str, str]:
    """Environment of a local worker: CPU threads split between workers (unless the user set them),
    and one GPU each when there are several and CUDA_VISIBLE_DEVICES is unset."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, str(threads_per_worker(workers)))
    if "CUDA_VISIBLE_DEVICES" not in env:
        try:
            import torch

            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:
            n = 0
        if n > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(worker_id % n)
    return env


def run_local_workers(
    sweep: Sweep,
    storage_url: str,
    out: str | os.PathLike,
    workers: int,
    on_event: Callable[[Event], None],
    *,
    info: Mapping[str, TaskInfo] | None = None,
    on_line: Callable[[int, str], object] | None = None,
) -> int:
    """Run ``workers`` workers on this machine: worker 0 in this process (it has everything
    imported already) and ``workers - 1`` ``optbench worker`` subprocesses whose JSON events are
    relayed to ``on_event``.

    Returns 0 when every worker finished cleanly, else the first non-zero exit code. On Ctrl-C or an
    error in worker 0, the subprocesses get SIGINT (each releases its trial), then it re-raises.
    """
    import signal
    import subprocess

    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            on_event(event)

    def pump(i: int, stream) -> None:
        with stream:
            relay(i, stream)

    def relay(i: int, stream) -> None:
        # Drain the worker's output to its end whatever showing it does: a relay that stopped reading
        # would leave the worker blocked on a full pipe (or killed by a closed one).
        for line in stream:
            line = line.rstrip("\n")
            try:
                event = Event(**json.loads(line))
            except (ValueError, TypeError):
                event = None
            try:
                if event is not None:
                    emit(event)
                elif on_line is not None:
                    with lock:
                        on_line(i, line)
            except Exception:  # noqa: BLE001 -- progress display only; the records are the truth
                pass

    procs: list[subprocess.Popen] = []
    pumps: list[threading.Thread] = []
    try:
        for i in range(1, workers):
            proc = subprocess.Popen(
                worker_command(sweep.path, storage_url, str(out), i),
                env=worker_env(i, workers),
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            procs.append(proc)
            pumps.append(threading.Thread(target=pump, args=(i, proc.stdout), daemon=True))
            pumps[-1].start()
        if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
            import torch

            torch.set_num_threads(threads_per_worker(workers))
        Worker(sweep, storage_url, out, worker_id=0, on_event=emit, info=info).run()
        codes = [p.wait() for p in procs]
        for t in pumps:
            t.join()
    except BaseException:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for t in pumps:
            t.join(timeout=5)
        raise
    return next((c for c in codes if c != 0), 0)


def census(sweep: Sweep, storage_url: str, out: str | os.PathLike, info: Mapping[str, TaskInfo] | None = None):
    """``harness.sweep.reconcile.Reconciler.census`` of the sweep: planned runs with a readable record."""
    from harness.sweep.ledger import Ledger
    from harness.sweep.reconcile import Reconciler

    return Reconciler(Ledger(sweep, storage_url, info=info), Path(out)).census()
