"""The SLURM launcher's core: sweep workers as one SLURM job array, through submitit.

``submit_workers`` submits N array tasks; each runs ``optbench worker SWEEP --storage URL`` in a
child process under ``harness.sweep.slurm_job.CommandJob``, a submitit ``Checkpointable``: a worker
that is preempted or reaches its time limit gets submitit's signal (USR2, ``signal_delay_s``
before the limit), stops its worker cleanly and requeues itself (``scontrol requeue``); the
requeued task starts the worker again, which claims runs from the storage like any other.
Everything a worker knows is in the sweep storage and the run records, so a task that is cancelled
for good loses nothing either: its trial is released (SIGTERM) or, after a SIGKILL, found orphaned
by the heartbeat and re-run by another worker.

The workers share one storage: a PostgreSQL URL, or a journal file on a filesystem that every
node mounts (NFS locking then decides whether concurrent appends are safe: prefer PostgreSQL).
submitit's folder (pickled jobs, logs) and the Python environment must also be on shared storage:
the array tasks run ``sys.executable`` of the submitting process.

``job_states`` reads ``squeue`` (live jobs, and finished ones for the cluster's MinJobAge), then
``sacct`` for the rest where accounting is enabled; submitit's own ``job.state`` reads only
``sacct`` and says UNKNOWN forever on a cluster without accounting.

submitit is imported only here (and in ``harness.sweep.slurm_job``), when a launch is asked for: without
it, a ``UserError`` names the ``slurm`` extra. Reference: submitit (facebookincubator/submitit),
``submitit.helpers.Checkpointable`` and ``SlurmExecutor``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError

# sbatch options that SlurmResources sets (name the field instead) or the launcher owns.
_FIELD_OF_OPTION = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "time": "time_min",
    "cpus-per-task": "cpus_per_worker",
    "mem": "mem_gb",
    "gpus-per-node": "gpus_per_worker",
    "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node",
    "job-name": "job_name",
}
_LAUNCHER_OPTIONS = ("array", "output", "error", "open-mode", "signal", "wckey", "wrap")
_OPTION = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.+))?$", re.S)
_NAME = re.compile(r"^[A-Za-z0-9_.+:@-]+$")


@dataclass(frozen=True)
class SlurmResources:
    """What each worker (one array task) asks SLURM for.

    A worker is one SLURM job of ``nodes`` nodes with ``tasks_per_node`` tasks each (1 x 1 for a
    sweep worker; more for a multi-GPU run, where every task gets torch.distributed's RANK,
    WORLD_SIZE, MASTER_ADDR and MASTER_PORT). ``cpus_per_worker`` is per task;
    ``gpus_per_worker`` is per node (``--gpus-per-node``); ``mem_gb`` per node (None: the
    cluster's default). ``time_min`` is the time limit of one run of the job: a worker that reaches
    it is requeued, at most ``max_requeues`` times (submitit's ``max_num_timeout``; a worker keeps
    nothing between requeues and its runs checkpoint, so many requeues cost little; note that
    submitit counts every requeue signal as a time-out when ``time_min`` <= 10).
    ``extra_sbatch`` holds further sbatch options, each one string ``--name=value`` or ``--flag``
    (``--constraint=a100``, ``--exclusive``, ``--reservation=r1``).
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60
    cpus_per_worker: int = 1
    mem_gb: float | None = None
    gpus_per_worker: int = 0
    nodes: int = 1
    tasks_per_node: int = 1
    extra_sbatch: tuple[str, ...] = ()
    job_name: str = "optbench-worker"
    signal_delay_s: int = 90
    max_requeues: int = 100

    def __post_init__(self) -> None:
        extra = self.extra_sbatch
        if isinstance(extra, str) or not isinstance(extra, Iterable):
            raise UserError(f"slurm extra_sbatch must be a list of options like ['--constraint=a100'], got {extra!r}")
        object.__setattr__(self, "extra_sbatch", tuple(extra))
        for name in ("partition", "account", "qos", "job_name"):
            value = getattr(self, name)
            if value is None and name != "job_name":
                continue
            if not isinstance(value, str) or not _NAME.match(value):
                raise UserError(f"slurm {name} must be a name (letters, digits, _ . + : @ -), got {value!r}")
        for name, low in (
            ("time_min", 1),
            ("cpus_per_worker", 1),
            ("gpus_per_worker", 0),
            ("nodes", 1),
            ("tasks_per_node", 1),
            ("signal_delay_s", 1),
            ("max_requeues", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"slurm {name} must be an integer >= {low}, got {value!r}")
        if self.mem_gb is not None and (
            isinstance(self.mem_gb, bool)
            or not isinstance(self.mem_gb, (int, float))
            or not self.mem_gb > 0
            or self.mem_gb != self.mem_gb
        ):
            raise UserError(
                f"slurm mem_gb must be a number > 0 (GB per node), or unset for the cluster's "
                f"default, got {self.mem_gb!r}"
            )
        if self.signal_delay_s >= self.time_min * 60:
            raise UserError(
                f"slurm signal_delay_s ({self.signal_delay_s} s) must be shorter than the time limit "
                f"time_min ({self.time_min} min = {self.time_min * 60} s): the requeue signal comes "
                "signal_delay_s before the limit"
            )
        self.sbatch_options()  # validates extra_sbatch

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "slurm") -> SlurmResources:
        """From a sweep file's ``slurm:`` mapping (or parsed flags): unknown keys are refused,
        naming the valid ones."""
        if not isinstance(values, Mapping):
            raise UserError(f"{where} must be a mapping of resources, got {type(values).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UserError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; known: {', '.join(known)}")
        return cls(**dict(values))

    def sbatch_options(self) -> dict[str, str | bool]:
        """``extra_sbatch`` as submitit's ``additional_parameters`` ({name: value, flag: True})."""
        out: dict[str, str | bool] = {}
        for option in self.extra_sbatch:
            m = _OPTION.match(option) if isinstance(option, str) else None
            if m is None:
                raise UserError(
                    f"slurm extra_sbatch: {option!r} is not one sbatch option in the long form "
                    "'--name=value' or '--flag' (e.g. '--constraint=a100', '--exclusive')"
                )
            name, value = m.group(1), m.group(2)
            if name in _FIELD_OF_OPTION:
                raise UserError(
                    f"slurm extra_sbatch: --{name} is set by the resource {_FIELD_OF_OPTION[name]!r}; set that instead"
                )
            if name in _LAUNCHER_OPTIONS:
                raise UserError(
                    f"slurm extra_sbatch: --{name} is set by the launcher and cannot be given "
                    f"(launcher-owned: {', '.join('--' + o for o in _LAUNCHER_OPTIONS)})"
                )
            if name in out:
                raise UserError(f"slurm extra_sbatch: --{name} is given twice")
            out[name] = True if value is None else value
        return out

    def executor_parameters(self, array_parallelism: int) -> dict[str, object]:
        """Parameters of ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, object] = {
            "job_name": self.job_name,
            "time": self.time_min,
            "cpus_per_task": self.cpus_per_worker,
            "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": array_parallelism,
            "additional_parameters": self.sbatch_options(),
        }
        for name in ("partition", "account", "qos"):
            if getattr(self, name) is not None:
                params[name] = getattr(self, name)
        if self.mem_gb is not None:
            params["mem"] = f"{max(1, round(self.mem_gb * 1024))}M"
        if self.gpus_per_worker:
            params["gpus_per_node"] = self.gpus_per_worker
        return params


@dataclass(frozen=True)
class JobState:
    """One array task as SLURM reports it: ``state`` is SLURM's (PENDING, RUNNING, COMPLETED,
    CANCELLED, FAILED, TIMEOUT, PREEMPTED, REQUEUED, ...) or UNKNOWN once the cluster forgot it."""

    job_id: str
    state: str
    node: str = ""
    reason: str = ""


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UserError(
            "the SLURM launcher needs submitit: pip install 'optbench[slurm]' "
            "(or -c constraints.txt -e '.[slurm]' in a checkout)"
        ) from None
    return submitit


def _need(command: str) -> str:
    path = shutil.which(command)
    if path is None:
        raise UserError(
            f"the SLURM launcher needs SLURM's `{command}` on PATH (run it on a SLURM login node; "
            "to try it on this machine: sudo cluster/slurm/start-local.sh)"
        )
    return path


def _run(argv: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def partitions() -> list[str]:
    """The cluster's partitions (``sinfo``), in its order; empty when sinfo cannot tell."""
    try:
        proc = _run([_need("sinfo"), "-h", "-o", "%R"])
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    return list(dict.fromkeys(line.strip() for line in proc.stdout.splitlines() if line.strip()))


def check_cluster(resources: SlurmResources) -> None:
    """Before anything is written: SLURM's commands are here and the partition exists."""
    for command in ("sbatch", "squeue", "scancel", "srun"):
        _need(command)
    known = partitions()
    if resources.partition is not None and known and resources.partition not in known:
        raise UserError(f"unknown SLURM partition {resources.partition!r}; known: {', '.join(known)}")


def submit_commands(
    commands: Sequence[Sequence[str]],
    resources: SlurmResources,
    folder: str | os.PathLike,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> list[str]:
    """Submit one job array whose task i runs ``commands[i]`` (a ``CommandJob``: requeued on
    timeout or preemption). Returns the task ids (``"<array>_<i>"``; a single command is a plain
    job, id ``"<job>"``). submitit writes its files under ``folder/<job id>/``."""
    if not commands:
        raise UserError("nothing to submit: no command")
    if not isinstance(resources, SlurmResources):
        raise TypeError(f"resources must be a SlurmResources, got {type(resources).__name__}")
    submitit = _submitit()
    check_cluster(resources)
    from harness.outputs import writable_dir

    folder = writable_dir(folder, "SLURM job folder").resolve()
    from harness.sweep.slurm_job import CommandJob

    work_dir = str(Path(cwd).resolve()) if cwd is not None else os.getcwd()
    job_env = {"PYTHONUNBUFFERED": "1", **dict(env or {})}
    jobs_to_submit = [CommandJob(list(c), env=job_env, cwd=work_dir) for c in commands]
    existed = folder.exists()
    before = set(folder.iterdir()) if existed else set()
    folder.mkdir(parents=True, exist_ok=True)
    executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=resources.max_requeues)
    executor.update_parameters(**resources.executor_parameters(array_parallelism=len(commands)))
    try:
        with executor.batch():
            jobs = [executor.submit(job) for job in jobs_to_submit]
    except (subprocess.SubprocessError, OSError, RuntimeError) as exc:
        # sbatch's own refusal (resources the cluster cannot give, an unknown account or QOS ...):
        # remove what submitit wrote for it (pickles, the batch script), then say why.
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for path in set(folder.iterdir()) - before:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        message = str(exc).strip().splitlines()
        detail = next((line for line in message if "error" in line.lower()), message[-1] if message else "")
        raise UserError(f"sbatch refused the job array: {detail.strip()}") from None
    return [job.job_id for job in jobs]


def worker_command(sweep_file: str | os.PathLike, storage_url: str, extra_args: Sequence[str] = ()) -> list[str]:
    """``optbench worker SWEEP --storage URL [extra_args]`` with the submitting Python; a journal
    file path becomes absolute (the tasks may start in another folder)."""
    if "://" not in storage_url:
        storage_url = str(Path(storage_url).expanduser().resolve())
    return [
        sys.executable,
        "-m",
        "harness.cli",
        "worker",
        str(Path(sweep_file).resolve()),
        "--storage",
        storage_url,
        *map(str, extra_args),
    ]


def submit_workers(
    sweep_file: str | os.PathLike,
    storage_url: str,
    n_workers: int,
    resources: SlurmResources,
    folder: str | os.PathLike,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Submit ``n_workers`` sweep workers as one job array (each ``optbench worker SWEEP --storage
    URL`` plus ``extra_args``, e.g. ``["--out", DIR]``). Returns the array task ids."""
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise UserError(f"the number of SLURM workers must be an integer >= 1, got {n_workers!r}")
    if not Path(sweep_file).is_file():
        raise UserError(f"sweep file {sweep_file} not found")
    if not storage_url:
        raise UserError(
            "SLURM workers need a storage every node can reach: --storage postgresql://... "
            "(or a journal file on a shared filesystem)"
        )
    command = worker_command(sweep_file, storage_url, extra_args)
    return submit_commands([command] * n_workers, resources, folder)


def _array_ids(job_ids: Iterable[str]) -> list[str]:
    """``["12_0", "12_1", "13"]`` -> ``["12", "13"]`` (what squeue/scancel take for whole arrays)."""
    return list(dict.fromkeys(str(j).split("_", 1)[0] for j in job_ids))


def _expand(job_id: str) -> list[str]:
    """squeue's ``12_[0-3,5%2]`` (tasks still pending together) -> ``12_0 .. 12_3, 12_5``."""
    m = re.match(r"^(\d+)_\[([^\]%]+)(?:%\d+)?\]$", job_id)
    if m is None:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        low, _, high = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(low), int(high or low) + 1)]
    return out


def job_states(job_ids: Sequence[str]) -> dict[str, JobState]:
    """SLURM's view of each task in ``job_ids``: ``squeue`` for jobs the controller still holds,
    then ``sacct`` (when the cluster keeps accounting) for the others; UNKNOWN when neither knows."""
    found: dict[str, JobState] = {}
    arrays = _array_ids(job_ids)
    proc = _run([_need("squeue"), "-h", "--states=all", "-j", ",".join(arrays), "-o", "%i|%T|%N|%r"])
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 4:
                for jid in _expand(parts[0]):
                    found[jid] = JobState(jid, parts[1], parts[2], "" if parts[3] == "None" else parts[3])
    missing = [j for j in job_ids if j not in found]
    if missing and shutil.which("sacct"):
        proc = _run(["sacct", "-n", "-P", "-X", "-j", ",".join(_array_ids(missing)), "-o", "JobID,State,NodeList"])
        if proc.returncode == 0:
            for line in proc.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3:
                    for jid in _expand(parts[0]):
                        found.setdefault(
                            jid,
                            JobState(
                                jid,
                                parts[1].split()[0] if parts[1] else "UNKNOWN",
                                "" if parts[2] == "None assigned" else parts[2],
                            ),
                        )
    return {j: found.get(j, JobState(j, "UNKNOWN")) for j in job_ids}


def follow_instructions(job_ids: Sequence[str], folder: str | os.PathLike | None = None) -> str:
    """How to follow or stop the jobs from a shell (printed when the submitting process exits
    and leaves them running)."""
    arrays = _array_ids(job_ids)
    ids = ",".join(arrays)
    lines = [
        f"SLURM job array {ids} ({len(job_ids)} worker(s)); they keep running without this process:",
        f"  follow:  squeue -j {ids} -o '%.12i %.10T %.10M %.20R'",
        f"  cancel:  scancel {' '.join(arrays)}",
        f"  history: sacct -j {ids} -o JobID,State,Elapsed,NodeList,ExitCode   (needs accounting on the cluster)",
    ]
    if folder is not None:
        base = Path(folder).resolve()
        lines.append(f"  logs:    {base}/<job id>/<job id>_0_log.out and _log.err (e.g. {base / job_ids[0]})")
    return "\n".join(lines)


def cancel(job_ids: Sequence[str]) -> None:
    """``scancel`` the given tasks (a task id) or whole arrays (an array id). Tasks that already
    ended are not an error."""
    if not job_ids:
        return
    proc = _run([_need("scancel"), *map(str, job_ids)])
    if (
        proc.returncode != 0
        and "already completing or completed" not in proc.stderr
        and "Invalid job id" not in proc.stderr
    ):
        raise UserError(f"scancel {' '.join(map(str, job_ids))} failed: {proc.stderr.strip() or proc.returncode}")


__all__ = [
    "SlurmResources",
    "JobState",
    "submit_workers",
    "submit_commands",
    "worker_command",
    "job_states",
    "follow_instructions",
    "cancel",
    "check_cluster",
    "partitions",
]
