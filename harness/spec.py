"""``RunSpec``: one frozen record that describes a run completely. Its ``run_id`` is the hash of
its canonical JSON, so the same spec always names the same result file (idempotent resume)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from harness.errors import UserError

PHASES = ("run", "tune", "eval")
PATH_PREFIX = "path:"  # a dataset read from a user's file: ``path:<file>``
# Seeds lie in [0, SEED_LIMIT): every consumer accepts them (numpy's legacy seeding takes < 2**32,
# parquet's int64 columns < 2**63, Optuna and torch more), with room for the seeds a sweep derives
# from its seed (tune seed + 1000 r, eval seeds seed + 1 ..), which are checked against it too.
SEED_LIMIT = 2**31
# Optimizer steps lie in [1, MAX_STEPS]: the loop keeps one float per step on the device.
MAX_STEPS = 10**8


class DataChanged(UserError):
    """A ``path:`` data file changed while a run trained on it: the run's result belongs to neither
    content, so it is not recorded as a result (``harness.run.loop.run``; a sweep records it as failed)."""


def seed_problem(seed: object) -> str | None:
    """Why ``seed`` is not a valid run seed (None: it is)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < SEED_LIMIT:
        return f"{seed!r} (a seed must be an integer in [0, 2**31 - 1] = [0, {SEED_LIMIT - 1}])"
    return None


def steps_problem(steps: object) -> str | None:
    """Why ``steps`` is not a valid step budget (None: it is)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= MAX_STEPS:
        return f"{steps!r} (steps must be an integer in [1, {MAX_STEPS:,}])"
    return None


def dataset_id(dataset: str) -> str:
    """The name a dataset is known by in run_ids, study names (so sampler seeds) and leaderboards.

    Registered datasets are their own name. A user's file (``path:<file>``) is known by its content,
    ``path@<first 16 hex digits of its SHA-256>``, not by where it sits: moving the file changes no
    run_id and re-runs nothing. A file that cannot be read keeps its given name (the task reports
    the missing file before anything runs)."""
    if not isinstance(dataset, str) or not dataset.startswith(PATH_PREFIX):
        return dataset
    from pathlib import Path

    path = Path(dataset[len(PATH_PREFIX) :]).expanduser()
    try:
        stat = path.stat()
        return _content_id(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    except OSError:
        return dataset


@functools.lru_cache(maxsize=64)
def _content_id(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"path@{digest.hexdigest()[:16]}"


def _canonical(value: Any) -> Any:
    """JSON-stable form: tuples -> lists, floats kept exact via repr-round-trip, keys sorted."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run's result.

    ``hparams`` are the optimizer's fully resolved hyperparameters (defaults merged), ``task_options``
    the task's resolved options; both are stored as plain dicts and hashed canonically. ``trial`` is
    bookkeeping (which Optuna trial asked for the run) and is not part of the identity: the same
    configuration asked for twice is the same run.

    ``delay`` (one-step delayed gradients and beyond) and ``budget`` (a WSD decay branch trained to
    a fraction of the full budget) count only when they differ from 0 and 1.0. ``steps`` is always
    the full budget ``K``; the run trains ``train_steps`` = ``budget_steps(K, budget)`` of them.

    ``schedule``: the run's LR schedule when it is not the task's own (``harness.run.schedules``:
    kind, warmup_steps, min_lr_ratio, decay_fraction, decay_shape; e.g. ``{"kind": "wsd", ...}``),
    completed over the task's schedule by ``harness.run.resolve.resolve``; empty (the task's schedule)
    it is left out of the identity, so runs that do not override it keep their run_ids.

    ``branched_from`` / ``branch_step``: the run started from the checkpoint of run ``branched_from``
    after its step ``branch_step`` (SoftX from X at S; see ``harness.run.lineage``). They are part of the
    identity only when set, so a branched run and the same spec run from scratch have different
    run_ids (their results agree on CPU, not bit for bit everywhere), and unbranched runs keep the
    run_ids they always had.
    """

    task: str
    optimizer: str
    dataset: str
    size: str = "tiny"
    hparams: Mapping[str, Any] = field(default_factory=dict)
    task_options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    steps: int | None = None  # None: the task's default budget
    phase: str = "run"
    suite: str = "adhoc"
    study: str = ""
    amp: str | None = None  # None (fp32) or "bf16" (autocast; CUDA only)
    compile: bool = False
    trial: int | None = None
    replicate: int = 0  # tuning replicate (independent study) this run belongs to; 0 without replicates
    branched_from: str = ""  # run_id of the parent whose checkpoint this run starts from ('' = from scratch)
    branch_step: int = 0  # the step of that checkpoint (0 when not branched)
    delay: int = 0  # gradients reach the optimizer this many steps late (0: no delay; harness.run.delay)
    budget: float = 1.0  # fraction of the full budget ``steps`` this run trains (WSD budget branch; 1.0: all)
    schedule: Mapping[str, Any] = field(default_factory=dict)  # LR schedule override ({}: the task's own)
    cell: Mapping[str, Any] = field(default_factory=dict)  # the sweep cell's axis values (bookkeeping; {}: none)

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"unknown phase {self.phase!r}; known: {', '.join(PHASES)}")
        if self.amp not in (None, "bf16"):
            raise ValueError(f"unknown amp {self.amp!r}; known: bf16 (or none)")
        if self.steps is not None and steps_problem(self.steps):
            raise ValueError(f"invalid steps {steps_problem(self.steps)}")
        if seed_problem(self.seed):
            raise ValueError(f"invalid seed {seed_problem(self.seed)}")
        if (
            not isinstance(self.branch_step, int)
            or self.branch_step < 0
            or bool(self.branched_from) != (self.branch_step > 0)
        ):
            raise ValueError(
                f"branched_from and branch_step go together (a run_id and a step >= 1), got "
                f"{self.branched_from!r} and {self.branch_step!r}"
            )
        if not isinstance(self.delay, int) or isinstance(self.delay, bool) or self.delay < 0:
            raise ValueError(f"delay must be a non-negative integer (steps), got {self.delay!r}")
        if isinstance(self.budget, bool) or not isinstance(self.budget, (int, float)) or not 0 < self.budget <= 1:
            raise ValueError(f"budget must be a fraction in (0, 1] of the full step budget, got {self.budget!r}")
        object.__setattr__(self, "budget", float(self.budget))
        if not isinstance(self.replicate, int) or self.replicate < 0:
            raise ValueError(f"replicate must be a non-negative integer, got {self.replicate!r}")
        if not isinstance(self.schedule, Mapping):
            raise ValueError(
                f"schedule must be a mapping (an LR schedule override; empty: the task's own), got {self.schedule!r}"
            )
        # Freeze the mappings' contents into plain dicts so asdict/json are stable.
        object.__setattr__(self, "hparams", dict(self.hparams))
        object.__setattr__(self, "task_options", dict(self.task_options))
        object.__setattr__(self, "schedule", dict(self.schedule))
        if not isinstance(self.cell, Mapping):
            raise ValueError(f"cell must be a mapping (a sweep cell's axis values), got {self.cell!r}")
        object.__setattr__(self, "cell", dict(self.cell))

    def identity(self) -> dict[str, Any]:
        """What the run_id hashes: everything but the trial number. The replicate index counts only
        when it is not 0, so the runs of a sweep without replicates keep the run_ids they always had
        (and a sweep whose replicates are raised from 1 keeps replicate 0's records). A user's file
        counts by its content (``dataset_id``, read once per spec: ``dataset_key``), not its location;
        the parent of a branched run counts (``branched_from``, ``branch_step``)."""
        d = self._fields()
        d.pop("trial")
        d.pop("cell", None)  # bookkeeping: a cell's values are in its study name and in the spec fields they set
        if not d["replicate"]:
            d.pop("replicate")
        d["dataset"] = self.dataset_key
        return d

    def _fields(self) -> dict[str, Any]:
        """The fields, without those at their neutral value (the branch pair of an unbranched run,
        delay 0, budget 1.0, no schedule override), so the JSON and run_id of a spec that does not
        use them is what it always was."""
        d = asdict(self)
        if not d["branched_from"]:
            d.pop("branched_from")
            d.pop("branch_step")
        if not d["delay"]:
            d.pop("delay")
        if d["budget"] == 1.0:
            d.pop("budget")
        if not d["schedule"]:
            d.pop("schedule")
        if not d["cell"]:
            d.pop("cell")
        return d

    @property
    def train_steps(self) -> int | None:
        """The optimizer steps this run takes: ``T = budget_steps(steps, budget)`` (``steps`` at
        budget 1.0; None while ``steps`` is unresolved)."""
        if self.steps is None or self.budget == 1.0:
            return self.steps
        from harness.run.schedules import budget_steps

        return budget_steps(self.steps, self.budget)

    @functools.cached_property
    def dataset_key(self) -> str:
        """``dataset_id(self.dataset)`` when first asked (a ``path:`` file's content then): what the
        run_id, the record and the end-of-run data check (``harness.run.loop``) hold the run to."""
        return dataset_id(self.dataset)

    @functools.cached_property
    def run_id(self) -> str:
        """The first 20 hex digits of the SHA-256 of the canonical identity (computed once)."""
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()[:20]

    def with_(self, **changes: Any) -> RunSpec:
        return replace(self, **changes)

    def to_json(self) -> str:
        return canonical_json(self._fields())

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        data = json.loads(text)
        hp = data.get("hparams", {})
        data["hparams"] = {k: tuple(v) if isinstance(v, list) else v for k, v in hp.items()}
        return cls(**data)
