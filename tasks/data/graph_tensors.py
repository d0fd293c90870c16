"""Graphs as tensors for node property prediction: the ``Graph`` record (CPU), the synthetic stochastic
block model, the conversion of a PyG ``Data`` object, the full-batch ``GraphData`` on the run's device,
the training objective and the node metrics.

``sbm_graph``: a planted-partition stochastic block model (Holland, Laskey, Leinhardt 1983) with noisy
class-dependent features, a pure function of ``(scale, split, seed)``. PyG's
``stochastic_blockmodel_graph`` enumerates all N^2 node pairs and draws from the global RNG, so edges
are sampled here in O(E) from an explicit generator and cleaned with PyG's ``to_undirected``.
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class SBMScale:
    """Shape of the synthetic graph: planted partition with ``classes`` equal blocks, mean degree
    ``degree``, a fraction ``homophily`` of edges inside a block; features = class centre (scale
    ``signal``) on ``informative`` of ``features`` dims plus unit noise, randomly rotated."""

    nodes: int
    classes: int
    features: int
    informative: int
    degree: int
    homophily: float = 0.5
    signal: float = 0.5


@functools.cache
def import_pyg() -> None:
    """Import torch_geometric once, silencing the ``torch.jit.script`` deprecation that PyG 2.8 triggers
    at import time on recent torch (not ours to fix, and noise in every CLI run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*")
        import torch_geometric  # noqa: F401


# --------------------------------------------------------------------------------------------------
# Graphs (CPU tensors, cached per process) and the data object


@dataclass(frozen=True)
class Graph:
    """One node-property-prediction graph on the CPU.

    ``y``: long class ids (multiclass, -1 where unlabeled), float 0/1 (binary) or float scaled targets
    (regression); ``splits``: "train"/"val"/"test" -> sorted node indices (labeled nodes only).
    """

    x: Tensor
    y: Tensor
    edge_index: Tensor
    splits: Mapping[str, Tensor]
    kind: str  # "multiclass" | "binary" | "regression"
    outputs: int


def _masks_to_splits(train: Tensor, val: Tensor, test: Tensor) -> dict[str, Tensor]:
    return {name: mask.nonzero().view(-1) for name, mask in (("train", train), ("val", val), ("test", test))}


def _random_splits(n: int, split: str, generator: torch.Generator) -> dict[str, Tensor]:
    """GraphLand's random split fractions: RL = 10/10/80, RH = 50/25/25 (train/val/test)."""
    fractions = {"RL": (0.1, 0.1), "RH": (0.5, 0.25)}[split]
    order = torch.randperm(n, generator=generator)
    n_train, n_val = (int(round(f * n)) for f in fractions)
    parts = (order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :])
    return {name: part.sort().values for name, part in zip(("train", "val", "test"), parts)}


def sbm_graph(scale: SBMScale, split: str = "RH", seed: int = 0) -> Graph:
    """The synthetic planted-partition graph, a pure function of ``(scale, split, seed)``.

    Each of ``nodes * degree / 2`` edges picks a uniform source and, with probability ``homophily``, a
    uniform target in the source's block, else one in a uniformly chosen other block; self-loops and
    duplicates are dropped and the graph made undirected. Features: class centres ``signal * N(0, I)``
    on ``informative`` dims plus N(0, 1) noise on all dims, rotated by a random orthogonal matrix so
    no single input carries the signal.
    """
    import_pyg()
    from torch_geometric.utils import remove_self_loops, to_undirected

    s = scale
    g = torch.Generator().manual_seed(seed)
    true = torch.randperm(s.nodes, generator=g) % s.classes  # balanced classes
    members = torch.argsort(true, stable=True)
    counts = torch.bincount(true, minlength=s.classes)
    starts = torch.cumsum(counts, 0) - counts

    m = s.nodes * s.degree // 2
    src = torch.randint(0, s.nodes, (m,), generator=g)
    same = torch.rand(m, generator=g) < s.homophily
    shift = torch.randint(1, s.classes, (m,), generator=g)
    block = torch.where(same, true[src], (true[src] + shift) % s.classes)
    pick = (torch.rand(m, generator=g) * counts[block]).long().clamp_max(counts[block] - 1)
    dst = members[starts[block] + pick]
    edge_index, _ = remove_self_loops(torch.stack([src, dst]))
    edge_index = to_undirected(edge_index, num_nodes=s.nodes)

    centres = s.signal * torch.randn(s.classes, s.informative, generator=g)
    x = torch.randn(s.nodes, s.features, generator=g)
    x[:, : s.informative] += centres[true]
    q, r = torch.linalg.qr(torch.randn(s.features, s.features, generator=g))
    x = x @ (q * torch.sign(torch.diagonal(r)))  # sign-fixed Q: the same rotation whatever the LAPACK

    return Graph(
        x=x.contiguous(),
        y=true,
        edge_index=edge_index,
        splits=_random_splits(s.nodes, split, g),
        kind="multiclass",
        outputs=s.classes,
    )


def graph_from_pyg(data: Any, kind: str, train: Tensor, val: Tensor, test: Tensor) -> Graph:
    y = data.y
    if kind == "multiclass":
        # GraphLand stores labels as floats with NaN on unlabeled nodes (never in a split mask).
        y = (y.nan_to_num(-1.0) if y.is_floating_point() else y).long()
        outputs = int(y.max()) + 1
    else:
        y = y.float()
        outputs = 1
    return Graph(
        x=data.x.float().contiguous(),
        y=y,
        edge_index=data.edge_index.long(),
        splits=_masks_to_splits(train, val, test),
        kind=kind,
        outputs=outputs,
    )


@dataclass(frozen=True)
class FullBatch:
    """One training step's input: the whole graph and this rank's training nodes."""

    x: Tensor
    edge_index: Tensor
    idx: Tensor
    target: Tensor
    kind: str


class GraphData:
    """A graph on the run's device. ``batches`` yields the full graph every step (no sampling, so the
    generator is unused); under DDP rank r trains on every ``world_size``-th training node."""

    def __init__(self, graph: Graph, device: torch.device, self_loops: bool):
        import_pyg()
        from torch_geometric.utils import add_self_loops, remove_self_loops

        edge_index = graph.edge_index
        if self_loops:  # GraphLand adds them for attention models: a node also attends to itself
            edge_index, _ = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=graph.x.shape[0])
        self.kind = graph.kind
        self.x = graph.x.to(device)
        self.y = graph.y.to(device)
        self.edge_index = edge_index.to(device)
        self.splits = {name: idx.to(device) for name, idx in graph.splits.items()}
        self._cache_model: Callable[[], nn.Module | None] = lambda: None
        self._cache_key: tuple = ()
        self._cache: Tensor | None = None

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[FullBatch]:
        idx = self.splits["train"][rank::world_size]
        batch = FullBatch(x=self.x, edge_index=self.edge_index, idx=idx, target=self.y[idx], kind=self.kind)
        while True:
            yield batch

    def predict(self, model: nn.Module) -> Tensor:
        """Full-graph output as float32, reused while the model and its parameters are unchanged (the
        val and test evaluations after the last step share one forward pass). Every in-place update
        (optimizer step, ``load_state_dict``) bumps a parameter's version counter, which invalidates it;
        the weak reference keeps a new model at a recycled address from hitting a stale entry."""
        key = (model.training, torch.is_grad_enabled(), tuple(p._version for p in model.parameters()))
        if self._cache is None or self._cache_model() is not model or key != self._cache_key:
            self._cache = model(self.x, self.edge_index).float()
            self._cache_model, self._cache_key = weakref.ref(model), key
        return self._cache


def objective(kind: str, out: Tensor, target: Tensor) -> Tensor:
    """Training loss: cross-entropy, BCE-with-logits or MSE (on scaled targets)."""
    out = out.float()
    if kind == "multiclass":
        return F.cross_entropy(out, target)
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(out, target)
    return F.mse_loss(out, target)


def score(metric: str, out: Tensor, target: Tensor) -> float:
    """``accuracy`` (argmax), ``ap`` / ``roc_auc`` (sklearn, on logits), ``r2`` (float64)."""
    if metric == "accuracy":
        return float((out.argmax(-1) == target).double().mean())
    if metric == "r2":
        y, p = target.double(), out.double()
        residual = (y - p).square().sum()
        total = (y - y.mean()).square().sum()
        return float(1.0 - residual / total)
    from sklearn.metrics import average_precision_score, roc_auc_score

    fn = average_precision_score if metric == "ap" else roc_auc_score
    return float(fn(target.cpu().numpy(), out.cpu().numpy()))
