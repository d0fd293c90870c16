"""Full-batch node property prediction with a graph transformer or GraphSAGE (GraphLand recipe).

Sources: GraphLand (Bazhenov, Platonov, Prokhorenkova, NeurIPS 2025 D&B, arXiv 2409.14500,
https://github.com/yandex-research/graphland: ``model.py``, ``dataset.py``) and the heterophilous
graphs of Platonov et al. (ICLR 2023, https://github.com/yandex-research/heterophilous-graphs:
``modules.py``). The Softsign paper (arXiv 2605.31371) reports "graph transformers on 7 GraphLand
datasets"; see ../shared/PROTOCOL.md section 2 for what is and is not known about its setup.

Model (GraphLand defaults, one code path for every dataset):
  input     Linear(d_in -> h) -> Dropout -> GELU -> Linear(h -> h)
  blocks    L pre-norm residual blocks ``x <- x + M(LN(x))``:
            gt:   M = neighbour attention (PyG ``TransformerConv(h, h/H, heads=H, root_weight=False)``:
                  per-head softmax of q_i.k_j/sqrt(h/H) over the neighbours j of i, self-loops added),
                  then Linear(h -> h) -> Dropout; and a second block M = FFN
                  Linear(h -> h) -> Dropout -> GELU -> Linear(h -> h) -> Dropout   (2 blocks per layer)
            sage: M = ``SAGEConv(h, h)`` (= a Linear on [x_i, mean_j x_j], GraphLand's SAGE module)
                  -> Dropout -> GELU -> Linear(h -> h) -> Dropout                (1 block per layer)
  output    LN -> Linear(h -> h) -> GELU -> Linear(h -> outputs)
The heterophilous-graphs code ends in LN -> Linear; we keep GraphLand's output MLP for every dataset.

Parameter roles (for hybrid optimizers such as Muon): every hidden Linear weight (attention q/k/v and
output, FFN, SAGE, the second input Linear and the first output Linear) is ``matrix``; the first input
Linear, which maps the raw feature vector (numerical features and one-hot categories) into the model, is
``embedding``, following the Muon reference convention that the input layer is not a hidden matrix (the
same rule keeps CIFAR's stem conv out of Muon); the last output Linear is ``head``; LayerNorm gains and
all biases are ``vector``.

Training (GraphLand): full batch (every step sees the whole graph; the loss is over the training nodes),
constant LR without warmup (``Task.schedule = "constant"``, ``warmup_fraction = 0``), no gradient
clipping, 1000 steps at paper size. GraphLand reports the test value at the best validation step; the
harness records the final and the best validation value. Losses: cross-entropy (multiclass),
BCE-with-logits (binary), MSE on standard-scaled targets (regression).

Metrics (all ``max``): ``accuracy`` (multiclass), ``ap`` = average precision (GraphLand binary),
``roc_auc`` (binary heterophilous sets, as in Platonov et al.), ``r2`` (regression). R2 is computed on
the scaled targets: PyG's regression transform is affine (standard or min-max scaler) and R2 is
invariant under one affine map applied to both targets and predictions, so this equals GraphLand's R2
on inverse-transformed targets. R2 is reported unclipped (it can be very negative for a bad run); a
diverged run is told to Optuna as ``penalty = -1`` (twice the squared error of predicting the mean),
an accuracy / AP / ROC-AUC run as ``0``.

Datasets:
  * the 14 GraphLand datasets via ``torch_geometric.datasets.GraphLandDataset`` (PyG downloads the zip
    from zenodo into ``<data_dir>/graphland``), splits ``RL`` (10/10/80 random), ``RH`` (50/25/25
    random), ``TH`` (50/25/25 temporal; not for city-reviews, city-roads-M, city-roads-L, web-traffic).
    The inductive ``THI`` setting (three graph snapshots) is not supported.
  * the heterophilous graphs roman-empire, amazon-ratings (accuracy), minesweeper, tolokers, questions
    (ROC-AUC) via ``torch_geometric.datasets.HeterophilousGraphDataset`` (PyG downloads the .npz into
    ``<data_dir>/heterophilous``), ``split`` = index 0..9 of their 10 fixed 50/25/25 splits.
  * ``sbm``: an offline planted-partition stochastic block model (Holland, Laskey, Leinhardt 1983)
    with noisy class-dependent features, generated deterministically from ``data_seed``; its scale
    follows the size. At small size (1,500 nodes, 6 classes, homophily 0.8, mean degree 6) a logistic
    regression reaches about 42 % validation accuracy on the node features alone, 73 % with the 1-hop
    neighbour mean added and 86 % with the 2-hop mean too; the small GT with AdamW defaults about 90 %.
    So the graph matters, and 100 % is out of reach (the classes overlap). PyG's
    ``stochastic_blockmodel_graph`` enumerates all N^2 node pairs and draws from the global RNG, so
    edges are sampled here in O(E) from an explicit generator and cleaned with PyG's ``to_undirected``.

``DATASET_GROUPS["graphland7"]`` is PROTOCOL's candidate (a) for the Softsign paper's unnamed 7
datasets: the four multi-million-node graphs dropped, one task per shared graph, all three task types.

Options (None = the size's / dataset's default, resolved into ``Task.options``):
  model     "gt" (graph transformer, as in the Softsign paper) or "sage"
  split     GraphLand: "RL" (default), "RH", "TH"; sbm: "RH" (default), "RL"; heterophilous: 0..9 (default 0)
  hidden    width h (tiny 16, small 32, paper 512; paper pokec-regions 400 and web-* 200 as in GraphLand)
  layers    L (tiny 1, small 2, paper 3)
  heads     attention heads H (tiny 2, small 4, paper 4; 8 for the heterophilous sets), gt only
  dropout   (tiny 0, small 0 (CPU cost), paper 0.1 from GraphLand's grid {0, 0.1, 0.2}; 0.2 on heterophilous sets)
  data_seed seed of the synthetic graph (sbm only)
"""

from __future__ import annotations

import functools
import math
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.errors import UserError, missing_data, unknown
from harness.paths import data_dir as resolve_data_dir
from harness.paths import offline
from harness.task import Metric, Task, roles_by_module

DESCRIPTION = "full-batch node property prediction: graph transformer or GraphSAGE on GraphLand / heterophilous graphs"
SIZES = ("tiny", "small", "paper")

GRAPHLAND_URL = "https://zenodo.org/records/16895532/files/{name}.zip"
HETEROPHILOUS_URL = "https://github.com/yandex-research/heterophilous-graphs/raw/main/data/{file}.npz"

# name -> (task type, nodes, directed?). Task types as in PyG's GraphLandDataset.
GRAPHLAND: dict[str, tuple[str, int, bool]] = {
    "hm-categories": ("multiclass", 46_563, False),
    "pokec-regions": ("multiclass", 1_632_803, True),
    "web-topics": ("multiclass", 2_890_331, True),
    "tolokers-2": ("binary", 11_758, False),
    "city-reviews": ("binary", 148_801, False),
    "artnet-exp": ("binary", 50_405, False),
    "web-fraud": ("binary", 2_890_331, True),
    "hm-prices": ("regression", 46_563, False),
    "avazu-ctr": ("regression", 76_269, False),
    "city-roads-M": ("regression", 57_073, True),
    "city-roads-L": ("regression", 142_257, True),
    "twitch-views": ("regression", 168_114, False),
    "artnet-views": ("regression", 50_405, False),
    "web-traffic": ("regression", 2_890_331, True),
}
GRAPHLAND_SPLITS = ("RL", "RH", "TH")
NO_TEMPORAL_SPLIT = ("city-reviews", "city-roads-M", "city-roads-L", "web-traffic")

# name -> (task type, nodes, classes). Metrics as in Platonov et al.: accuracy, or ROC-AUC for binary.
HETEROPHILOUS: dict[str, tuple[str, int, int]] = {
    "roman-empire": ("multiclass", 22_662, 18),
    "amazon-ratings": ("multiclass", 24_492, 5),
    "minesweeper": ("binary", 10_000, 2),
    "tolokers": ("binary", 11_758, 2),
    "questions": ("binary", 48_921, 2),
}
HETEROPHILOUS_SPLITS = 10

_METRIC = {
    ("graphland", "multiclass"): "accuracy",
    ("graphland", "binary"): "ap",
    ("graphland", "regression"): "r2",
    ("heterophilous", "multiclass"): "accuracy",
    ("heterophilous", "binary"): "roc_auc",
    ("synthetic", "multiclass"): "accuracy",
}
_PENALTY = {"accuracy": 0.0, "ap": 0.0, "roc_auc": 0.0, "r2": -1.0}


def _describe_graphland(name: str) -> str:
    kind, nodes, directed = GRAPHLAND[name]
    metric = {"multiclass": "accuracy", "binary": "AP", "regression": "R2"}[kind]
    return (f"GraphLand {name}: {nodes:,} nodes, {'directed' if directed else 'undirected'}, {kind} "
            f"({metric}); downloads {GRAPHLAND_URL.format(name=name)}")


def _describe_heterophilous(name: str) -> str:
    kind, nodes, classes = HETEROPHILOUS[name]
    metric = "accuracy" if kind == "multiclass" else "ROC-AUC"
    return (f"heterophilous {name}: {nodes:,} nodes, {classes} classes ({metric}), 10 fixed splits; "
            f"downloads from github.com/yandex-research/heterophilous-graphs")


DATASETS: dict[str, str] = {
    "sbm": "offline synthetic stochastic block model with noisy class features (accuracy); scale set by size",
    **{name: _describe_graphland(name) for name in GRAPHLAND},
    **{name: _describe_heterophilous(name) for name in HETEROPHILOUS},
}

DATASET_GROUPS: dict[str, tuple[str, ...]] = {
    # PROTOCOL.md section 2, candidate (a): the Softsign paper's 7 GraphLand datasets are not named.
    "graphland7": ("hm-categories", "artnet-exp", "city-roads-M", "tolokers-2", "city-reviews",
                   "avazu-ctr", "twitch-views"),
    "graphland": tuple(GRAPHLAND),
    "heterophilous": tuple(HETEROPHILOUS),
}

DEFAULT_DATASET = {"tiny": "sbm", "small": "sbm", "paper": "tolokers-2"}

OPTIONS: dict[str, Any] = {
    "model": "gt",
    "split": None,
    "hidden": None,
    "layers": None,
    "heads": None,
    "dropout": None,
    "data_seed": 0,
}
MODELS = ("gt", "sage")

# Per size: model shape, step budget and eval cadence. Paper = GraphLand defaults (L=3, h=512, H=4,
# 1000 full-batch steps); dropout is one point of GraphLand's grid {0, 0.1, 0.2}.
_SIZE: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.0, "steps": 40, "eval_every": 10},
    "small": {"hidden": 32, "layers": 2, "heads": 4, "dropout": 0.0, "steps": 150, "eval_every": 50},
    "paper": {"hidden": 512, "layers": 3, "heads": 4, "dropout": 0.1, "steps": 1000, "eval_every": 10},
}
# GraphLand shrinks the width on its largest graphs (memory); heterophilous-graphs uses 8 heads, dropout 0.2.
_PAPER_HIDDEN = {"pokec-regions": 400, "web-topics": 200, "web-fraud": 200, "web-traffic": 200}


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


_SBM: dict[str, SBMScale] = {
    "tiny": SBMScale(nodes=240, classes=3, features=8, informative=4, degree=6),
    "small": SBMScale(nodes=1500, classes=6, features=32, informative=8, degree=6, homophily=0.8, signal=0.4),
    "paper": SBMScale(nodes=100_000, classes=10, features=64, informative=16, degree=20),
}
# Steps-to-target thresholds on the synthetic graph (val accuracy): reached by tuned AdamW within the
# size's budget, not by a model that ignores the graph. Real datasets have none.
_SBM_TARGET = {"tiny": None, "small": 0.85, "paper": None}


# --------------------------------------------------------------------------------------------------
# Model


@functools.cache
def _import_pyg() -> None:
    """Import torch_geometric once, silencing the ``torch.jit.script`` deprecation that PyG 2.8 triggers
    at import time on recent torch (not ours to fix, and noise in every CLI run)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*")
        import torch_geometric  # noqa: F401


class FeatureEmbedding(nn.Linear):
    """The first input Linear: maps raw node features into the model (role ``embedding``)."""


class NeighbourAttention(nn.Module):
    """Multi-head attention over each node's neighbours, then an output Linear and Dropout.

    PyG ``TransformerConv`` (Shi et al. 2020, "Masked label prediction", the local graph transformer
    GraphLand's GT uses) with ``root_weight=False``: the residual connection lives in the block.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        _import_pyg()
        from torch_geometric.nn import TransformerConv

        self.conv = TransformerConv(dim, dim // heads, heads=heads, concat=True, root_weight=False)
        # TransformerConv builds its skip Linear even when root_weight=False and never uses it; drop it
        # so every parameter of the model receives a gradient.
        self.conv.lin_skip = None
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.dropout(self.out(self.conv(x, edge_index)))


class FeedForward(nn.Module):
    """Linear -> Dropout -> GELU -> Linear -> Dropout (GraphLand's FFN, hidden multiplier 1)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout), nn.GELU(), nn.Linear(dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.net(x)


class SAGEBlock(nn.Module):
    """GraphLand's GraphSAGE module: a Linear on [x_i, mean_j x_j] (PyG ``SAGEConv``: ``lin_r x_i +
    lin_l mean_j x_j``), then Dropout -> GELU -> Linear -> Dropout."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        _import_pyg()
        from torch_geometric.nn import SAGEConv

        self.conv = SAGEConv(dim, dim, aggr="mean")
        self.rest = nn.Sequential(nn.Dropout(dropout), nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.rest(self.conv(x, edge_index))


class PreNormResidual(nn.Module):
    """``x <- x + module(LayerNorm(x))``."""

    def __init__(self, dim: int, module: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.module = module

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return x + self.module(self.norm(x), edge_index)


class NodeModel(nn.Module):
    """GraphLand's residual graph network: input MLP, ``layers`` residual layers, output MLP.

    ``forward(x, edge_index)`` returns ``[N, outputs]`` logits, or ``[N]`` when ``outputs == 1``.
    """

    def __init__(self, arch: str, in_dim: int, outputs: int, hidden: int, layers: int, heads: int,
                 dropout: float):
        super().__init__()
        if arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; known: {', '.join(MODELS)}")
        self.input = nn.Sequential(FeatureEmbedding(in_dim, hidden), nn.Dropout(dropout), nn.GELU(),
                                   nn.Linear(hidden, hidden))
        blocks: list[nn.Module] = []
        for _ in range(layers):
            if arch == "gt":
                blocks.append(PreNormResidual(hidden, NeighbourAttention(hidden, heads, dropout)))
                blocks.append(PreNormResidual(hidden, FeedForward(hidden, dropout)))
            else:
                blocks.append(PreNormResidual(hidden, SAGEBlock(hidden, dropout)))
        self.blocks = nn.ModuleList(blocks)
        self.output = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(),
                                    nn.Linear(hidden, outputs))

    @property
    def head(self) -> nn.Linear:
        return self.output[-1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h, edge_index)
        out = self.output(h)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def build_model(generator: torch.Generator, *, arch: str, in_dim: int, outputs: int, hidden: int,
                layers: int, heads: int, dropout: float) -> NodeModel:
    """A ``NodeModel`` whose initialisation is drawn only from ``generator``.

    PyG's Linear layers initialise from the global RNG, so the model is built under a forked CPU RNG
    seeded from ``generator``; the caller's global RNG state is left untouched.
    """
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device="cpu"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NodeModel(arch, in_dim, outputs, hidden, layers, heads, dropout)


def parameter_roles(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Roles as in the module docstring: input Linear ``embedding``, last Linear ``head``, 1-D
    ``vector``, every other weight ``matrix``."""
    head = model.head if isinstance(model, NodeModel) else None
    return roles_by_module(model, embedding=(FeatureEmbedding,), head=head)


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
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    return {name: part.sort().values for name, part in zip(("train", "val", "test"), parts)}


@functools.lru_cache(maxsize=4)
def sbm_graph(scale: SBMScale, split: str = "RH", seed: int = 0) -> Graph:
    """The synthetic planted-partition graph, a pure function of ``(scale, split, seed)``.

    Each of ``nodes * degree / 2`` edges picks a uniform source and, with probability ``homophily``, a
    uniform target in the source's block, else one in a uniformly chosen other block; self-loops and
    duplicates are dropped and the graph made undirected. Features: class centres ``signal * N(0, I)``
    on ``informative`` dims plus N(0, 1) noise on all dims, rotated by a random orthogonal matrix so
    no single input carries the signal.
    """
    _import_pyg()
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
    x[:, :s.informative] += centres[true]
    q, r = torch.linalg.qr(torch.randn(s.features, s.features, generator=g))
    x = x @ (q * torch.sign(torch.diagonal(r)))  # sign-fixed Q: the same rotation whatever the LAPACK

    return Graph(x=x.contiguous(), y=true, edge_index=edge_index, splits=_random_splits(s.nodes, split, g),
                 kind="multiclass", outputs=s.classes)


def _graph_from_pyg(data: Any, kind: str, train: Tensor, val: Tensor, test: Tensor) -> Graph:
    y = data.y
    if kind == "multiclass":
        # GraphLand stores labels as floats with NaN on unlabeled nodes (never in a split mask).
        y = (y.nan_to_num(-1.0) if y.is_floating_point() else y).long()
        outputs = int(y.max()) + 1
    else:
        y = y.float()
        outputs = 1
    return Graph(x=data.x.float().contiguous(), y=y, edge_index=data.edge_index.long(),
                 splits=_masks_to_splits(train, val, test), kind=kind, outputs=outputs)


@functools.lru_cache(maxsize=2)
def graphland_graph(root: str, name: str, split: str) -> Graph:
    """GraphLand ``name`` with ``split`` via PyG's ``GraphLandDataset`` (PyG's default transforms:
    quantile-normal numerical features, one-hot categoricals, standard-scaled regression targets,
    undirected graph). Downloads into ``root`` when the raw files are missing."""
    _import_pyg()
    from torch_geometric.datasets import GraphLandDataset

    data = GraphLandDataset(root=root, name=name, split=split)[0]
    return _graph_from_pyg(data, GRAPHLAND[name][0], data.train_mask, data.val_mask, data.test_mask)


@functools.lru_cache(maxsize=2)
def heterophilous_graph(root: str, name: str, split: int) -> Graph:
    """Heterophilous graph ``name`` with fixed split ``split`` (0..9) via PyG's
    ``HeterophilousGraphDataset`` (undirected). Downloads into ``root`` when the file is missing."""
    _import_pyg()
    from torch_geometric.datasets import HeterophilousGraphDataset

    data = HeterophilousGraphDataset(root=root, name=name)[0]
    masks = (data.train_mask[:, split], data.val_mask[:, split], data.test_mask[:, split])
    return _graph_from_pyg(data, HETEROPHILOUS[name][0], *masks)


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
        _import_pyg()
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


def _loss(model: nn.Module, batch: FullBatch) -> Tensor:
    return objective(batch.kind, model(batch.x, batch.edge_index)[batch.idx], batch.target)


def _evaluator(metric: str) -> Callable[[nn.Module, GraphData, str], dict[str, float]]:
    def evaluate(model: nn.Module, data: GraphData, split: str) -> dict[str, float]:
        if split not in ("val", "test"):
            raise ValueError(f"unknown split {split!r}; known: test, val")
        idx = data.splits[split]
        out, target = data.predict(model)[idx], data.y[idx]
        if not bool(torch.isfinite(out).all()):
            return {metric: math.nan, "loss": math.nan}
        return {metric: score(metric, out, target), "loss": float(objective(data.kind, out, target))}

    return evaluate


# --------------------------------------------------------------------------------------------------
# Data files: present, downloaded, or a clear error


GRAPHLAND_FILES = ("info.yaml", "features.csv", "targets.csv", "edgelist.csv")


def _ensure_graphland(root: Path, name: str, split: str) -> None:
    raw = root / name / "raw" / name
    needed = (*GRAPHLAND_FILES, f"split_masks_{split}.csv")
    missing = [f for f in needed if not (raw / f).is_file()]
    if not missing:
        return
    url = GRAPHLAND_URL.format(name=name)
    how = f"download {url} and unzip it into {root / name / 'raw'} (so that {raw / 'info.yaml'} exists)"
    if raw.exists():  # PyG only downloads when the folder is absent; a partial folder is the user's to fix
        raise missing_data(f"GraphLand {name} file {missing[0]}", raw / missing[0], how)
    if offline():
        raise missing_data(f"GraphLand dataset {name}", raw / missing[0], how)
    try:
        graphland_graph(str(root), name, split)
    except Exception as exc:  # network errors come in many types; the message names the file either way
        raise missing_data(f"GraphLand dataset {name} (download failed: {exc})", raw / missing[0], how) from exc


def _heterophilous_file(name: str) -> str:
    return name.replace("-", "_")  # PyG's folder and file naming


def _ensure_heterophilous(root: Path, name: str) -> None:
    file = _heterophilous_file(name)
    path = root / file / "raw" / f"{file}.npz"
    if path.is_file():
        return
    how = f"download {HETEROPHILOUS_URL.format(file=file)} into {path.parent}"
    if offline():
        raise missing_data(f"heterophilous dataset {name}", path, how)
    try:
        heterophilous_graph(str(root), name, 0)
    except Exception as exc:
        raise missing_data(f"heterophilous dataset {name} (download failed: {exc})", path, how) from exc


# --------------------------------------------------------------------------------------------------
# Options and make()


def _family(dataset: str) -> str:
    if dataset in GRAPHLAND:
        return "graphland"
    if dataset in HETEROPHILOUS:
        return "heterophilous"
    return "synthetic"


def _int_option(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UserError(f"invalid {name}: {value!r} (must be an integer >= {minimum})")
    return value


def _resolve_split(dataset: str, family: str, split: Any) -> str | int:
    if family == "heterophilous":
        if split is None:
            return 0
        if isinstance(split, str) and split.strip().isdigit():
            split = int(split)
        if not isinstance(split, int) or isinstance(split, bool) or not 0 <= split < HETEROPHILOUS_SPLITS:
            raise UserError(f"invalid split {split!r} for {dataset}; known: the fixed split indices "
                            f"0..{HETEROPHILOUS_SPLITS - 1}")
        return split
    if split is None:
        # GraphLand's default is RL (PROTOCOL); the synthetic graph uses RH so that validation and
        # training sets are large enough for a low-noise demo comparison.
        return "RL" if family == "graphland" else "RH"
    known = GRAPHLAND_SPLITS if family == "graphland" else ("RL", "RH")
    if split == "THI":
        raise UserError(f"split 'THI' (inductive, three graph snapshots) is not supported; known: {', '.join(known)}")
    if split not in known:
        raise unknown(f"split for {dataset}", split, known)
    if split == "TH" and dataset in NO_TEMPORAL_SPLIT:
        raise UserError(f"split 'TH' does not exist for {dataset} (no temporal split for "
                        f"{', '.join(NO_TEMPORAL_SPLIT)}); known: RL, RH")
    return split


def _resolve_options(size: str, dataset: str, family: str, options: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise UserError(f"unknown option(s) {', '.join(map(repr, bad))} for task gnn_graphland; "
                        f"known: {', '.join(OPTIONS)}")
    chosen = {**OPTIONS, **options}
    base = dict(_SIZE[size])
    if size == "paper":
        base["hidden"] = _PAPER_HIDDEN.get(dataset, base["hidden"])
        if family == "heterophilous":
            base.update(heads=8, dropout=0.2)

    model = chosen["model"]
    if model not in MODELS:
        raise unknown("model", model, MODELS)
    hidden = _int_option("hidden", base["hidden"] if chosen["hidden"] is None else chosen["hidden"], 1)
    layers = _int_option("layers", base["layers"] if chosen["layers"] is None else chosen["layers"], 1)
    heads = _int_option("heads", base["heads"] if chosen["heads"] is None else chosen["heads"], 1)
    if model == "gt" and hidden % heads:
        raise UserError(f"invalid hidden/heads: hidden {hidden} must be a multiple of heads {heads}")
    dropout = base["dropout"] if chosen["dropout"] is None else chosen["dropout"]
    if isinstance(dropout, str):
        try:
            dropout = float(dropout)
        except ValueError:
            pass
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise UserError(f"invalid dropout: {dropout!r} (must lie in [0, 1))")
    resolved: dict[str, Any] = {
        "model": model,
        "split": _resolve_split(dataset, family, chosen["split"]),
        "hidden": hidden,
        "layers": layers,
        "heads": heads,
        "dropout": float(dropout),
    }
    if family == "synthetic":
        resolved["data_seed"] = _int_option("data_seed", chosen["data_seed"], 0)
    elif "data_seed" in options and options["data_seed"] != OPTIONS["data_seed"]:
        raise UserError(f"option data_seed applies to the synthetic dataset only (sbm), not to {dataset}")
    return resolved


def make(size: str = "tiny", dataset: str | None = None, data_dir: str | None = None, **options: Any) -> Task:
    """Build the task at ``size`` on ``dataset`` (``DEFAULT_DATASET[size]`` when None).

    Raises ``UserError`` for an unknown size / dataset / option or an impossible value (before any
    data is touched), and for missing real-data files when offline or when the download fails.
    Real graphs are loaded (and processed by PyG on first use) lazily, when the model or the data is
    built; the synthetic graph's shape is known without generating it.
    """
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    dataset = DEFAULT_DATASET[size] if dataset is None else dataset
    if dataset in DATASET_GROUPS:
        raise UserError(f"{dataset!r} is a group of datasets, not one; run each of: "
                        f"{', '.join(DATASET_GROUPS[dataset])}")
    if dataset not in DATASETS:
        raise unknown("dataset", dataset, DATASETS)
    family = _family(dataset)
    opts = _resolve_options(size, dataset, family, options)
    split = opts["split"]

    load: Callable[[], Graph]
    if family == "synthetic":
        scale = _SBM[size]
        kind, dims = "multiclass", (scale.features, scale.classes)

        def load() -> Graph:
            return sbm_graph(scale, split, opts["data_seed"])

    elif family == "graphland":
        root = resolve_data_dir(data_dir) / "graphland"
        _ensure_graphland(root, dataset, split)
        kind, dims = GRAPHLAND[dataset][0], None

        def load() -> Graph:
            return graphland_graph(str(root), dataset, split)

    else:
        root = resolve_data_dir(data_dir) / "heterophilous"
        _ensure_heterophilous(root, dataset)
        kind, dims = HETEROPHILOUS[dataset][0], None

        def load() -> Graph:
            return heterophilous_graph(str(root), dataset, split)

    metric = _METRIC[(family, kind)]

    def make_model(generator: torch.Generator) -> NodeModel:
        if dims is None:
            with torch.device("cpu"):  # the caller may build the model under torch.device("meta")
                graph = load()
            in_dim, outputs = graph.x.shape[1], graph.outputs
        else:
            in_dim, outputs = dims
        return build_model(generator, arch=opts["model"], in_dim=in_dim, outputs=outputs,
                           hidden=opts["hidden"], layers=opts["layers"], heads=opts["heads"],
                           dropout=opts["dropout"])

    def make_data(device: torch.device) -> GraphData:
        return GraphData(load(), torch.device(device), self_loops=opts["model"] == "gt")

    target = _SBM_TARGET[size] if family == "synthetic" else None
    return Task(
        name="gnn_graphland",
        dataset=dataset,
        size=size,
        metric=Metric(metric, "max"),
        steps=_SIZE[size]["steps"],
        eval_every=_SIZE[size]["eval_every"],
        make_model=make_model,
        make_data=make_data,
        loss=_loss,
        evaluate=_evaluator(metric),
        roles=parameter_roles,
        penalty=_PENALTY[metric],
        target=target,
        schedule="constant",  # GraphLand: constant LR, no warmup
        warmup_fraction=0.0,
        grad_clip=None,
        options=opts,
        description=f"{opts['model']} (L={opts['layers']}, h={opts['hidden']}) on {dataset} split {split}, {metric}",
    )
