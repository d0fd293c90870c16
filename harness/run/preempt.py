"""Stopping a run on SIGTERM at a step boundary, with a checkpoint: a job that a cluster preempts,
cancels or stops at its time limit loses no finished step.

SLURM (``scancel``, preemption, the time limit) sends SIGTERM and kills the job ``KillWait`` seconds
later (30 s by default). Without this module the signal interrupts the current step, and a retry
resumes from the last periodic checkpoint (``checkpoint_every``, 600 s by default), so up to that
much training is lost.

``sigterm_stops_training()`` (a context manager of ``optbench worker`` and ``optbench run``; main
thread only) installs the handler. While a run is in its training loop (``training()``, entered by
``harness.run.loop.train`` for single-process runs), the handler only records the request: the loop
finishes the step it is in, checks the losses for divergence, saves a checkpoint when the run has an
output folder, and then raises ``KeyboardInterrupt`` (``stop``), which a sweep worker handles as
Ctrl-C: the trial is given back and re-run, and the re-run resumes from that checkpoint. Outside a
training loop (loading data, waiting for a trial), and in multi-process (DDP) runs, whose ranks must
stop together, the handler raises ``KeyboardInterrupt`` at once, as before. Ctrl-C (SIGINT) always
stops at once.

The per-step cost is one read of a module-level flag.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterator
from typing import Any

_active = 0  # training loops running in this process (0 or 1)
_requested = False  # a SIGTERM arrived during one


def _handler(signum, frame) -> None:
    global _requested
    if _active:
        _requested = True
        return
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether a SIGTERM asked the running training loop to stop after its current step."""
    return _requested


def stop(step: int) -> None:
    """The loop has saved what it can at ``step``: end the run as an interrupt."""
    global _requested
    _requested = False
    raise KeyboardInterrupt(f"stopped by SIGTERM after step {step}")


def save_and_stop(
    done: int,
    state: Any,
    first_bad: Callable[[int], int | None],
    clock: Any,
    save_checkpoint: Callable[[int], None] | None,
) -> None:
    """The training loop's answer to a request (``harness.run.loop.train``, at the end of step ``done``):
    save a checkpoint there when the losses since the last check are finite and the run has an output
    folder (``state.checked`` marks the verified steps; ``clock`` pauses the training clock), then stop."""
    if save_checkpoint is not None and state.checked != done and first_bad(done) is None:
        state.checked = done
    if save_checkpoint is not None and state.checked == done:
        with clock.paused():
            clock.settle()
            save_checkpoint(done)
    stop(done)


@contextlib.contextmanager
def training() -> Iterator[None]:
    """Mark a single-process training loop as running (a SIGTERM then waits for its step boundary)."""
    global _active, _requested
    _active += 1
    try:
        yield
    finally:
        _active -= 1
        if not _active:
            _requested = False


@contextlib.contextmanager
def sigterm_stops_training(interrupt_sigint: bool = True) -> Iterator[None]:
    """Install the SIGTERM handler (and, with ``interrupt_sigint``, Python's own SIGINT handler: a
    process started in the background by a non-interactive shell inherits SIGINT as ignored) for the
    duration; restore the previous handlers after. Off the main thread it does nothing."""
    try:
        previous = signal.signal(signal.SIGTERM, _handler)
        previous_int = signal.signal(signal.SIGINT, signal.default_int_handler) if interrupt_sigint else None
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
