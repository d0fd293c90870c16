"""``optbench status OUT``: where a sweep stands, running or finished, from any machine that sees its
results folder and reaches its storage.

It reads, and runs nothing: the accepted sweep file (``<out>/sweep.yaml``) and the studies' budget
and directions (``<out>/plan.json``), the storage named in ``<out>/launch.json`` (or ``--storage``,
else the default journal ``<out>/optuna.journal``), and the records under ``<out>/runs/``. It
reports the planned runs; those with a readable record (the sweep's own census,
``harness.sweep.reconcile``), diverged and failed among them; the runs in progress with their worker,
node, pid and how long they have run; attempts that raised and were queued again; given-up runs;
the SLURM array tasks of ``--launcher slurm`` launches when ``squeue`` answers here; and the time left
(``harness.sweep.eta``: from the measured run times of the finished trials, divided between the
workers running now).

``launch.json`` is written by ``optbench sweep`` / ``suite`` when they start workers: the launcher,
the storage URL without its password (a database password never lands in a results folder: libpq
reads it from ``~/.pgpass`` or ``PGPASSWORD``, or give ``--storage``), the worker count, and for
SLURM each launch's task ids and job folder. Exit 2 when OUT is not a sweep's results folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.errors import UserError
from harness.outputs import say

LAUNCH_FILE = "launch.json"
LAUNCH_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# <out>/launch.json
# ---------------------------------------------------------------------------------------------


def without_password(url: str) -> str:
    """``postgresql://u:secret@host/db`` -> ``postgresql://u@host/db``; other URLs unchanged."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc}"))


def read_launch(out: str | os.PathLike) -> dict | None:
    """``<out>/launch.json`` as written by ``record_launch``; None when absent or unreadable."""
    try:
        data = json.loads((Path(out) / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_launch(
    out: str | os.PathLike, launcher: str, storage_url: str, workers: int, slurm_launch: dict | None = None
) -> None:
    """Note how the sweep's workers were started (atomically; earlier SLURM launches are kept)."""
    from harness.sweep.storage import is_rdb_url

    path = Path(out) / LAUNCH_FILE
    data = read_launch(out) or {}
    url = without_password(storage_url) if is_rdb_url(storage_url) else str(Path(storage_url).expanduser().resolve())
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    data.update(
        {
            "format": LAUNCH_FORMAT,
            "launcher": launcher,
            "storage": url,
            "workers": workers,
            "started_utc": now,
            "host": socket.gethostname(),
        }
    )
    if slurm_launch is not None:
        data["slurm"] = [*data.get("slurm", []), {**slurm_launch, "submitted_utc": now}]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# What the sweep says
# ---------------------------------------------------------------------------------------------


def _load(out: Path):
    from harness.results import budget
    from harness.sweep import schema
    from harness.sweep.resolve import TaskInfo

    if not out.is_dir() or not budget.plan_path(out).is_file() or not (out / budget.SWEEP_FILE).is_file():
        what = (
            "does not exist"
            if not out.exists()
            else "is not a folder"
            if not out.is_dir()
            else f"has no {budget.PLAN_FILE} and {budget.SWEEP_FILE}"
        )
        raise UserError(
            f"{out} is not a sweep's results folder: it {what} (optbench sweep and suite write both "
            "before any run); give the --out folder of a sweep"
        )
    sweep = schema.load(out / budget.SWEEP_FILE)
    plan = budget.read_plan(out) or {}
    # The studies' directions from plan.json: no task is built, no data is read here.
    info = {
        s["study"]: TaskInfo("", s["direction"], float("nan"))
        for s in plan.get("studies", [])
        if isinstance(s, dict) and s.get("direction") in ("max", "min")
    }
    return sweep, info


def _running(ledger, now: float) -> list[dict]:
    from optuna.trial import TrialState

    from harness.sweep.slots import OWNER, SLOT

    rows = []
    for plan in ledger.sweep.studies:
        for phase in ledger.phases(plan):
            for t in ledger.study(plan, phase).get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                owner = t.system_attrs.get(OWNER)
                owner = owner if isinstance(owner, dict) and owner.get("number") == t.number else {}
                start = t.datetime_start.timestamp() if t.datetime_start else None
                rows.append(
                    {
                        "study": plan.study,
                        "phase": phase,
                        "slot": t.user_attrs.get(SLOT),
                        "worker": owner.get("worker"),
                        "node": owner.get("host"),
                        "pid": owner.get("pid"),
                        "seconds": None if start is None else max(0.0, now - start),
                    }
                )
    return rows


def _raised_attempts(ledger) -> int:
    """Trials whose run raised and whose slot was queued again (the final attempt is a record)."""
    from optuna.trial import TrialState

    from harness.sweep.slots import ERROR

    n = 0
    for plan in ledger.sweep.studies:
        for phase in ledger.phases(plan):
            n += sum(
                1
                for t in ledger.study(plan, phase).get_trials(deepcopy=False, states=(TrialState.FAIL,))
                if t.user_attrs.get(ERROR)
            )
    return n


def _slurm_tasks(launch: dict) -> list[dict] | None:
    """Every task of the SLURM launches with its state, or None when there are none or squeue is
    not here."""
    launches = launch.get("slurm") or []
    if not launches or shutil.which("squeue") is None:
        return None
    from harness.sweep import slurm

    ids = [j for entry in launches for j in entry.get("job_ids", [])]
    worker_of = {j: w for entry in launches for j, w in zip(entry.get("job_ids", []), entry.get("worker_ids", []))}
    try:
        states = slurm.job_states(ids)
    except Exception:  # noqa: BLE001 -- the status still answers without SLURM
        return None
    return [
        {"job_id": j, "worker": worker_of.get(j), "state": s.state, "node": s.node, "reason": s.reason}
        for j, s in states.items()
    ]


def gather(out: str | os.PathLike, storage: str | None = None) -> dict[str, Any]:
    """The status of the sweep in ``out`` as a dict (what ``--json`` prints)."""
    import time

    from harness.sweep import eta
    from harness.sweep.ledger import Ledger
    from harness.sweep.reconcile import Reconciler
    from harness.sweep.storage import default_storage_url, is_rdb_url, journal_path, redact_url

    out = Path(out)
    sweep, info = _load(out)
    launch = read_launch(out) or {}
    url = storage or launch.get("storage") or default_storage_url(out)
    if not is_rdb_url(url) and not journal_path(url).is_file():
        raise UserError(
            f"no storage for the sweep in {out}: {journal_path(url)} does not exist; give the sweep's --storage"
        )
    try:
        ledger = Ledger(sweep, url, info=info)
    except UserError as exc:
        hint = (
            " (the results folder keeps the URL without its password: give --storage, or use ~/.pgpass)"
            if is_rdb_url(url) and not storage
            else ""
        )
        raise UserError(f"{exc}{hint}") from None
    census = Reconciler(ledger, out).census()
    running = _running(ledger, time.time())
    tasks = _slurm_tasks(launch)
    if tasks is not None:
        workers = sum(t["state"] == "RUNNING" for t in tasks)
    else:
        workers = len({(r["node"], r["pid"]) for r in running})
    tally = eta.Tally.from_ledger(ledger)
    estimate = tally.estimate(workers) if not census.complete else None
    return {
        "out": str(out),
        "suite": sweep.suite,
        "storage": redact_url(url),
        "launcher": launch.get("launcher"),
        "planned": census.planned,
        "recorded": census.recorded,
        "tune": census.tune,
        "eval": census.eval,
        "diverged": census.diverged,
        "failed": census.failed,
        "complete": census.complete,
        "settled": sum(tally.done.values()),
        "running": running,
        "raised_and_requeued": _raised_attempts(ledger),
        "given_up": census.given_up + census.unrecorded,
        "missing": census.missing,
        "slurm": tasks,
        "workers_running": workers,
        "measured_runs": sum(len(v) for v in tally.seconds.values()),
        "seconds_left": None if estimate is None else round(estimate.seconds, 1),
        "time_left": "done" if census.complete else (estimate.text() if estimate is not None else None),
    }


def render(s: dict[str, Any]) -> list[str]:
    from harness.sweep import eta

    lines = [
        f"sweep {s['suite']} in {s['out']} (storage {s['storage']}"
        + (f", {s['launcher']} launcher)" if s["launcher"] else ")")
    ]
    lines.append(f"  planned:   {s['planned']} runs")
    lines.append(
        f"  recorded:  {s['recorded']} ({s['tune']} tune, {s['eval']} eval; {s['diverged']} diverged, "
        f"{s['failed']} failed)" + ("; complete" if s["complete"] else "")
    )
    lines.append(f"  running:   {len(s['running'])}")
    for r in s["running"]:
        took = f", {eta.duration(r['seconds'])} so far" if r["seconds"] is not None else ""
        who = f"worker {r['worker']}" if r["worker"] is not None else "a worker"
        lines.append(
            f"    {who} on {r['node'] or '?'} (pid {r['pid'] or '?'}): {r['study']} {r['phase']} slot {r['slot']}{took}"
        )
    lines.append(
        f"  failed:    {s['failed']} recorded as failed; {s['raised_and_requeued']} attempt(s) raised and "
        "were queued again"
    )
    lines.append(f"  given up:  {len(s['given_up'])}")
    lines += [f"    {g}" for g in s["given_up"][:10]]
    if s["missing"] and not s["running"]:
        lines.append(f"  missing:   {len(s['missing'])} planned run(s) without a record, e.g. {s['missing'][0]}")
    if s["slurm"] is not None:
        counts: dict[str, int] = {}
        for t in s["slurm"]:
            counts[t["state"]] = counts.get(t["state"], 0) + 1
        lines.append("  SLURM:     " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
        for t in s["slurm"]:
            node = f" on {t['node']}" if t["node"] else ""
            why = f" ({t['reason']})" if t["reason"] else ""
            lines.append(f"    {t['job_id']} (worker {t['worker']}): {t['state']}{node}{why}")
    if s["complete"]:
        left = "none: every planned run is recorded"
    elif s["time_left"]:
        left = f"{s['time_left']} (from {s['measured_runs']} measured runs, {s['workers_running']} worker(s) running)"
    elif not s["workers_running"]:
        left = "unknown: no worker is running (re-run the sweep's command to resume)"
    else:
        left = f"unknown until {eta.MIN_MEASURED} runs are measured ({s['measured_runs']} so far)"
    lines.append(f"  time left: {left}")
    return lines


def cmd_status(args: argparse.Namespace) -> int:
    import warnings

    from harness.sweep.storage import SweepWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SweepWarning)
        status = gather(args.out, args.storage)
    for w in caught:
        if issubclass(w.category, SweepWarning):
            say(f"optbench status: warning: {w.message}")
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        for line in render(status):
            print(line)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``status`` to the ``optbench`` command line."""
    about = (
        "where a sweep stands (running or finished): planned, recorded, running (worker, node), failed, "
        "given up, SLURM tasks, estimated time left"
    )
    p = subparsers.add_parser("status", help=about, description=about)
    p.add_argument("out", metavar="OUT", help="the sweep's results folder (its --out)")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="the sweep's storage (default: as recorded in OUT/launch.json, else OUT/optuna.journal)",
    )
    p.add_argument("--json", action="store_true", help="print the status as one JSON object")
    p.set_defaults(func=cmd_status)


__all__ = ["LAUNCH_FILE", "gather", "read_launch", "record_launch", "register", "render", "without_password"]
