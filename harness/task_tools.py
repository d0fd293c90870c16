"""What a task's build step uses at run time: batch indices drawn on the run's device, and the
assignment and check of parameter roles (``harness.vocab.ROLES``: which optimizer treats which
parameter). Plugin authors import these from ``harness.task``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch
from torch import nn

from harness.vocab import ROLES

__all__ = ["device_generator", "epoch_indices", "check_roles", "roles_by_module"]


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """The generator that draws batch randomness on ``device``: ``generator`` itself when it lives
    there, else one on ``device`` seeded from it (one host draw). Drawing indices on the host and
    copying them to a GPU every step would synchronise the stream on each copy (pageable memory), so
    the host could never queue steps ahead."""
    if generator.device.type == torch.device(device).type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def epoch_indices(
    n: int, batch_size: int, generator: torch.Generator, rank: int = 0, world_size: int = 1
) -> Iterator[torch.Tensor]:
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
            yield perm[start : start + size]


def check_roles(model: nn.Module, roles: Mapping[str, list[nn.Parameter]]) -> None:
    """Raise ``AssertionError`` unless every trainable parameter has exactly one role."""
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
