"""``--launcher slurm`` on the submitting side: the workers as one SLURM job array, then the sweep
followed from its storage and records until every planned run is recorded.

``launch_and_follow`` submits ``--workers`` array tasks (``harness.sweep.slurm.submit_commands``),
each ``optbench worker <out>/sweep.yaml --storage URL --out OUT --worker-id i``: the accepted copy
of the sweep file and the results folder, which every node must see (a shared filesystem), as it
must reach the storage. It records the launch in ``<out>/launch.json`` (``harness.sweep.status``),
then polls every ``poll_s`` seconds: the SLURM state of each task (``squeue``), the settled slots
and measured run times in the storage (``harness.sweep.eta``), and the records that appeared under
``<out>/runs/``, printing one line per new record and one per change of a task's state. It stops
when every planned run has a readable record (the caller then writes the leaderboard), or when no
task is alive any more (pending, running, requeued ...) and some are missing (exit 1: re-run the
same command to submit new workers; finished runs are kept).

Re-running the command while tasks of an earlier launch of this results folder are still alive
submits nothing: it follows them. Ctrl-C (or SIGTERM) stops only the following; the jobs keep
running, and the lines printed say how to follow (``optbench status OUT``) or cancel them.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import UserError
from harness.outputs import say as _say
from harness.sweep import slurm

# SLURM states of a task that is (or will be again) a worker; anything else has ended.
ALIVE = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SUSPENDED",
        "PREEMPTED",
        "SIGNALING",
        "STAGE_OUT",
    }
)
FORGOTTEN_AFTER_S = 60.0  # a task squeue never showed is taken as ended after this long
_FLAGS = {
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "time_min": "--time",
    "cpus_per_worker": "--cpus-per-worker",
    "mem_gb": "--mem-gb",
    "gpus_per_worker": "--gpus-per-worker",
    "extra_sbatch": "--sbatch-option",
    "max_requeues": "--max-requeues",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The launcher flags of ``optbench sweep`` and ``suite``."""
    parser.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default="local",
        help="local: worker processes on this machine (default); slurm: --workers array tasks of "
        "one SLURM job array (see docs/cluster.md)",
    )
    group = parser.add_argument_group("SLURM launcher (--launcher slurm); resources are per worker (array task)")
    group.add_argument("--partition", metavar="NAME", help="SLURM partition (default: the cluster's default)")
    group.add_argument("--account", metavar="NAME", help="SLURM account to charge")
    group.add_argument("--qos", metavar="NAME", help="SLURM quality of service")
    group.add_argument(
        "--time",
        dest="time_min",
        type=int,
        metavar="MIN",
        help="time limit of one job in minutes (default 60); a worker that reaches it is requeued and carries on",
    )
    group.add_argument("--cpus-per-worker", type=int, metavar="N", help="CPUs per worker (default 1)")
    group.add_argument("--mem-gb", type=float, metavar="GB", help="memory per worker in GB (default: the cluster's)")
    group.add_argument("--gpus-per-worker", type=int, metavar="N", help="GPUs per worker (default 0)")
    group.add_argument(
        "--sbatch-option",
        dest="extra_sbatch",
        action="append",
        metavar="--NAME=VALUE",
        help="a further sbatch option, repeatable; write it with '=': --sbatch-option=--constraint=a100",
    )
    group.add_argument(
        "--max-requeues",
        type=int,
        metavar="N",
        help="requeues of one worker at its time limit or on preemption (default 100)",
    )
    group.add_argument(
        "--slurm-folder",
        metavar="DIR",
        help="submitit's job files and worker logs, on a shared filesystem (default: <out>/slurm)",
    )
    group.add_argument("--slurm-poll", type=float, default=5.0, help=argparse.SUPPRESS)


def resources_from_args(args: argparse.Namespace) -> slurm.SlurmResources | None:
    """The workers' resources from the flags (None for the local launcher, which refuses them)."""
    given = {field: getattr(args, field, None) for field in _FLAGS}
    given = {k: v for k, v in given.items() if v is not None}
    if getattr(args, "launcher", "local") != "slurm":
        if given or getattr(args, "slurm_folder", None):
            flags = [_FLAGS[k] for k in given] + (["--slurm-folder"] if getattr(args, "slurm_folder", None) else [])
            raise UserError(f"{', '.join(flags)} only apply to --launcher slurm (choices: local, slurm)")
        return None
    return slurm.SlurmResources.from_mapping(given, where="SLURM resources")


def check_ready(resources: slurm.SlurmResources) -> None:
    """submitit installed, SLURM's commands here, the partition known: before anything is written."""
    slurm._submitit()
    slurm.check_cluster(resources)


def _alive(states: Mapping[str, slurm.JobState]) -> list[str]:
    return [j for j, s in states.items() if s.state in ALIVE]


def _row_line(row: Mapping[str, Any]) -> str:
    study = str(row.get("study") or "")
    short = study.split("/", 1)[1] if "/" in study else study
    if row.get("phase") == "eval":
        slot = f" seed {row.get('seed')}"
    else:
        slot = f" slot {row['trial']}" if row.get("trial") is not None else ""
    value = row.get("objective") if row.get("phase") == "tune" else row.get("test_metric")
    try:
        shown = f"{float(value):.4g}"  # type: ignore[arg-type]  # None or text: the except
    except (TypeError, ValueError):
        shown = "-"
    status = row.get("status") or ""
    status = f" {status}" if status not in ("", "ok") else ""
    seconds = row.get("wall_seconds")
    took = f" ({float(seconds):.1f}s)" if isinstance(seconds, (int, float)) else ""
    return f"{short} {row.get('phase')}{slot}: {row.get('metric')} {shown}{status}{took}"


def launch_and_follow(
    sweep: Any,
    url: str,
    out: Path,
    workers: int,
    resources: slurm.SlurmResources,
    *,
    info: Mapping[str, Any],
    command: str,
    poll_s: float = 5.0,
    folder: str | os.PathLike | None = None,
    say: Callable[[str], object] = _say,
) -> tuple[int, Any]:
    """Submit (or find alive from an earlier launch) the workers, then ``follow``. Returns
    ``(0, census)``; ``(130, None)`` when interrupted (the jobs keep running)."""
    from harness.sweep import status as sweep_status
    from harness.sweep.storage import is_rdb_url, journal_path

    out = Path(out).resolve()
    prefix = f"optbench {command}"
    if not is_rdb_url(url):
        say(
            f"{prefix}: note: the workers share the journal {journal_path(url)}: every node must see it on a "
            "filesystem where flock works across nodes (one node, or NFS with its lock service); prefer "
            "--storage postgresql://... (docs/cluster.md)"
        )
    launch = sweep_status.read_launch(out) or {}
    earlier = [list(entry.get("job_ids", [])) for entry in launch.get("slurm", [])]
    alive = _alive(slurm.job_states([j for ids in earlier for j in ids])) if earlier else []
    folder = Path(folder) if folder is not None else out / "slurm"
    if alive:
        job_ids = alive
        say(
            f"{prefix}: {len(alive)} SLURM worker(s) of an earlier launch are still alive ({', '.join(alive)}): "
            "following them, submitting none"
        )
    else:
        first = sum(len(ids) for ids in earlier)
        sweep_file = out / "sweep.yaml"
        commands = [
            slurm.worker_command(
                sweep_file,
                url,
                ["--out", str(out), "--progress", "plain", "--no-preflight", "--worker-id", str(first + i)],
            )
            for i in range(workers)
        ]
        job_ids = slurm.submit_commands(commands, resources, folder)
        sweep_status.record_launch(
            out,
            "slurm",
            url,
            workers,
            slurm_launch={
                "job_ids": job_ids,
                "worker_ids": list(range(first, first + workers)),
                "folder": str(folder.resolve()),
            },
        )
        say(f"{prefix}: submitted {len(job_ids)} SLURM worker(s): {', '.join(job_ids)} (logs under {folder})")
    try:
        counts = follow(sweep, url, out, job_ids, info=info, prefix=prefix, poll_s=poll_s, say=say)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM turned into it by the caller
        say(f"{prefix}: stopped following; the SLURM workers keep running without this process")
        say(f"  status:  optbench status {out}")
        say(slurm.follow_instructions(job_ids, folder))
        return 130, None
    return 0, counts


def follow(
    sweep: Any,
    url: str,
    out: Path,
    job_ids: Sequence[str],
    *,
    info: Mapping[str, Any],
    prefix: str,
    poll_s: float,
    say: Callable[[str], object],
) -> Any:
    """Poll until every planned run has a readable record, or no task is alive. Returns the census
    (``harness.sweep.reconcile.Census``)."""
    from harness.results import store as records
    from harness.sweep import eta
    from harness.sweep.ledger import Ledger
    from harness.sweep.reconcile import Reconciler

    ledger = Ledger(sweep, url, info=info)
    runs = records.runs_dir(out)
    seen = {p.name for p in runs.glob("*.parquet")} if runs.is_dir() else set()
    started = time.monotonic()
    states_before: dict[str, str] = {}
    ever_seen: set[str] = set()
    while True:
        states = slurm.job_states(job_ids)
        ever_seen |= {j for j, s in states.items() if s.state != "UNKNOWN"}
        for job, state in states.items():
            if states_before.get(job) != state.state:
                where = f" on {state.node}" if state.node and state.state == "RUNNING" else ""
                why = f" ({state.reason})" if state.reason and state.state == "PENDING" else ""
                say(f"[slurm {time.monotonic() - started:6.0f}s] worker {job} {state.state}{where}{why}")
        states_before = {j: s.state for j, s in states.items()}
        running = sum(s.state == "RUNNING" for s in states.values())
        tally = eta.Tally.from_ledger(ledger)
        done = sum(tally.done.values())
        estimate = tally.estimate(running) if done < sweep.planned_runs else None
        left = f" {estimate.text(short=True)}" if estimate is not None else ""
        for name in sorted({p.name for p in runs.glob("*.parquet")} - seen) if runs.is_dir() else ():
            try:
                row = records.read_runs_file(runs / name)
            except Exception:  # noqa: BLE001 -- still being written, or set aside: the next poll tells
                continue
            seen.add(name)
            say(f"[slurm {done}/{sweep.planned_runs} {time.monotonic() - started:6.0f}s{left}] {_row_line(row)}")
        if done >= sweep.planned_runs:
            census = Reconciler(ledger, out).census()
            if census.complete:
                return census
        alive = _alive(states)
        forgotten = time.monotonic() - started > FORGOTTEN_AFTER_S
        if not alive and (set(job_ids) <= ever_seen or forgotten):
            census = Reconciler(ledger, out).census()
            if not census.complete:
                ended = ", ".join(f"{j} {s.state}" for j, s in states.items())
                say(
                    f"{prefix}: every SLURM worker has ended ({ended}) and the sweep is not complete; their logs: "
                    f"{_log_hint(out, job_ids)}; re-run the same command to submit new workers (finished runs "
                    "are kept)"
                )
            return census
        time.sleep(poll_s)


def _log_hint(out: Path, job_ids: Sequence[str]) -> str:
    from harness.sweep import status as sweep_status

    folder = next(
        (
            e.get("folder")
            for e in reversed((sweep_status.read_launch(out) or {}).get("slurm", []))
            if set(job_ids) & set(e.get("job_ids", []))
        ),
        None,
    )
    return f"{folder}/<job id>/<job id>_0_log.err" if folder else "see the SLURM folder"


__all__ = ["ALIVE", "add_arguments", "check_ready", "follow", "launch_and_follow", "resources_from_args"]
