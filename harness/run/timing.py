"""The clocks of one run, kept out of the training loop: training time, evaluation time and
optimizer-step time, and the cumulative training time the loop writes into its curves at every
evaluation (``split="train", name="seconds"``: time-to-target in seconds is read off those points,
``harness.stats.profiles``).

What counts where (every figure is seconds, summed over the run and carried across a resume or a
branch by the loop state, so a resumed or branched run counts the steps its checkpoint took too):

* ``train_seconds``: wall-clock time of the training steps (data, forward, backward, the delay swap,
  clipping, the optimizer step, the loop's bookkeeping). Paused while the run evaluates, samples its
  optimizer's diagnostics or writes a checkpoint.
* ``eval_seconds``: the validation and test evaluations and the diagnostic samples.
* ``optimizer_seconds``: the ``optimizer.step()`` calls alone (a part of ``train_seconds``). On CUDA
  they are timed with events, read once when the run pauses for a checkpoint or ends, so timing a
  step costs no host synchronisation; on CPU with ``perf_counter`` (the step is synchronous there).

On CUDA the clock waits for the device (``torch.cuda.synchronize``) before it pauses, so the kernels
a training step queued count as training, not as the evaluation that would otherwise wait for them.
It pauses only where the loop reads values on the host anyway (an evaluation, a diagnostic sample,
a checkpoint), so the wait costs no extra synchronisation in the steps between.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import torch


class Timer:
    """Optimizer-step time without host syncs: CUDA events on GPU (summed when ``total`` is read),
    perf_counter on CPU (where the step is synchronous anyway)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.pairs: list[tuple[Any, Any]] = []
        self.seconds = 0.0

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.pairs.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            self.seconds += time.perf_counter() - t0

    def total(self) -> float:
        if self.cuda and self.pairs:
            torch.cuda.synchronize()
            return self.seconds + sum(s.elapsed_time(e) for s, e in self.pairs) / 1000.0
        return self.seconds


class RunClock:
    """The three clocks of a run, accumulated into ``state`` (a ``harness.run.session.LoopState``:
    ``train_seconds``, ``eval_seconds``, ``optimizer_seconds``, which start from what a checkpoint
    held). ``start()`` runs the training clock; ``paused(into)`` stops it for a block, whose time goes
    to ``state.<into>`` when given; ``step()`` times one optimizer step; ``stop()`` ends the run's
    training time and settles the step timer."""

    def __init__(self, device: torch.device, state: Any):
        self.device = device
        self.state = state
        self._steps = Timer(device)
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _stop_training(self) -> bool:
        """Add the running stretch to ``train_seconds``; True when the clock was running."""
        if self._since is None:
            return False
        self._sync()
        self.state.train_seconds += time.perf_counter() - self._since
        self._since = None
        return True

    def step(self) -> contextlib.AbstractContextManager[None]:
        """Times one ``optimizer.step()`` into ``optimizer_seconds`` (no host sync)."""
        return self._steps()

    @contextlib.contextmanager
    def paused(self, into: str | None = None) -> Iterator[None]:
        """The block's time is not training time; it goes to ``state.<into>`` (``"eval_seconds"``) when
        given (a checkpoint write goes nowhere). The training clock runs again after the block if it
        ran before."""
        running = self._stop_training()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if into is not None:
                setattr(self.state, into, getattr(self.state, into) + time.perf_counter() - t0)
            if running:
                self.start()

    def train_seconds(self) -> float:
        """Training seconds so far (the running stretch included; a device still busy with queued
        steps is not waited for: read it while paused for the exact figure)."""
        running = time.perf_counter() - self._since if self._since is not None else 0.0
        return self.state.train_seconds + running

    def settle(self) -> None:
        """Move the step timer's time into ``optimizer_seconds`` (on CUDA this reads the events: call
        it where the run waits for the device anyway, e.g. before a checkpoint or at the end)."""
        self.state.optimizer_seconds += self._steps.total()
        self._steps = Timer(self.device)

    def stop(self) -> None:
        """The run's training ends: the training clock stops and the step timer settles."""
        self._stop_training()
        self.settle()
