"""Is the owner of a trial still alive? A worker marks the trial it runs with its machine (hostname and
boot id, ``machine``), its pid and the pid's start time (``process_start``); another worker on the same
machine then knows, from the process table, whether that owner died (``pid_dead``) without waiting
for the heartbeat's grace period (``harness.sweep.keeper.TrialKeeper.reap``). Linux ``/proc``; elsewhere
only the heartbeat tells."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def machine() -> tuple[str, str]:
    """(hostname, boot id): identifies the kernel whose process table we can check."""
    boot = ""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        pass
    return socket.gethostname(), boot


def process_start(pid: int) -> str | None:
    """Start time of ``pid`` (Linux), to tell a reused pid from the original process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # zombie / dead: the process has exited
        return "exited"
    return fields[19]


def pid_dead(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` (started at ``start``, from ``process_start``) is gone from this
    machine: no such pid, a zombie, or the pid reused by a later process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    now = process_start(pid)
    return now == "exited" or (start is not None and now is not None and now != start)
