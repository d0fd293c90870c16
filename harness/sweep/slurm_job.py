"""What one SLURM array task runs: a command line (``optbench worker SWEEP --storage URL``) as a
child process, under submitit's checkpoint-and-requeue protocol.

This module imports submitit at the top; only ``harness.sweep.slurm`` imports it (after its
friendly "install optbench[slurm]" check), and submitit's runner on the compute node when it
unpickles the job.

Signals, the reason the command runs as a child process and not in-process
-------------------------------------------------------------------------
submitit installs its handlers in the job's Python process: the preemption/timeout signal
(``--signal=USR2@<signal_delay_s>``; SLURM also sends it at preemption when the cluster sets
``preempt_send_user_signal``) checkpoints the callable and requeues the job (``scontrol requeue``);
SIGTERM is logged and ignored. ``optbench worker`` has the opposite need: SIGTERM makes it finish
the current step, checkpoint it and release its trial (``harness.run.preempt``; SIGINT: at once), so other
workers re-run it without waiting for the heartbeat grace. In one process these handlers would
replace each other. As a child, the worker keeps its own: SLURM signals every process of the job
step, so the child gets the SIGTERM of ``scancel``, of preemption or of the time limit directly,
and it ignores the USR2 (whose default action would kill it outright); the submitit parent gets
the USR2, stops the child (SIGTERM, then SIGKILL after ``stop_grace_s``) and requeues. The child
also keeps torch, CUDA and the sweep out of the parent (a segfault or an OOM kill of the worker is
reported by a parent that is still alive), and the pickled callable stays a few strings.

The requeued job starts the same command again: the worker's state is in the sweep storage and
its runs' checkpoints (``harness.run.checkpoint``), not in this object.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from submitit.helpers import Checkpointable, DelayedSubmission, JobEnvironment

# How long a job whose child has stopped after a SIGTERM waits for the USR2 that would requeue it
# (preemption sends SIGTERM and USR2 in either order); SLURM kills it after KillWait anyway.
LINGER_AFTER_SIGTERM_S = 60.0
POLL_S = 0.5


class CommandFailed(RuntimeError):
    """The command of an array task exited with a non-zero code (submitit records it as the job's
    error; the SLURM state is FAILED)."""


def _under_submitit() -> bool:
    return os.environ.get("SUBMITIT_EXECUTOR") == "slurm"  # set by submitit's sbatch script


def _preemption_signal() -> int:
    return JobEnvironment._usr_sig()  # submitit's signal (SUBMITIT_PREEMPT_SIGNAL, default USR2)


def _ignore_preemption_signal() -> None:  # runs in the child between fork and exec
    signal.signal(_preemption_signal(), signal.SIG_IGN)


def distributed_env(job_env: JobEnvironment, job_id: str) -> dict[str, str]:
    """torch.distributed's variables for a multi-task job (``nodes`` x ``tasks_per_node`` > 1): the
    first node of the job is the rendezvous host; the port is a function of the job id, so every
    task of one job agrees on it and two jobs on one node rarely collide."""
    digits = "".join(ch for ch in str(job_id) if ch.isdigit()) or "0"
    return {
        "RANK": str(job_env.global_rank),
        "LOCAL_RANK": str(job_env.local_rank),
        "WORLD_SIZE": str(job_env.num_tasks),
        "LOCAL_WORLD_SIZE": str(max(1, job_env.num_tasks // max(1, job_env.num_nodes))),
        "MASTER_ADDR": job_env.hostnames[0],
        "MASTER_PORT": str(20000 + int(digits) % 20000),
    }


class CommandJob(Checkpointable):
    """Run ``argv`` in a child process until it exits; requeue on timeout or preemption.

    ``env`` is added to the job's environment (``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` default
    to the task's CPUs).
    Returns the child's exit code (0); a non-zero code raises ``CommandFailed``.
    """

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_grace_s: float = 30.0,
    ):
        self.argv = [str(a) for a in argv]
        self.env = dict(env or {})
        self.cwd = cwd
        self.stop_grace_s = float(stop_grace_s)
        self._proc: subprocess.Popen | None = None
        self._sigterm_at: float | None = None

    def __getstate__(self) -> dict:
        # The live child and the signal bookkeeping stay behind when submitit pickles this object
        # for the requeued job.
        state = dict(self.__dict__)
        state["_proc"] = None
        state["_sigterm_at"] = None
        return state

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        cpus = env.get("SLURM_CPUS_PER_TASK")
        if cpus:  # the task's CPUs, unless the user set the threads (as the local launcher does)
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env.setdefault(var, cpus)
        if _under_submitit():
            job_env = JobEnvironment()
            if job_env.num_tasks > 1:
                env.update(distributed_env(job_env, job_env.raw_job_id))
        return env

    def _on_sigterm(self, signum, frame) -> None:
        # The child got the same SIGTERM (SLURM signals the whole step) and is releasing its trial;
        # remember it, so that its exit is not taken for a failure before a requeue signal can come.
        self._sigterm_at = time.monotonic()
        print("optbench slurm job: SIGTERM; the command stops (its trial is released)", file=sys.stderr, flush=True)

    def __call__(self) -> int:
        if _under_submitit():
            try:
                signal.signal(signal.SIGTERM, self._on_sigterm)
            except ValueError:  # not the main thread (never under submitit)
                pass
        print(
            f"optbench slurm job: running {' '.join(self.argv)} (restart {os.environ.get('SLURM_RESTART_COUNT', '0')})",
            file=sys.stderr,
            flush=True,
        )
        self._proc = subprocess.Popen(
            self.argv, env=self._environment(), cwd=self.cwd, preexec_fn=_ignore_preemption_signal
        )
        # poll(), not wait(): submitit's signal handler may interrupt this loop and stop the child
        # (checkpoint), and Popen.wait holds a lock that a nested wait in the handler cannot take.
        while (code := self._proc.poll()) is None:
            time.sleep(POLL_S)
        if code != 0 and self._sigterm_at is not None:
            # Preempted, timed out or cancelled: a requeue signal may still come (its handler
            # requeues and exits); otherwise SLURM ends this process after KillWait.
            deadline = self._sigterm_at + LINGER_AFTER_SIGTERM_S
            while time.monotonic() < deadline:
                time.sleep(POLL_S)
        if code != 0:
            raise CommandFailed(f"{' '.join(self.argv)} exited with code {code}")
        return code

    def stop(self) -> int | None:
        """Stop the child: SIGTERM (``optbench worker`` releases its trial), SIGKILL after
        ``stop_grace_s``. Returns its exit code, None when there was no child."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + self.stop_grace_s
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if proc.poll() is None:
                proc.kill()
                while proc.poll() is None:
                    time.sleep(0.05)
        return proc.returncode

    def checkpoint(self, *args, **kwargs) -> DelayedSubmission:
        """Called by submitit on the requeue signal: stop the child cleanly, then resubmit the same
        command (with the same arguments)."""
        code = self.stop()
        print(
            f"optbench slurm job: requeue signal; command stopped (exit {code}); requeueing",
            file=sys.stderr,
            flush=True,
        )
        return DelayedSubmission(self, *args, **kwargs)


__all__ = ["CommandJob", "CommandFailed", "distributed_env"]
