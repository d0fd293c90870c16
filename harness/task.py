"""What a task is: plain data (a frozen record of builders and numbers), not a class tower.

A task module ``tasks/<name>.py`` exposes ``make(size, dataset=None, data_dir=None, **options) -> Task``
plus the module-level constants ``DESCRIPTION``, ``SIZES``, ``DATASETS`` (name -> one line),
``DEFAULT_DATASET`` (size -> dataset name) and ``OPTIONS`` (task option name -> default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import nn

SIZES = ("tiny", "small", "paper")


@dataclass(frozen=True)
class Metric:
    """A metric and its direction, declared once; every comparison goes through it."""

    name: str
    direction: Literal["max", "min"]

    def __post_init__(self) -> None:
        if self.direction not in ("max", "min"):
            raise ValueError(f"metric direction must be 'max' or 'min', got {self.direction!r}")

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b``; NaN is never better."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.direction == "max" else a < b

    @property
    def sign(self) -> float:
        """+1 when larger is better, -1 otherwise (to turn any metric into 'larger is better')."""
        return 1.0 if self.direction == "max" else -1.0


class TaskData(Protocol):
    """Data for one task, built once per run on the run's device.

    ``batches`` is an endless stream of training batches whose order (and any augmentation) is
    drawn only from ``generator``; under DDP each rank gets its own shard.
    """

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[Any]: ...


@dataclass(frozen=True)
class Task:
    """One benchmark workload at one size on one dataset.

    Builders:
      make_model(generator) -> nn.Module           init drawn only from ``generator``
      make_data(device) -> TaskData                deterministic (splits fixed by the task's data seed)
      loss(model, batch) -> scalar Tensor          training loss of one batch
      evaluate(model, data, split) -> dict         split in {"val", "test"}; contains ``metric.name``
                                                   and "loss"; called under no_grad with model.eval()
      roles(model) -> {role: [params]}             every trainable parameter exactly once
    Numbers: default step budget, eval cadence, LR schedule shape shared by every optimizer,
    gradient clipping, the value Optuna is told for a diverged run (``penalty``) and an optional
    ``target`` for steps-to-target.
    """

    name: str
    dataset: str
    size: str
    metric: Metric
    steps: int
    eval_every: int
    make_model: Callable[[torch.Generator], nn.Module]
    make_data: Callable[[torch.device], TaskData]
    loss: Callable[[nn.Module, Any], torch.Tensor]
    evaluate: Callable[[nn.Module, TaskData, str], dict[str, float]]
    roles: Callable[[nn.Module], dict[str, list[nn.Parameter]]]
    penalty: float
    target: float | None = None
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    grad_clip: float | None = None
    batch_size: int | None = None
    grad_accum: int = 1  # micro-batches per optimizer step: the loop splits each batch along dim 0
    options: Mapping[str, Any] = field(default_factory=dict)  # resolved task options, for the record
    description: str = ""

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown size {self.size!r}; known: {', '.join(SIZES)}")
        if self.steps < 1 or self.eval_every < 1 or self.grad_accum < 1:
            raise ValueError("steps, eval_every and grad_accum must be >= 1")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"unknown schedule {self.schedule!r}; known: constant, cosine, linear")


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator that draws batch randomness on ``device``: ``generator`` itself when it lives
    there, else one on ``device`` seeded from it (one host draw). Drawing indices on the host and
    copying them to a GPU every step would synchronise the stream on each copy (pageable memory), so
    the host could never queue steps ahead."""
    if generator.device.type == torch.device(device).type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def epoch_indices(n: int, batch_size: int, generator: torch.Generator, rank: int = 0,
                  world_size: int = 1) -> Iterator[torch.Tensor]:
    """Endless index batches over ``n`` training rows: a permutation per epoch, drawn from
    ``generator`` on its device, cut into batches of ``batch_size // world_size`` (the last partial
    batch is dropped). Under DDP every rank draws the same permutation (same generator seed) and keeps
    every world_size-th index, so the ranks' shards are disjoint and together form one global batch."""
    per_rank = max(1, batch_size // world_size)
    while True:
        perm = torch.randperm(n, generator=generator, device=generator.device)
        if world_size > 1:
            perm = perm[rank::world_size]
        size = min(per_rank, perm.numel())
        for start in range(0, perm.numel() - size + 1, size):
            yield perm[start:start + size]


def check_roles(model: nn.Module, roles: Mapping[str, list[nn.Parameter]]) -> None:
    """Raise ``AssertionError`` unless every trainable parameter has exactly one role."""
    from optimizers import ROLES

    bad = sorted(set(roles) - set(ROLES))
    assert not bad, f"unknown roles {bad}; known: {ROLES}"
    counts: dict[int, int] = {}
    for params in roles.values():
        for p in params:
            counts[id(p)] = counts.get(id(p), 0) + 1
    names = {id(p): n for n, p in model.named_parameters()}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in counts]
    twice = [names.get(i, "?") for i, c in counts.items() if c > 1]
    foreign = [i for i in counts if i not in names]
    assert not missing, f"parameters without a role: {missing}"
    assert not twice, f"parameters with several roles: {twice}"
    assert not foreign, "roles list parameters that are not in the model"


def roles_by_module(
    model: nn.Module,
    *,
    embedding: tuple[type[nn.Module], ...] = (nn.Embedding,),
    head: nn.Module | None = None,
    conv_first: nn.Module | None = None,
) -> dict[str, list[nn.Parameter]]:
    """The common role assignment: 1-D parameters are ``vector``; weights of ``embedding`` modules
    are ``embedding``; the weight(s) of ``head`` are ``head``; the weight of ``conv_first`` is
    ``conv_first``; every other parameter with ndim >= 2 is ``matrix``.

    Tied weights appear once (under the first role that claims them, embedding before head).
    """
    out: dict[str, list[nn.Parameter]] = {"matrix": [], "conv_first": [], "embedding": [], "head": [], "vector": []}
    seen: set[int] = set()

    def put(role: str, p: nn.Parameter) -> None:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            out[role].append(p)

    for module in model.modules():
        if isinstance(module, embedding):
            for p in module.parameters(recurse=False):
                put("embedding" if p.ndim >= 2 else "vector", p)
    if conv_first is not None:
        for p in conv_first.parameters():
            put("conv_first" if p.ndim >= 2 else "vector", p)
    if head is not None:
        for p in head.parameters():
            put("head" if p.ndim >= 2 else "vector", p)
    for p in model.parameters():
        put("matrix" if p.ndim >= 2 else "vector", p)
    return {k: v for k, v in out.items() if v}
