"""Full-batch node property prediction with a graph transformer or GraphSAGE (GraphLand recipe).

Sources: GraphLand (Bazhenov, Platonov, Prokhorenkova, NeurIPS 2025 D&B, arXiv 2409.14500,
https://github.com/yandex-research/graphland: ``model.py``, ``dataset.py``) and the heterophilous
graphs of Platonov et al. (ICLR 2023, https://github.com/yandex-research/heterophilous-graphs:
``modules.py``). The Softsign paper (arXiv 2605.31371) reports "graph transformers on 7 GraphLand
datasets"; docs/protocol.md#graphland-gnn says what is and is not known about its setup.

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


Data (``tasks.data.graphs``): the 14 GraphLand datasets and the 5 heterophilous graphs through PyG, and an
offline stochastic block model (``sbm``) whose scale follows the size. Metrics by dataset (all ``max``):
accuracy, AP, ROC-AUC or R2; R2 is reported unclipped (it can be very negative for a bad run); a
diverged run is told to Optuna as ``penalty = -1`` (twice the squared error of predicting the mean),
an accuracy / AP / ROC-AUC run as ``0``. At small size the GT with AdamW defaults reaches about 90 %
validation accuracy on ``sbm`` (a logistic regression on the node features alone about 42 %).

``TASK.groups["graphland7"]`` is candidate (a) of docs/protocol.md#graphland-gnn for the Softsign
paper's unnamed 7 datasets: the four multi-million-node graphs dropped, one task per shared graph,
all three task types.

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

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from harness.errors import UserError
from harness.task import Option, Task, TaskRequest, TaskSpec, TinyRun, roles_by_module
from tasks.data import graphs
from tasks.data.graph_tensors import FullBatch, Graph, GraphData, import_pyg, objective, score

DESCRIPTION = "full-batch node property prediction: graph transformer or GraphSAGE on GraphLand / heterophilous graphs"
MODELS = ("gt", "sage")

OPTIONS = (
    Option("model", str, "gt", "gt (graph transformer, as in the Softsign paper) or sage", choices=MODELS),
    Option(
        "split",
        (str, int),
        None,
        "GraphLand: RL, RH, TH; sbm: RH, RL; heterophilous: fixed split 0..9",
        auto="dataset (GraphLand RL, sbm RH, heterophilous 0)",
    ),
    Option(
        "hidden", int, None, "width h", auto="size (16, 32, 512; 400 / 200 on GraphLand's largest graphs)", minimum=1
    ),
    Option("layers", int, None, "residual layers L", auto="size (1, 2, 3)", minimum=1),
    Option(
        "heads", int, None, "attention heads H (gt only)", auto="size (2, 4, 4; 8 on heterophilous sets)", minimum=1
    ),
    Option(
        "dropout",
        float,
        None,
        "dropout probability",
        auto="size (0, 0, 0.1; 0.2 on heterophilous sets)",
        minimum=0,
        below=1,
    ),
    Option("data_seed", int, 0, "seed of the synthetic graph (sbm only)", minimum=0),
)

# Per size: model shape, step budget and eval cadence. Paper = GraphLand defaults (L=3, h=512, H=4,
# 1000 full-batch steps); dropout is one point of GraphLand's grid {0, 0.1, 0.2}.
_SIZE: dict[str, dict[str, Any]] = {
    "tiny": {"hidden": 16, "layers": 1, "heads": 2, "dropout": 0.0, "steps": 40, "eval_every": 10},
    "small": {"hidden": 32, "layers": 2, "heads": 4, "dropout": 0.0, "steps": 150, "eval_every": 50},
    "paper": {"hidden": 512, "layers": 3, "heads": 4, "dropout": 0.1, "steps": 1000, "eval_every": 10},
}
# GraphLand shrinks the width on its largest graphs (memory); heterophilous-graphs uses 8 heads, dropout 0.2.
_PAPER_HIDDEN = {"pokec-regions": 400, "web-topics": 200, "web-fraud": 200, "web-traffic": 200}
# Steps-to-target thresholds on the synthetic graph (val accuracy): reached by tuned AdamW within the
# size's budget, not by a model that ignores the graph. Real datasets have none.
_SBM_TARGET = {"tiny": None, "small": 0.85, "paper": None}


# --------------------------------------------------------------------------------------------------
# Model

# --------------------------------------------------------------------------------------------------
# Model


class FeatureEmbedding(nn.Linear):
    """The first input Linear: maps raw node features into the model (role ``embedding``)."""


class NeighbourAttention(nn.Module):
    """Multi-head attention over each node's neighbours, then an output Linear and Dropout.

    PyG ``TransformerConv`` (Shi et al. 2020, "Masked label prediction", the local graph transformer
    GraphLand's GT uses) with ``root_weight=False``: the residual connection lives in the block.
    """

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        import_pyg()
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
        self.net = nn.Sequential(
            nn.Linear(dim, dim), nn.Dropout(dropout), nn.GELU(), nn.Linear(dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        return self.net(x)


class SAGEBlock(nn.Module):
    """GraphLand's GraphSAGE module: a Linear on [x_i, mean_j x_j] (PyG ``SAGEConv``: ``lin_r x_i +
    lin_l mean_j x_j``), then Dropout -> GELU -> Linear -> Dropout."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        import_pyg()
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

    def __init__(self, arch: str, in_dim: int, outputs: int, hidden: int, layers: int, heads: int, dropout: float):
        super().__init__()
        if arch not in MODELS:
            raise ValueError(f"unknown model {arch!r}; known: {', '.join(MODELS)}")
        self.input = nn.Sequential(
            FeatureEmbedding(in_dim, hidden), nn.Dropout(dropout), nn.GELU(), nn.Linear(hidden, hidden)
        )
        blocks: list[nn.Module] = []
        for _ in range(layers):
            if arch == "gt":
                blocks.append(PreNormResidual(hidden, NeighbourAttention(hidden, heads, dropout)))
                blocks.append(PreNormResidual(hidden, FeedForward(hidden, dropout)))
            else:
                blocks.append(PreNormResidual(hidden, SAGEBlock(hidden, dropout)))
        self.blocks = nn.ModuleList(blocks)
        self.output = nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, outputs)
        )

    @property
    def head(self) -> nn.Linear:
        return self.output[-1]

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        h = self.input(x)
        for block in self.blocks:
            h = block(h, edge_index)
        out = self.output(h)
        return out.squeeze(-1) if out.shape[-1] == 1 else out


def build_model(
    generator: torch.Generator,
    *,
    arch: str,
    in_dim: int,
    outputs: int,
    hidden: int,
    layers: int,
    heads: int,
    dropout: float,
) -> NodeModel:
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
# Loss, evaluation and the record


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


def resolve(request: TaskRequest) -> TaskRequest:
    """Shape defaults by size (and dataset at paper size), the split checked against the dataset."""
    size, dataset, chosen = request.size, request.dataset, request.options
    family = graphs.family_of(dataset)
    base = dict(_SIZE[size])
    if size == "paper":
        base["hidden"] = _PAPER_HIDDEN.get(dataset, base["hidden"])
        if family == "heterophilous":
            base.update(heads=8, dropout=0.2)
    picked = {
        key: base[key] if chosen[key] is None else chosen[key] for key in ("hidden", "layers", "heads", "dropout")
    }
    if chosen["model"] == "gt" and picked["hidden"] % picked["heads"]:
        raise UserError(
            f"invalid hidden/heads: hidden {picked['hidden']} must be a multiple of heads {picked['heads']}"
        )
    resolved: dict[str, Any] = {
        "model": chosen["model"],
        "split": graphs.resolve_split(dataset, chosen["split"]),
        **picked,
        "dropout": float(picked["dropout"]),
    }
    if family == "synthetic":
        resolved["data_seed"] = chosen["data_seed"]
    elif chosen["data_seed"] != 0:
        raise UserError(f"option data_seed applies to the synthetic dataset only (sbm), not to {dataset}")
    return TaskRequest(request.task, size, dataset, resolved, request.dataset_given)


def locate(request: TaskRequest, data_dir: Path) -> graphs.GraphKey:
    opts = request.options
    return graphs.locate(request.dataset, data_dir, opts["split"], request.size, opts.get("data_seed", 0))


def build(request: TaskRequest, graph: Graph) -> Task:
    """The task on a loaded graph (pure)."""
    size, dataset, opts = request.size, request.dataset, dict(request.options)
    metric = graphs.metric_of(dataset)

    def make_model(generator: torch.Generator) -> NodeModel:
        return build_model(
            generator,
            arch=opts["model"],
            in_dim=graph.x.shape[1],
            outputs=graph.outputs,
            hidden=opts["hidden"],
            layers=opts["layers"],
            heads=opts["heads"],
            dropout=opts["dropout"],
        )

    def make_data(device: torch.device) -> GraphData:
        return GraphData(graph, torch.device(device), self_loops=opts["model"] == "gt")

    return Task(
        name="gnn_graphland",
        dataset=dataset,
        size=size,
        metric=graphs.METRICS[metric],
        steps=_SIZE[size]["steps"],
        eval_every=_SIZE[size]["eval_every"],
        make_model=make_model,
        make_data=make_data,
        loss=_loss,
        evaluate=_evaluator(metric),
        roles=parameter_roles,
        penalty=graphs.penalty_of(metric),
        target=_SBM_TARGET[size] if graphs.family_of(dataset) == "synthetic" else None,
        schedule="constant",
        warmup_fraction=0.0,
        grad_clip=None,  # GraphLand: constant LR, no warmup
        options=opts,
        description=f"{opts['model']} (L={opts['layers']}, h={opts['hidden']}) on {dataset} split {opts['split']}, {metric}",
    )


TASK = TaskSpec(
    name="gnn_graphland",
    description=DESCRIPTION,
    datasets=graphs.DATASETS,
    default_dataset={"tiny": "sbm", "small": "sbm", "paper": "tolokers-2"},
    options=OPTIONS,
    metrics=tuple(graphs.METRICS.values()),
    resolve=resolve,
    locate=locate,
    load=graphs.load,
    build=build,
    groups=graphs.DATASET_GROUPS,
    # Full-batch steps on a 240-node graph: the loss moves little per step at any stable rate.
    tiny=TinyRun(steps=20, lr_position=0.9, window=3, min_drop=0.02),
)
