"""What one run builds before its first step, and what its loop accumulates: the ``Session``
(device, process group, model, data, optimizer, the gradient delay, the checkpoint round trip) and
the ``LoopState`` (losses, curves, best value, timings) a checkpoint serialises. Used by
``harness.run.loop``, which trains.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import math
import os
import sys
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness import plugins
from harness.run import checkpoint as ckpt
from harness.run.delay import GradientDelay
from harness.run.timing import Timer  # noqa: F401  (re-exported: older code imports it from here)
from harness.spec import RunSpec
from harness.task import Task

# Optimizer state kept beside an optimizer rather than in it (the gradient delay's ring), counted by
# ``state_bytes`` as the optimizer's: a delayed run's memory for stale gradients is optimizer memory.
_BESIDE: weakref.WeakKeyDictionary[torch.optim.Optimizer, GradientDelay] = weakref.WeakKeyDictionary()


def derive_seed(seed: int, purpose: str) -> int:
    """Independent 63-bit seeds per purpose (init, data, dropout) from one run seed."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else the local CUDA device under torchrun, else cuda:0, else CPU."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors, plus the gradient-delay ring of a delayed run's
    optimizer (``Session.open`` registers it)."""
    delay = _BESIDE.get(optimizer)
    total = delay.nbytes() if delay is not None else 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                total += value.numel() * value.element_size()
    return total


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(rss if sys.platform == "darwin" else rss * 1024)
    except (ImportError, OSError):
        return 0


# --------------------------------------------------------------------------------------------------
# Distributed (torchrun) support


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as tdist

    if not tdist.is_initialized():
        tdist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=tdist.get_rank(), world_size=tdist.get_world_size())


def micro_batches(batch: Any, k: int) -> list[Any]:
    """Split a batch (a tensor, or a tuple/list of tensors sharing dim 0) into ``k`` micro-batches."""
    if k == 1:
        return [batch]
    if torch.is_tensor(batch):
        return list(batch.tensor_split(k))
    if isinstance(batch, (tuple, list)) and batch and all(torch.is_tensor(t) for t in batch):
        parts = [t.tensor_split(k) for t in batch]
        return [type(batch)(p[i] for p in parts) for i in range(k)]
    raise TypeError(f"gradient accumulation needs batches that are tensors or tuples of tensors, got {type(batch)}")


# --------------------------------------------------------------------------------------------------
# Session: what one run builds before its first step


@dataclass
class Session:
    """Device, process group, model, data, optimizer and the pieces the loop and a checkpoint share."""

    device: torch.device
    dist: Dist
    model: nn.Module
    train_model: nn.Module
    data: Any
    optimizer: torch.optim.Optimizer
    opt_spec: Any
    base_lrs: list[float]
    params: list[nn.Parameter]
    amp_dtype: torch.dtype | None
    data_gen: torch.Generator
    delay: GradientDelay | None = None  # the stale-gradient ring of a run with spec.delay > 0

    @classmethod
    def open(cls, spec: RunSpec, task: Task, device: str | None) -> Session:
        """Build the run's pieces. The optimizer is built for the steps the run takes (``train_steps``:
        a budget run of ``T`` steps is a ``T``-step run for every schedule inside the optimizer)."""
        total = spec.train_steps or task.steps
        dev = pick_device(device)
        dist = init_distributed(dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        # Seeds: init and data order through explicit generators; dropout through the global RNG,
        # seeded here so the same spec twice gives the same record on CPU.
        torch.manual_seed(derive_seed(spec.seed, "dropout") + dist.rank)
        init_gen = torch.Generator().manual_seed(derive_seed(spec.seed, "init"))
        data_gen = torch.Generator().manual_seed(derive_seed(spec.seed, "data"))
        model = task.make_model(init_gen).to(dev)
        data = task.make_data(dev)
        opt_spec = plugins.optimizer(spec.optimizer)
        optimizer = opt_spec.build(task.roles(model), spec.hparams, total)
        train_model: nn.Module = model
        if dist.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            train_model = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
        if spec.compile:
            compiled = torch.compile(train_model)
            assert isinstance(compiled, nn.Module)  # torch.compile of a module is a module (OptimizedModule)
            train_model = compiled
        params = [p for p in model.parameters() if p.requires_grad]
        delay = GradientDelay(params, spec.delay) if spec.delay else None
        if delay is not None:
            _BESIDE[optimizer] = delay
        return cls(
            device=dev,
            dist=dist,
            model=model,
            train_model=train_model,
            data=data,
            optimizer=optimizer,
            opt_spec=opt_spec,
            base_lrs=[g["lr"] for g in optimizer.param_groups],
            params=params,
            amp_dtype=torch.bfloat16 if spec.amp == "bf16" else None,
            data_gen=data_gen,
            delay=delay,
        )

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def batches(self, start: int) -> Iterator[Any]:
        """The training stream from its beginning, advanced past ``start`` batches: cheaply by the
        task (``batches(..., start=k)`` replays the random draws without building the batches) or by
        drawing and dropping them."""
        rank, world = self.dist.rank, self.dist.world_size
        if start and "start" in inspect.signature(self.data.batches).parameters:
            return self.data.batches(self.data_gen, rank, world, start=start)
        stream = self.data.batches(self.data_gen, rank, world)
        for _ in range(start):
            next(stream)
        return stream

    def checkpoint(self, spec: RunSpec, state: LoopState) -> dict[str, Any]:
        """Everything needed to continue after ``state.done`` steps (see ``harness.run.checkpoint``)."""
        from harness.run.lineage import stamp

        saved = {
            **stamp(spec),  # whose checkpoint it is: run_id, identity, spec, optimizer_name
            "step": state.done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "loop": state.to_dict(),
            "rng": ckpt.capture_rng(),
        }
        if self.delay is not None:  # the stale gradients are optimizer state (absent at delay 0: as before)
            saved["delay"] = self.delay.state_dict()
        return saved

    def restore(self, loaded: Mapping[str, Any], spec: RunSpec, *, own: bool) -> LoopState:
        """Load a checkpoint into this session; returns the loop state to continue from. The base
        learning rates stay this spec's (the loop rescales them every step); the optimizer state is
        the checkpoint's (for a branch: the parent optimizer's, which this optimizer must accept), the
        gradient delay's ring too (a checkpoint of another delay is refused)."""
        from harness.run.lineage import BranchRefused

        def refuse(why: str) -> Exception:
            return ValueError(why) if own else BranchRefused(why)

        saved_delay = loaded.get("delay")
        if self.delay is None and saved_delay is not None:
            raise refuse(
                f"the checkpoint holds stale gradients of delay {saved_delay.get('delay')!r}, this run has "
                "delay 0: a run continues (or branches) only at its own delay"
            )
        if self.delay is not None:
            if saved_delay is None:
                raise refuse(
                    f"the checkpoint holds no gradient-delay state (a run without delay wrote it), this run "
                    f"has delay {self.delay.delay}: a run continues (or branches) only at its own delay"
                )
            try:
                self.delay.load_state_dict(saved_delay)
            except ValueError as exc:
                raise refuse(str(exc)) from None
        if not own:
            _check_run_length(self.optimizer, loaded, spec)
        self.model.load_state_dict(loaded["model"])
        try:
            self.optimizer.load_state_dict(loaded["optimizer"])
        except (KeyError, ValueError) as exc:
            if own:
                raise
            raise BranchRefused(
                f"optimizer {spec.optimizer} cannot start from a {loaded['optimizer_name']} "
                f"checkpoint: {type(exc).__name__}: {exc}"
            ) from None
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base
        ckpt.restore_rng(loaded["rng"])
        total = spec.train_steps
        assert total is not None  # a run's spec is resolved (steps set) before its session opens
        state = LoopState.from_dict(loaded["loop"], total, self.device)
        if not own:  # another optimizer: whether *this* one has diagnostics (SoftX's tau) is not known yet
            state.has_diagnostics = None
        return state


def _check_run_length(optimizer: torch.optim.Optimizer, loaded: Mapping[str, Any], spec: RunSpec) -> None:
    """A branch refuses a parent optimizer state that holds another run length (``total_steps`` in
    its param groups, the convention of ``optimizers/_switch.py``): loading it would keep the
    parent's length (saved values win), so e.g. a SoftSignum budget run branched from a full
    SoftSignum run would switch at the full run's step. Its parent is the sign method's run instead."""
    from harness.run.lineage import BranchRefused

    saved = loaded.get("optimizer", {}).get("param_groups", [])
    for mine, theirs in zip(optimizer.param_groups, saved):
        if "total_steps" in mine and "total_steps" in theirs and mine["total_steps"] != theirs["total_steps"]:
            raise BranchRefused(
                f"the parent's {loaded.get('optimizer_name')} state holds its own run length "
                f"({theirs['total_steps']} steps), this run takes {mine['total_steps']}: branch "
                f"{spec.optimizer} from the run of the optimizer it is before its switch"
            )


@dataclass
class LoopState:
    """What the loop accumulates step by step; ``to_dict`` is what a checkpoint keeps of it."""

    total: int
    losses: torch.Tensor  # per-step train loss, on the device
    done: int = 0  # optimizer steps taken
    checked: int = 0  # losses[:checked] are known finite
    curves: list[dict[str, Any]] = field(default_factory=list)  # eval / lr / optimizer diagnostics
    best_val: float = math.nan
    best_step: int = 0
    steps_to_target: int | None = None
    val_metrics: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    optimizer_seconds: float = 0.0
    has_diagnostics: bool | None = None  # unknown until the first sample
    resumed_at: int = 0  # step this process started from (0: from scratch)
    test_metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def fresh(cls, total: int, device: torch.device) -> LoopState:
        return cls(total=total, losses=torch.empty(total, device=device))

    _SAVED = (
        "done",
        "checked",
        "curves",
        "best_val",
        "best_step",
        "steps_to_target",
        "val_metrics",
        "train_seconds",
        "eval_seconds",
        "optimizer_seconds",
        "has_diagnostics",
    )

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self._SAVED}
        out["losses"] = self.losses[: self.done].tolist()
        return out

    @classmethod
    def from_dict(cls, saved: Mapping[str, Any], total: int, device: torch.device) -> LoopState:
        state = cls.fresh(total, device)
        for key in cls._SAVED:
            setattr(state, key, saved[key])
        state.curves = [dict(c) for c in saved["curves"]]
        state.val_metrics = dict(saved["val_metrics"])
        if saved["losses"]:
            state.losses[: len(saved["losses"])] = torch.tensor(saved["losses"], dtype=state.losses.dtype)
        return state
