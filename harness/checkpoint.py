"""Training checkpoints: everything a run needs to continue in a new process as if never stopped.

A checkpoint taken after step ``n`` holds the model's and the optimizer's ``state_dict`` (the LR schedule
is a pure function of the step, so the step is its position), the loop's own state (train losses and
curves so far, best value, steps to target, timings), the number of batches drawn (the data stream is
rebuilt from the run seed and advanced that far), and every RNG state (torch CPU and CUDA, numpy, Python).
Resuming from it in a new process gives the same record as the uninterrupted run on CPU: same metrics,
same curves, same ``run_id`` (timings and timestamps aside).

Layout, next to the run records (``--out DIR``)::

    DIR/checkpoints/<run_id>/step-<n>.pt

Each file is written atomically (temporary file + ``os.replace``), so a kill mid-write leaves the previous
checkpoint intact. When the run finishes its checkpoints are deleted, except the steps it was asked to
keep (``CheckpointPolicy.keep_steps``): a Signum run keeps its checkpoint at ``S = floor(alpha_sign K)``
so that SoftSignum runs can branch from it (``harness.loop.run(..., branch_from=path)``).
"""

from __future__ import annotations

import os
import random
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT = 1  # version of the checkpoint dictionary below
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
    """Write ``state`` to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(dict(state, format=FORMAT), tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint onto the CPU (the loop moves tensors where they belong)."""
    # weights_only=False: the file holds Python containers (curves, RNG states) written by us.
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or foreign file: torch raises several kinds
        raise ValueError(f"{path}: not an optbench checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an optbench checkpoint of format {FORMAT}")
    return state


def load_latest(out: str | os.PathLike, run_id: str) -> dict[str, Any] | None:
    """The newest readable checkpoint of ``run_id`` (None if there is none). An unreadable one (a disk
    that filled up, a file cut short) is renamed ``*.corrupt`` with a warning, and the one before it is
    tried: a damaged checkpoint costs the steps since the previous one, never the run."""
    import warnings

    for step in reversed(saved_steps(out, run_id)):
        path = path_for(out, run_id, step)
        try:
            return load(path)
        except ValueError as exc:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            warnings.warn(f"unreadable checkpoint moved aside to {aside}: {exc}", stacklevel=2)
    return None


def prune(out: str | os.PathLike, run_id: str, keep: Iterable[int] = ()) -> None:
    """Delete ``run_id``'s checkpoints except the steps in ``keep`` (and the folder when empty)."""
    keep = set(keep)
    folder = run_dir(out, run_id)
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        m = _NAME.match(p.name)
        if (m and int(m.group(1)) not in keep) or p.name.endswith((".tmp", ".corrupt")):
            p.unlink(missing_ok=True)
    try:
        folder.rmdir()
        folder.parent.rmdir()  # checkpoints/ itself, when nothing else is in it
    except OSError:
        pass


def capture_rng() -> dict[str, Any]:
    """Every global RNG a run may draw from: torch CPU and CUDA, numpy, Python."""
    import numpy as np

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
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
