"""Training checkpoints: everything a run needs to continue in a new process as if never stopped.

A checkpoint taken after step ``n`` holds the model's and the optimizer's ``state_dict`` (the LR schedule
is a pure function of the step, so the step is its position), the gradient delay's ring of stale
gradients under ``"delay"`` (a run with ``delay`` > 0 only: ``harness.run.delay``; a checkpoint of
another delay is refused), the loop's own state (train losses and curves so far, best value, steps to
target, timings), the number of batches drawn (the data stream is rebuilt from the run seed and
advanced that far), and every RNG state (torch CPU and CUDA, numpy, Python).
Resuming from it in a new process gives the same record as the uninterrupted run on CPU: same metrics,
same curves, same ``run_id`` (timings and timestamps aside).

Layout, next to the run records (``--out DIR``)::

    DIR/checkpoints/<run_id>/step-<n>.pt

Each file is written atomically (temporary file + ``os.replace``), so a kill mid-write leaves the previous
checkpoint intact; a full disk leaves no partial file and raises ``harness.outputs.DiskFull`` naming the
path and the space needed. Checkpoints do not pile up: once a new one is written, the older ones are
deleted (``prune_older``), except the steps the run was asked to keep (``CheckpointPolicy.keep_steps``):
a Signum run keeps its checkpoint at ``S = floor(alpha_sign K)`` so that SoftSignum runs can branch from
it (``harness.run.loop.run(..., branch_from=path)``), a full wsd run its checkpoints at each planned
budget's decay start ``D(T)`` (``harness.run.lineage.budget_keep_steps``) so that the budget runs can.
When the run finishes the rest are deleted too.

Each checkpoint says whose it is (run_id, identity, spec: ``harness.run.lineage.stamp``). A run resumes
only from its own (``load_latest``): any other file in its folder is moved aside with a warning.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = 2  # version of the checkpoint dictionary (2: with the run's identity, harness.run.lineage.stamp)
_NAME = re.compile(r"^step-(\d+)\.pt$")


@dataclass(frozen=True)
class CheckpointPolicy:
    """When a run saves checkpoints, and which ones survive its end.

    ``every_seconds``: wall-clock cadence (long runs: a killed worker's retry resumes instead of
    restarting); ``None`` = never on time. ``at_steps``: steps (after the optimizer step ``n``) at which to
    save in any case. ``keep_steps``: checkpoints not deleted when the run finishes (branch points); they
    are saved whether or not ``at_steps`` lists them.
    """

    every_seconds: float | None = None
    at_steps: frozenset[int] = field(default_factory=frozenset)
    keep_steps: frozenset[int] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if self.every_seconds is not None and not self.every_seconds > 0:
            raise ValueError(f"every_seconds must be > 0, got {self.every_seconds!r}")
        object.__setattr__(self, "at_steps", frozenset(int(s) for s in self.at_steps))
        object.__setattr__(self, "keep_steps", frozenset(int(s) for s in self.keep_steps))

    def wants(self, step: int) -> bool:
        return step in self.at_steps or step in self.keep_steps


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / "checkpoints" / run_id


def path_for(out: str | os.PathLike, run_id: str, step: int) -> Path:
    return run_dir(out, run_id) / f"step-{int(step)}.pt"


def saved_steps(out: str | os.PathLike, run_id: str) -> list[int]:
    """Steps with a checkpoint file for ``run_id``, ascending (temporary files ignored)."""
    folder = run_dir(out, run_id)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def latest(out: str | os.PathLike, run_id: str) -> Path | None:
    steps = saved_steps(out, run_id)
    return path_for(out, run_id, steps[-1]) if steps else None


def save(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (``harness.outputs.atomic_write``: fsync'ed, the mode of a
    new file). A full disk raises ``DiskFull`` (no partial file)."""
    from harness.outputs import atomic_write, raise_if_disk_full

    size = _tensor_bytes(state)
    try:
        return atomic_write(path, lambda tmp: torch.save(dict(state, format=FORMAT), tmp), size_hint=size)
    except RuntimeError as exc:  # torch reports a full disk as a RuntimeError too
        raise_if_disk_full(exc, path, size)
        raise


def _tensor_bytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) checkpoint dict: about the size of its file."""
    if torch.is_tensor(value):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 8


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the loop moves tensors where they belong)."""
    # weights_only=False: the file holds Python containers (curves, RNG states) written by us.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or foreign file: torch raises several kinds
        why = str(exc).strip().split(". ")[0].splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"{path}: not an optbench checkpoint ({type(exc).__name__}: {why})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else None
        older = f" (it is of format {found}: an older optbench)" if isinstance(found, int) else ""
        raise ValueError(f"{path}: not an optbench checkpoint of format {FORMAT}{older}")
    return state


def load_latest(out: str | os.PathLike, spec: Any) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``spec``'s own run (None if there is none). An unreadable
    one (a disk that filled up, a file cut short) is renamed ``*.corrupt``, one of another run (another
    seed's copied in, another optimizer's) ``*.foreign``, each with a warning, and the one before it is
    tried (older ones are deleted as newer ones are written, so that is a kept branch point, or none:
    then the run starts from scratch). A damaged or stray checkpoint costs steps, never the run."""
    import warnings

    from harness.run.lineage import own_problem

    run_id = spec.run_id
    for step in reversed(saved_steps(out, run_id)):
        path = path_for(out, run_id, step)
        try:
            state = load(path)
        except ValueError as exc:
            aside = _aside(path, ".corrupt")
            warnings.warn(f"unreadable checkpoint moved aside to {aside}: {exc}", stacklevel=2)
            continue
        problem = own_problem(spec, state)
        if problem is None and state["step"] != step:
            problem = f"it holds step {state['step']}, not the step {step} its name says"
        if problem is None:
            return state
        aside = _aside(path, ".foreign")
        warnings.warn(f"checkpoint {path} is not this run's: {problem}; moved it aside to {aside.name}", stacklevel=2)
    return None


def _aside(path: Path, suffix: str) -> Path:
    target = path.with_name(path.name + suffix)
    try:
        os.replace(path, target)
    except FileNotFoundError:  # another rank of a torchrun job moved it first
        pass
    return target


def prune_older(out: str | os.PathLike, run_id: str, newest: int, keep: Iterable[int] = ()) -> None:
    """A checkpoint after step ``newest`` was just written: delete ``run_id``'s older ones, except
    the steps in ``keep`` (branch points). Files moved aside stay until the run finishes."""
    keep = set(keep) | {newest}
    folder = run_dir(out, run_id)
    for p in folder.iterdir() if folder.is_dir() else ():
        m = _NAME.match(p.name)
        if m and int(m.group(1)) < newest and int(m.group(1)) not in keep:
            p.unlink(missing_ok=True)


def prune(out: str | os.PathLike, run_id: str, keep: Iterable[int] = ()) -> None:
    """Delete ``run_id``'s checkpoints except the steps in ``keep`` (and the folder when empty)."""
    keep = set(keep)
    folder = run_dir(out, run_id)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if (m and int(m.group(1)) not in keep) or p.name.endswith((".tmp", ".corrupt", ".foreign")):
            p.unlink(missing_ok=True)
    try:
        folder.rmdir()
        folder.parent.rmdir()  # checkpoints/ itself, when nothing else is in it
    except OSError:
        pass


def capture_rng() -> dict[str, Any]:
    """Every global RNG a run may draw from: torch CPU and CUDA, numpy, Python."""
    import numpy as np

    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
