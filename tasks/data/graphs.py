"""Graphs for node property prediction: GraphLand and the heterophilous graphs (through PyG), and an
offline synthetic stochastic block model; the catalogue, the files (present, downloaded by PyG, or a
clear error), the splits, and ``locate`` / ``load``. The tensors (``Graph``, the SBM sampler, full-batch
``GraphData`` on the device, the objective and the node metrics) live in ``tasks.data.graph_tensors``.

Sources: GraphLand (Bazhenov, Platonov, Prokhorenkova, NeurIPS 2025 D&B, arXiv 2409.14500,
https://github.com/yandex-research/graphland: ``dataset.py``) and the heterophilous graphs of Platonov
et al. (ICLR 2023, https://github.com/yandex-research/heterophilous-graphs).

  * the 14 GraphLand datasets via ``torch_geometric.datasets.GraphLandDataset`` (PyG downloads the zip
    from zenodo into ``<data_dir>/graphland``), splits ``RL`` (10/10/80 random), ``RH`` (50/25/25
    random), ``TH`` (50/25/25 temporal; not for city-reviews, city-roads-M, city-roads-L, web-traffic).
    The inductive ``THI`` setting (three graph snapshots) is not supported. PyG's default transforms:
    quantile-normal numerical features, one-hot categoricals, standard-scaled regression targets.
  * the heterophilous graphs roman-empire, amazon-ratings (accuracy), minesweeper, tolokers, questions
    (ROC-AUC) via ``torch_geometric.datasets.HeterophilousGraphDataset`` (PyG downloads the .npz into
    ``<data_dir>/heterophilous``), ``split`` = index 0..9 of their 10 fixed 50/25/25 splits.
  * ``sbm``: a planted-partition stochastic block model (Holland, Laskey, Leinhardt 1983) with noisy
    class-dependent features, generated deterministically from ``data_seed`` at a scale per size
    (``SBM_SCALES``). PyG's ``stochastic_blockmodel_graph`` enumerates all N^2 node pairs and draws from
    the global RNG, so edges are sampled here in O(E) from an explicit generator and cleaned with PyG's
    ``to_undirected``.

Metrics (all ``max``): ``accuracy`` (multiclass), ``ap`` = average precision (GraphLand binary),
``roc_auc`` (binary heterophilous sets, as in Platonov et al.), ``r2`` (regression). R2 is computed on
the scaled targets: PyG's regression transform is affine and R2 is invariant under one affine map
applied to both targets and predictions, so this equals GraphLand's R2 on inverse-transformed targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import UserError, missing_data, unknown
from harness.paths import offline
from harness.task import Dataset, Metric
from tasks.data.graph_tensors import Graph, SBMScale, graph_from_pyg, import_pyg, sbm_graph

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

METRICS = {name: Metric(name, "max") for name in ("accuracy", "ap", "roc_auc", "r2")}


def _graphland_about(name: str) -> str:
    kind, nodes, directed = GRAPHLAND[name]
    return f"GraphLand {name}: {nodes:,} nodes, {'directed' if directed else 'undirected'}, {kind}"


def _heterophilous_about(name: str) -> str:
    kind, nodes, classes = HETEROPHILOUS[name]
    return f"heterophilous {name}: {nodes:,} nodes, {classes} classes, 10 fixed splits"


DATASETS = (
    Dataset(
        "sbm",
        "synthetic stochastic block model with noisy class features; scale set by size",
        offline=True,
        metric=METRICS["accuracy"],
    ),
    *(
        Dataset(
            name,
            _graphland_about(name),
            fetch=f"PyG downloads {GRAPHLAND_URL.format(name=name)} into <data_dir>/graphland",
            metric=METRICS[_METRIC[("graphland", GRAPHLAND[name][0])]],
        )
        for name in GRAPHLAND
    ),
    *(
        Dataset(
            name,
            _heterophilous_about(name),
            fetch=f"PyG downloads {HETEROPHILOUS_URL.format(file=name.replace('-', '_'))} into "
            f"<data_dir>/heterophilous",
            metric=METRICS[_METRIC[("heterophilous", HETEROPHILOUS[name][0])]],
        )
        for name in HETEROPHILOUS
    ),
)

DATASET_GROUPS: dict[str, tuple[str, ...]] = {
    # Candidate (a) of docs/protocol.md#graphland-gnn: the Softsign paper does not name its 7 GraphLand
    # datasets.
    "graphland7": (
        "hm-categories",
        "artnet-exp",
        "city-roads-M",
        "tolokers-2",
        "city-reviews",
        "avazu-ctr",
        "twitch-views",
    ),
    "graphland": tuple(GRAPHLAND),
    "heterophilous": tuple(HETEROPHILOUS),
}


def family_of(dataset: str) -> str:
    """``graphland``, ``heterophilous`` or ``synthetic``."""
    if dataset in GRAPHLAND:
        return "graphland"
    if dataset in HETEROPHILOUS:
        return "heterophilous"
    return "synthetic"


def metric_of(dataset: str) -> str:
    """The metric name a dataset reports (by its family and task type)."""
    family = family_of(dataset)
    kind = (
        GRAPHLAND[dataset][0]
        if family == "graphland"
        else HETEROPHILOUS[dataset][0]
        if family == "heterophilous"
        else "multiclass"
    )
    return _METRIC[(family, kind)]


def penalty_of(metric: str) -> float:
    """What a model that learned nothing scores: 0 for accuracy / AP / ROC-AUC, -1 for R2 (twice the
    squared error of predicting the mean), the value a diverged run is told."""
    return _PENALTY[metric]


SBM_SCALES: dict[str, SBMScale] = {
    "tiny": SBMScale(nodes=240, classes=3, features=8, informative=4, degree=6),
    # At small size a logistic regression reaches about 42 % validation accuracy on the node features
    # alone, 73 % with the 1-hop neighbour mean added and 86 % with the 2-hop mean too: the graph matters,
    # and 100 % is out of reach (the classes overlap).
    "small": SBMScale(nodes=1500, classes=6, features=32, informative=8, degree=6, homophily=0.8, signal=0.4),
    "paper": SBMScale(nodes=100_000, classes=10, features=64, informative=16, degree=20),
}


# --------------------------------------------------------------------------------------------------
# The real graphs through PyG's datasets


def graphland_graph(root: str, name: str, split: str) -> Graph:
    """GraphLand ``name`` with ``split`` via PyG's ``GraphLandDataset`` (PyG's default transforms:
    quantile-normal numerical features, one-hot categoricals, standard-scaled regression targets,
    undirected graph). Downloads into ``root`` when the raw files are missing."""
    import_pyg()
    from torch_geometric.datasets import GraphLandDataset

    data = GraphLandDataset(root=root, name=name, split=split)[0]
    return graph_from_pyg(data, GRAPHLAND[name][0], data.train_mask, data.val_mask, data.test_mask)


def heterophilous_graph(root: str, name: str, split: int) -> Graph:
    """Heterophilous graph ``name`` with fixed split ``split`` (0..9) via PyG's
    ``HeterophilousGraphDataset`` (undirected). Downloads into ``root`` when the file is missing."""
    import_pyg()
    from torch_geometric.datasets import HeterophilousGraphDataset

    data = HeterophilousGraphDataset(root=root, name=name)[0]
    masks = (data.train_mask[:, split], data.val_mask[:, split], data.test_mask[:, split])
    return graph_from_pyg(data, HETEROPHILOUS[name][0], *masks)


# --------------------------------------------------------------------------------------------------
# Data files: present, downloaded, or a clear error


GRAPHLAND_FILES = ("info.yaml", "features.csv", "targets.csv", "edgelist.csv")


def ensure_graphland(root: Path, name: str, split: str) -> None:
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


def ensure_heterophilous(root: Path, name: str) -> None:
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


def resolve_split(dataset: str, split: Any) -> str | int:
    """The split of ``dataset`` (its default when None); UserError naming the valid ones."""
    family = family_of(dataset)
    if family == "heterophilous":
        if split is None:
            return 0
        if isinstance(split, str) and split.strip().isdigit():
            split = int(split)
        if not isinstance(split, int) or isinstance(split, bool) or not 0 <= split < HETEROPHILOUS_SPLITS:
            raise UserError(
                f"invalid split {split!r} for {dataset}; known: the fixed split indices 0..{HETEROPHILOUS_SPLITS - 1}"
            )
        return split
    if split is None:
        # RL is GraphLand's default split; the synthetic graph uses RH so that validation and
        # training sets are large enough for a low-noise demo comparison.
        return "RL" if family == "graphland" else "RH"
    known = GRAPHLAND_SPLITS if family == "graphland" else ("RL", "RH")
    if split == "THI":
        raise UserError(f"split 'THI' (inductive, three graph snapshots) is not supported; known: {', '.join(known)}")
    if split not in known:
        raise unknown(f"split for {dataset}", split, known)
    if split == "TH" and dataset in NO_TEMPORAL_SPLIT:
        raise UserError(
            f"split 'TH' does not exist for {dataset} (no temporal split for "
            f"{', '.join(NO_TEMPORAL_SPLIT)}); known: RL, RH"
        )
    return split


# --------------------------------------------------------------------------------------------------
# Locating and loading


@dataclass(frozen=True)
class GraphKey:
    """What to load: the dataset, its folder (empty for ``sbm``), the split, and for ``sbm`` its scale
    and seed."""

    dataset: str
    root: str
    split: str | int
    data_seed: int = 0
    scale: SBMScale | None = None


def locate(dataset: str, data_dir: Path, split: str | int, size: str = "tiny", data_seed: int = 0) -> GraphKey:
    """Check the real graph's files are under ``data_dir`` (PyG downloads them when allowed; otherwise a
    UserError names the file and where to put it); ``sbm`` needs no file."""
    family = family_of(dataset)
    if family == "synthetic":
        return GraphKey(dataset, "", split, data_seed, SBM_SCALES[size])
    root = Path(data_dir) / family
    if family == "graphland":
        ensure_graphland(root, dataset, split)
    else:
        ensure_heterophilous(root, dataset)
    return GraphKey(dataset, str(root), split)


def load(key: GraphKey) -> Graph:
    """The graph of ``key`` on the CPU (use through ``harness.task.load_data``: once per process)."""
    if key.scale is not None:
        return sbm_graph(key.scale, key.split, key.data_seed)
    if family_of(key.dataset) == "graphland":
        return graphland_graph(key.root, key.dataset, key.split)
    return heterophilous_graph(key.root, key.dataset, key.split)
