"""gnn_graphland: GraphSAGE training, roles, the synthetic graph, input errors, and the
real GraphLand / heterophilous loaders on fixtures written in their on-disk layouts (offline)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from harness.errors import UserError
from harness.run.loop import run
from harness.spec import RunSpec
from harness.task import check_roles
from tasks import gnn_graphland as gnn
from tasks.data import graph_tensors, graphs

# torch 2.14 raises the torch.jit.script deprecation (emitted by `import torch_geometric`) as a FutureWarning.
pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.script.*:FutureWarning")


def train_losses(result) -> list[float]:
    return result.curve("train", "loss")


# --------------------------------------------------------------------------------------------------
# Training through the harness loop


def test_tiny_graphsage_trains():
    result = run(
        RunSpec(
            task="gnn_graphland",
            optimizer="adamw",
            dataset="sbm",
            size="tiny",
            steps=20,
            hparams={"lr": 3e-3},
            task_options={"model": "sage"},
        ),
        progress=False,
    )
    losses = train_losses(result)
    assert result.row["status"] == "ok"
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.02
    assert '"model": "sage"' in result.row["task_options"]
    # Accuracies are fractions (the contract suite runs the default gt with every optimizer).
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert 0.0 <= result.row["val_metric"] <= 1.0 and 0.0 <= result.row["test_metric"] <= 1.0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gt", "sage"])
def test_small_learns_beyond_the_node_features(model):
    # Logistic regression on the node features alone gets ~0.42 on this graph (module docstring).
    result = run(
        RunSpec(
            task="gnn_graphland", optimizer="adamw", dataset="sbm", size="small", seed=0, task_options={"model": model}
        ),
        progress=False,
    )
    assert result.row["status"] == "ok"
    assert 0.8 <= result.row["best_val_metric"] < 0.99
    assert result.row["steps_to_target"] is not None


# --------------------------------------------------------------------------------------------------
# Model and roles


def build(task, meta: bool = False):
    if meta:
        with torch.device("meta"):
            return task.make_model(torch.Generator().manual_seed(0))
    return task.make_model(torch.Generator().manual_seed(0))


@pytest.mark.parametrize("model", ["gt", "sage"])
@pytest.mark.parametrize("size", ["tiny", "small", "paper"])
def test_roles_cover_every_parameter_once(size, model):
    task = gnn.TASK.make(size, dataset="sbm", model=model)
    net = build(task, meta=size == "paper")
    roles = task.roles(net)
    check_roles(net, roles)
    ids = {role: {id(p) for p in params} for role, params in roles.items()}
    assert ids["embedding"] == {id(net.input[0].weight)}
    assert ids["head"] == {id(net.head.weight)}
    assert id(net.input[3].weight) in ids["matrix"] and id(net.output[1].weight) in ids["matrix"]
    conv = net.blocks[0].module.conv
    assert all(id(p) in ids["matrix"] for p in conv.parameters() if p.ndim == 2)
    assert all(p.ndim == 1 for p in roles["vector"])
    # Every parameter takes part in the forward pass (TransformerConv's unused skip Linear is gone).
    if size == "tiny":
        data = task.make_data(torch.device("cpu"))
        net(data.x, data.edge_index).square().sum().backward()
        assert all(p.grad is not None for p in net.parameters())


def graphland_param_count(arch: str, d_in: int, outputs: int, h: int, layers: int) -> int:
    """GraphLand's architecture counted by hand: input MLP, residual blocks, output MLP."""
    linear = h * h + h
    inputs = d_in * h + h + linear
    if arch == "gt":
        per_layer = 2 * h + 4 * linear + 2 * h + 2 * linear  # LN, q/k/v/out; LN, FFN
    else:
        per_layer = 2 * h + (2 * h * h + h) + linear  # LN, SAGEConv (lin_l with bias, lin_r), Linear
    output = 2 * h + linear + h * outputs + outputs
    return inputs + layers * per_layer + output


@pytest.mark.parametrize("model", ["gt", "sage"])
def test_paper_size_is_graphland_default_architecture(model):
    task = gnn.TASK.make("paper", dataset="sbm", model=model)
    assert (task.options["hidden"], task.options["layers"], task.options["heads"]) == (512, 3, 4)
    assert task.steps == 1000 and task.schedule == "constant" and task.warmup_fraction == 0.0
    net = build(task, meta=True)
    scale = graphs.SBM_SCALES["paper"]
    expected = graphland_param_count(model, scale.features, scale.classes, 512, 3)
    assert sum(p.numel() for p in net.parameters()) == expected
    assert len(net.blocks) == (6 if model == "gt" else 3)
    if model == "gt":
        assert net.blocks[0].module.conv.heads == 4 and net.blocks[0].module.conv.out_channels == 128


def test_paper_defaults_follow_the_source_recipes():
    assert gnn.TASK.default_dataset["paper"] in gnn.TASK.groups["graphland7"]
    het = gnn.TASK.request("paper", "roman-empire").options
    assert (het["heads"], het["dropout"], het["split"]) == (8, 0.2, 0)
    assert gnn.TASK.request("paper", "web-fraud").options["hidden"] == 200
    assert gnn.TASK.request("paper", "pokec-regions").options["hidden"] == 400
    assert gnn.TASK.request("paper", "tolokers-2").options["split"] == "RL"


def test_init_depends_only_on_the_generator():
    task = gnn.TASK.make("tiny")
    torch.manual_seed(1)
    a = task.make_model(torch.Generator().manual_seed(7))
    state = torch.get_rng_state()
    torch.manual_seed(2)
    b = task.make_model(torch.Generator().manual_seed(7))
    c = task.make_model(torch.Generator().manual_seed(8))
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))
    torch.manual_seed(1)
    task.make_model(torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not consumed


# --------------------------------------------------------------------------------------------------
# The synthetic graph and the data stream


def test_sbm_graph_is_deterministic_and_shaped_as_declared():
    from torch_geometric.utils import contains_self_loops, is_undirected

    scale = graphs.SBM_SCALES["small"]
    g1 = graph_tensors.sbm_graph(scale, "RH", 0)
    g2 = graph_tensors.sbm_graph(scale, "RH", 0)
    g3 = graph_tensors.sbm_graph(scale, "RH", 1)
    for a, b in ((g1.x, g2.x), (g1.y, g2.y), (g1.edge_index, g2.edge_index)):
        assert torch.equal(a, b)
    assert not torch.equal(g1.x, g3.x)
    assert g1.edge_index.shape != g3.edge_index.shape or not torch.equal(g1.edge_index, g3.edge_index)
    ei = g1.edge_index
    assert is_undirected(ei, num_nodes=scale.nodes) and not contains_self_loops(ei)
    assert abs(ei.shape[1] / scale.nodes - scale.degree) < 0.5  # mean degree
    same = (g1.y[ei[0]] == g1.y[ei[1]]).float().mean().item()
    assert abs(same - scale.homophily) < 0.03
    assert torch.bincount(g1.y).tolist() == [scale.nodes // scale.classes] * scale.classes
    sizes = {k: v.numel() for k, v in g1.splits.items()}
    assert sizes == {"train": 750, "val": 375, "test": 375}
    everything = torch.cat(list(g1.splits.values()))
    assert torch.equal(everything.sort().values, torch.arange(scale.nodes))
    rl = graph_tensors.sbm_graph(scale, "RL", 0).splits
    assert (rl["train"].numel(), rl["val"].numel()) == (150, 150)


def test_data_stream_is_the_full_graph_and_sharded_under_ddp():
    task = gnn.TASK.make("tiny")
    d1, d2 = task.make_data(torch.device("cpu")), task.make_data(torch.device("cpu"))
    b1 = next(d1.batches(torch.Generator().manual_seed(0)))
    b2 = next(d2.batches(torch.Generator().manual_seed(123)))
    for a, b in ((b1.x, b2.x), (b1.edge_index, b2.edge_index), (b1.idx, b2.idx), (b1.target, b2.target)):
        assert torch.equal(a, b)
    stream = d1.batches(torch.Generator().manual_seed(0))
    assert all(torch.equal(next(stream).idx, d1.splits["train"]) for _ in range(3))
    # GT attends over self-loops too; the stored graph had none.
    assert bool((b1.edge_index[0] == b1.edge_index[1]).sum() == d1.x.shape[0])
    shards = [next(d1.batches(torch.Generator(), rank, 2)).idx for rank in range(2)]
    assert torch.equal(torch.cat(shards).sort().values, d1.splits["train"])
    other = gnn.TASK.make("tiny", data_seed=1).make_data(torch.device("cpu"))
    assert not torch.equal(other.x, d1.x)


def test_evaluation_reuses_one_forward_until_parameters_change():
    task = gnn.TASK.make("tiny")
    data = task.make_data(torch.device("cpu"))
    net = build(task)
    calls = []
    net.register_forward_hook(lambda *args: calls.append(1))
    net.eval()
    with torch.no_grad():
        val = task.evaluate(net, data, "val")
        task.evaluate(net, data, "test")
        assert len(calls) == 1
        assert set(val) == {"accuracy", "loss"}
        net.head.bias.add_(5.0 * torch.arange(net.head.bias.numel()))  # in-place, like an optimizer step
        changed = task.evaluate(net, data, "val")
    assert len(calls) == 2 and changed["loss"] != val["loss"]
    with pytest.raises(ValueError, match="known: test, val"):
        task.evaluate(net, data, "train")


def test_metrics_match_their_references():
    from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

    gen = torch.Generator().manual_seed(0)
    y_bin = (torch.rand(50, generator=gen) > 0.5).float()
    logits = y_bin + torch.randn(50, generator=gen)
    assert graph_tensors.score("ap", logits, y_bin) == pytest.approx(average_precision_score(y_bin, logits))
    assert graph_tensors.score("roc_auc", logits, y_bin) == pytest.approx(roc_auc_score(y_bin, logits))
    y = torch.randn(50, generator=gen)
    pred = y + 0.5 * torch.randn(50, generator=gen)
    assert graph_tensors.score("r2", pred, y) == pytest.approx(r2_score(y.numpy(), pred.numpy()), abs=1e-6)
    classes = torch.randint(0, 4, (50,), generator=gen)
    scores = torch.randn(50, 4, generator=gen)
    assert graph_tensors.score("accuracy", scores, classes) == pytest.approx(
        (scores.argmax(1) == classes).float().mean().item()
    )


# --------------------------------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": "huge"}, "known: paper, small, tiny"),
        ({"dataset": "cora"}, "known: .*amazon-ratings.*tolokers-2"),
        ({"dataset": "graphland7"}, "group.*hm-categories, artnet-exp"),
        ({"depth": 3}, "known: data_seed, dropout, heads, hidden, layers, model, split"),
        ({"model": "gcn"}, "known: gt, sage"),
        ({"split": "XX"}, "known: RH, RL"),
        ({"dataset": "tolokers-2", "split": "THI"}, "not supported"),
        ({"dataset": "city-roads-M", "split": "TH"}, "does not exist for city-roads-M"),
        ({"dataset": "roman-empire", "split": 10}, "0..9"),
        ({"dataset": "roman-empire", "split": "RL"}, "0..9"),
        ({"hidden": 30, "heads": 4}, "multiple of heads"),
        ({"hidden": 0}, "invalid option hidden=0"),
        ({"layers": 1.5}, "invalid option layers=1.5"),
        ({"dropout": 1.0}, "invalid option dropout=1.0"),
        ({"data_seed": -1}, "invalid option data_seed=-1"),
        ({"dataset": "tolokers-2", "data_seed": 3}, "synthetic dataset only"),
    ],
)
def test_bad_input_is_a_user_error_naming_the_choices(kwargs, match, tmp_path):
    kwargs = {"size": "tiny", "data_dir": str(tmp_path), **kwargs}
    with pytest.raises(UserError, match=match):
        gnn.TASK.make(**kwargs)


def test_registry_lists_every_pyg_graphland_dataset_with_its_task_type():
    from torch_geometric.datasets import GraphLandDataset

    # PyG: multiclass_classification / binary_classification / regression
    pyg = {name: kind.split("_")[0] for name, kind in GraphLandDataset.GRAPHLAND_DATASETS.items()}
    ours = {name: kind for name, (kind, _, _) in graphs.GRAPHLAND.items()}
    assert ours == pyg
    group = graphs.DATASET_GROUPS["graphland7"]
    assert len(set(group)) == 7 and set(group) <= set(graphs.GRAPHLAND)
    assert {graphs.GRAPHLAND[name][0] for name in group} == {"multiclass", "binary", "regression"}
    assert all(graphs.GRAPHLAND[name][1] < 1_000_000 for name in group)


# --------------------------------------------------------------------------------------------------
# Real loaders on fixtures in the real on-disk layouts

N_FIXTURE = 60
TASK_WORDS = {"multiclass": "multiclass_classification", "binary": "binary_classification", "regression": "regression"}


def write_graphland(data_dir, name: str, splits=("RL", "RH", "TH")) -> dict:
    """A GraphLand dataset as the zenodo zip unpacks it: <root>/<name>/raw/<name>/{info.yaml,
    features.csv, targets.csv, edgelist.csv, split_masks_<split>.csv}."""
    kind = graphs.GRAPHLAND[name][0]
    rng = np.random.default_rng(0)
    n = N_FIXTURE
    z = rng.normal(size=n)
    num_1 = rng.exponential(size=n)
    num_1[3] = np.nan  # PyG imputes NaNs in numerical features
    features = pd.DataFrame(
        {
            "num_0": z + 0.1 * rng.normal(size=n),
            "num_1": num_1,
            "frac_0": rng.uniform(size=n),
            "cat_0": rng.integers(0, 3, size=n),
        },
        index=pd.Index(range(n), name="node_id"),
    )
    if kind == "multiclass":
        target = np.digitize(z, [-0.5, 0.5]).astype(float)
        target[5] = np.nan  # an unlabeled node
    elif kind == "binary":
        target = (z > np.median(z)).astype(float)
    else:
        target = 1000.0 + 250.0 * z + 10.0 * rng.normal(size=n)
    raw = data_dir / "graphland" / name / "raw" / name
    raw.mkdir(parents=True)
    features.to_csv(raw / "features.csv")
    pd.DataFrame({"target": target}, index=features.index).to_csv(raw / "targets.csv")
    ring = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1)
    chords = rng.integers(0, n, size=(40, 2))
    edges = np.concatenate([ring, chords[chords[:, 0] != chords[:, 1]]])
    pd.DataFrame(edges, columns=["source", "target"]).to_csv(raw / "edgelist.csv", index=False)
    for split in splits:
        # RL is 10/10/80 in GraphLand; the fixture keeps val large enough to hold both classes.
        train_frac, val_frac = (0.2, 0.3) if split == "RL" else (0.5, 0.25)
        order = rng.permutation(n)
        n_train, n_val = int(train_frac * n), int(val_frac * n)
        part = np.full(n, "test", dtype=object)
        part[order[:n_train]], part[order[n_train : n_train + n_val]] = "train", "val"
        masks = pd.DataFrame({p: part == p for p in ("train", "val", "test")}, index=features.index)
        masks.to_csv(raw / f"split_masks_{split}.csv")
    info = {
        "dataset_name": name,
        "task": TASK_WORDS[kind],
        "metric": {"multiclass": "accuracy", "binary": "AP", "regression": "R2"}[kind],
        "numerical_features_names": ["num_0", "num_1", "frac_0"],
        "fraction_features_names": ["frac_0"],
        "categorical_features_names": ["cat_0"],
        "target_name": "target",
        "graph_is_directed": graphs.GRAPHLAND[name][2],
        "has_unlabeled_nodes": kind == "multiclass",
        "has_nans_in_numerical_features": True,
    }
    (raw / "info.yaml").write_text(yaml.safe_dump(info))
    return {"target": target, "raw": raw}


@pytest.mark.filterwarnings("ignore:n_quantiles .* is greater than the total number of samples")  # 60 nodes
@pytest.mark.parametrize(
    ("name", "metric"), [("hm-categories", "accuracy"), ("tolokers-2", "ap"), ("city-roads-M", "r2")]
)
def test_graphland_fixture_loads_through_pyg_and_trains(data_dir, name, metric):
    from sklearn.metrics import average_precision_score, r2_score
    from torch_geometric.utils import is_undirected

    fixture = write_graphland(data_dir, name, splits=("RL", "RH") if name == "city-roads-M" else ("RL", "RH", "TH"))
    task = gnn.TASK.make("tiny", dataset=name, data_dir=str(data_dir), split="RH", model="sage")
    assert task.metric.name == metric and task.metric.direction == "max"
    assert task.penalty == (-1.0 if metric == "r2" else 0.0)

    data = task.make_data(torch.device("cpu"))
    assert (data_dir / "graphland" / name / "processed").is_dir()  # made by PyG's GraphLandDataset
    assert data.x.shape == (N_FIXTURE, 2 + 1 + 3)  # numerical, fraction, one-hot of 3 categories
    assert torch.isfinite(data.x).all()
    assert is_undirected(data.edge_index)
    masks = pd.read_csv(fixture["raw"] / "split_masks_RH.csv", index_col=0)
    labeled = ~np.isnan(fixture["target"])
    for split in ("train", "val", "test"):
        expected = np.flatnonzero(masks[split].to_numpy() & labeled)
        assert data.splits[split].tolist() == expected.tolist()

    net = build(task)
    net.eval()
    with torch.no_grad():
        ours = task.evaluate(net, data, "test")
        out = net(data.x, data.edge_index)
    idx = data.splits["test"].numpy()
    raw_target = fixture["target"][idx]
    if metric == "accuracy":
        assert net.head.out_features == 3
        reference = float((out.argmax(1).numpy()[idx] == raw_target).mean())
    elif metric == "ap":
        reference = average_precision_score(raw_target, out.numpy()[idx])
    else:  # R2 on inverse-transformed predictions, as GraphLand computes it
        train_raw = fixture["target"][data.splits["train"].numpy()]
        prediction = out.numpy()[idx].astype(np.float64) * train_raw.std() + train_raw.mean()
        reference = r2_score(raw_target, prediction)
    assert ours[metric] == pytest.approx(reference, rel=1e-4, abs=1e-5)

    result = run(
        RunSpec(
            task="gnn_graphland",
            optimizer="adamw",
            dataset=name,
            size="tiny",
            steps=5,
            task_options={"split": "RH", "model": "sage"},
        ),
        data_dir=data_dir,
        progress=False,
    )
    assert result.row["status"] == "ok" and result.row["metric"] == metric
    assert math.isfinite(result.row["test_metric"])


def test_graphland_missing_files_name_the_zip_and_the_folder(data_dir):
    with pytest.raises(UserError, match=r"zenodo\.org/records/16895532/files/artnet-exp\.zip") as err:
        gnn.TASK.make("tiny", dataset="artnet-exp", data_dir=str(data_dir))
    assert str(data_dir / "graphland" / "artnet-exp" / "raw") in str(err.value)
    write_graphland(data_dir, "artnet-exp", splits=("RL",))
    with pytest.raises(UserError, match="split_masks_RH.csv"):
        gnn.TASK.make("tiny", dataset="artnet-exp", data_dir=str(data_dir), split="RH")
    (data_dir / "graphland" / "artnet-exp" / "raw" / "artnet-exp" / "edgelist.csv").unlink()
    with pytest.raises(UserError, match="edgelist.csv"):
        gnn.TASK.make("tiny", dataset="artnet-exp", data_dir=str(data_dir))


def test_graphland_failed_download_is_a_user_error(data_dir, monkeypatch):
    import torch_geometric.datasets.graphland as pyg_graphland

    def refuse(url, folder, *args, **kwargs):
        raise OSError(f"network unreachable: {url}")

    monkeypatch.setattr(graphs, "offline", lambda: False)
    monkeypatch.setattr(pyg_graphland, "download_url", refuse)
    with pytest.raises(UserError, match="download failed.*artnet-views.zip"):
        gnn.TASK.make("tiny", dataset="artnet-views", data_dir=str(data_dir))


def write_heterophilous(data_dir, name: str, classes: int) -> dict:
    """The .npz of yandex-research/heterophilous-graphs where PyG looks: <root>/<name_>/raw/<name_>.npz."""
    rng = np.random.default_rng(1)
    n = N_FIXTURE
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    masks = {}
    for key in ("train_masks", "val_masks", "test_masks"):
        masks[key] = np.zeros((10, n), dtype=bool)
    for s in range(10):
        part = rng.permutation(n)
        masks["train_masks"][s, part[:30]] = True
        masks["val_masks"][s, part[30:45]] = True
        masks["test_masks"][s, part[45:]] = True
    edges = np.stack([np.arange(n), (np.arange(n) + 1) % n], 1)  # stored once, as in the originals
    file = name.replace("-", "_")
    folder = data_dir / "heterophilous" / file / "raw"
    folder.mkdir(parents=True)
    np.savez(
        folder / f"{file}.npz",
        node_features=rng.normal(size=(n, 5)).astype(np.float32),
        node_labels=labels.astype(np.int64),
        edges=edges.astype(np.int64),
        **masks,
    )
    return {"labels": labels, **masks}


@pytest.mark.parametrize(("name", "classes", "metric"), [("roman-empire", 4, "accuracy"), ("tolokers", 2, "roc_auc")])
def test_heterophilous_fixture_loads_through_pyg_with_a_fixed_split(data_dir, name, classes, metric):
    from sklearn.metrics import roc_auc_score
    from torch_geometric.utils import is_undirected

    fixture = write_heterophilous(data_dir, name, classes)
    task = gnn.TASK.make("tiny", dataset=name, data_dir=str(data_dir), split=3)
    assert task.metric.name == metric and task.options["split"] == 3
    data = task.make_data(torch.device("cpu"))
    for split in ("train", "val", "test"):
        assert data.splits[split].tolist() == np.flatnonzero(fixture[f"{split}_masks"][3]).tolist()
    assert is_undirected(data.edge_index)
    net = build(task)
    assert net.head.out_features == (classes if classes > 2 else 1)
    net.eval()
    with torch.no_grad():
        ours = task.evaluate(net, data, "val")[metric]
        out = net(data.x, data.edge_index).numpy()
    idx = data.splits["val"].numpy()
    if metric == "roc_auc":
        assert ours == pytest.approx(roc_auc_score(fixture["labels"][idx], out[idx]))
    else:
        assert ours == pytest.approx(float((out[idx].argmax(1) == fixture["labels"][idx]).mean()))
    result = run(
        RunSpec(task="gnn_graphland", optimizer="adamw", dataset=name, size="tiny", steps=3, task_options={"split": 3}),
        data_dir=data_dir,
        progress=False,
    )
    assert result.row["status"] == "ok" and math.isfinite(result.row["val_metric"])


def test_heterophilous_missing_file_names_the_url_and_the_folder(data_dir):
    with pytest.raises(UserError, match=r"heterophilous-graphs/raw/main/data/amazon_ratings\.npz") as err:
        gnn.TASK.make("tiny", dataset="amazon-ratings", data_dir=str(data_dir))
    assert str(data_dir / "heterophilous" / "amazon_ratings" / "raw") in str(err.value)
