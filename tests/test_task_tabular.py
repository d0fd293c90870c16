"""tabular_mlp: a real-data run, roles, data stream, preprocessing, and the real loaders
(CSV / parquet files, scikit-learn's OpenML cache layout) offline on fixtures written here."""

from __future__ import annotations

import gzip
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from harness.errors import UserError
from harness.run.loop import run
from harness.spec import RunSpec
from harness.task import check_roles
from tasks import tabular_mlp as tab
from tasks.data import table_prep, tables


def _load(*key) -> table_prep.Prepared:
    """A table loaded through the data module (the positional fields of ``tables.TableKey``)."""
    return tables.load(tables.TableKey(*key))


def test_small_learns_digits_quickly():
    """The demo size on real data: a short AdamW run is far above chance (10 %)."""
    result = run(
        RunSpec(
            task="tabular_mlp",
            optimizer="adamw",
            dataset="digits",
            size="small",
            steps=120,
            seed=0,
            hparams={"lr": 3e-3},
        )
    )
    assert result.row["status"] == "ok"
    assert result.row["val_metric"] > 0.85
    # Accuracies are fractions (the contract suite checks the tiny runs of every optimizer).
    assert 0.0 <= result.row["val_metric"] <= 1.0 and 0.0 <= result.row["test_metric"] <= 1.0


@pytest.mark.parametrize(
    "size,dataset,options",
    [
        ("tiny", None, {}),
        ("tiny", None, {"num_embeddings": "piecewise"}),
        ("small", None, {"num_embeddings": "piecewise", "n_bins": 8}),
        ("paper", "breast_cancer", {}),
        ("paper", "diabetes", {"num_embeddings": "piecewise"}),
    ],
)
def test_roles_cover_every_parameter(size, dataset, options):
    task = tab.TASK.make(size, dataset=dataset, **options)
    model = task.make_model(torch.Generator().manual_seed(0))
    roles = task.roles(model)
    check_roles(model, roles)
    # As the reference: every backbone Linear weight (the first included) is a matrix; head and embeddings
    # are not.
    assert len(roles["matrix"]) == task.options["n_blocks"]
    assert roles["head"] == [model.head.weight]
    if options.get("num_embeddings") == "piecewise":
        assert roles["embedding"] == [model.embeddings.weight]
        assert model.embeddings.bias in roles["vector"]  # 1-D: never weight-decayed
    else:
        assert "embedding" not in roles
    assert all(p.ndim == 1 for p in roles["vector"])


def test_paper_size_follows_protocol():
    task = tab.TASK.make("paper", dataset="diabetes")
    assert task.schedule == "constant" and task.warmup_fraction == 0.0 and task.grad_clip == 1.0
    assert task.batch_size == 256  # the reference's batch for small training sets
    # 442 rows -> 89 test (20 %), 71 val (20 % of the rest), 282 train; one epoch = 282 // 256 steps
    assert "282 training rows" in task.description
    assert task.eval_every == 282 // 256 and task.steps == 100 * task.eval_every
    assert task.options["d_block"] == 512 and task.options["dropout"] == 0.1


def test_model_init_is_deterministic_and_from_the_generator():
    task = tab.TASK.make("tiny", num_embeddings="piecewise")
    a = task.make_model(torch.Generator().manual_seed(3))
    state = torch.get_rng_state()
    b = task.make_model(torch.Generator().manual_seed(3))
    assert torch.equal(state, torch.get_rng_state()), "building a model must not consume the global RNG"
    c = task.make_model(torch.Generator().manual_seed(4))
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name


def test_data_stream_is_deterministic_and_covers_each_epoch():
    task = tab.TASK.make("tiny")
    data = task.make_data(torch.device("cpu"))
    n_train = data.x["train"].shape[0]

    def take(seed, k):
        stream = data.batches(torch.Generator().manual_seed(seed))
        return [next(stream) for _ in range(k)]

    per_epoch = n_train // task.batch_size
    a, b, c = take(0, per_epoch), take(0, per_epoch), take(1, per_epoch)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    rows = torch.cat([x for x, _ in a])
    assert rows.shape[0] == per_epoch * task.batch_size
    assert torch.unique(rows, dim=0).shape[0] == rows.shape[0]  # no row twice within an epoch
    # DDP: two ranks see disjoint halves of the same permutation.
    r0 = next(data.batches(torch.Generator().manual_seed(0), 0, 2))[0]
    r1 = next(data.batches(torch.Generator().manual_seed(0), 1, 2))[0]
    assert r0.shape[0] == task.batch_size // 2
    assert not (r0[:, None, :] == r1[None, :, :]).all(-1).any()


def test_splits_are_64_16_20_stratified_and_seeded():
    a = tab.TASK.make("tiny", dataset="wine")
    prep = _load("wine", "", None, "auto", "quantile", 0, None, ())
    sizes = {k: len(v) for k, v in prep.y.items()}
    assert sum(sizes.values()) == 178
    assert sizes["test"] == math.ceil(0.2 * 178) and sizes["val"] == math.ceil(0.2 * (178 - sizes["test"]))
    for split in ("val", "test"):  # stratified: class shares within 5 points of the training split
        share = np.bincount(prep.y[split], minlength=3) / sizes[split]
        assert np.abs(share - np.bincount(prep.y["train"], minlength=3) / sizes["train"]).max() < 0.05
    other = _load("wine", "", None, "auto", "quantile", 1, None, ())
    assert not np.array_equal(prep.x["test"], other.x["test"])
    assert a.metric.name == "accuracy" and a.penalty == pytest.approx(1 / 3)


def test_preprocessing_quantile_nan_and_constant_columns():
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "skewed": rng.lognormal(size=n),
            "with_nan": np.where(rng.random(n) < 0.2, np.nan, rng.standard_normal(n)),
            "constant": np.ones(n),
            "flag": rng.integers(0, 2, n),  # binary numeric -> one-hot (as the reference)
            "city": rng.choice(["a", "b", "c"], n).astype(object),
        }
    )
    y = pd.Series(rng.integers(0, 2, n))
    prep = table_prep.prepare(frame, y, kind="binary", scaling="quantile", data_seed=0, n_bins=None, where="t")
    assert prep.n_num == 2  # skewed, with_nan; constant dropped, flag is categorical
    x = np.concatenate([prep.x[s] for s in ("train", "val", "test")])
    assert np.isfinite(x).all()  # NaN -> 0
    assert x.shape[1] == 2 + 2 + 3  # 2 numerical + one-hot flag (2) + city (3)
    assert (x[:, 2:].sum(axis=1) == 2).all()  # exactly one hot bit per categorical column
    skewed = prep.x["train"][:, 0]
    assert abs(np.mean(skewed)) < 0.1 and abs(np.std(skewed) - 1) < 0.15  # ~ N(0, 1) after the transform
    std = table_prep.prepare(frame, y, kind="binary", scaling="standard", data_seed=0, n_bins=None, where="t")
    col = std.x["train"][:, 0]
    assert abs(col.std() - 1) < 0.05 and col.min() > -1.5 and col.max() > 3  # standardised, skew kept


def test_one_hot_uses_training_levels_only():
    frame = pd.DataFrame({"city": ["a", "b", None, "a", "z", "b"]})
    split = {"train": np.array([0, 1, 2, 3]), "val": np.array([4]), "test": np.array([5])}
    block = table_prep._onehot_block(frame, ["city"], split)
    # levels from train only, sorted: "<NA>", "a", "b"; the unseen "z" encodes as all zeros
    np.testing.assert_array_equal(block, [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1]])


def test_piecewise_linear_encoding_matches_the_paper():
    bins = (np.array([0.0, 1.0, 2.0, 4.0], dtype=np.float32), np.array([0.0, 10.0], dtype=np.float32))
    emb = tab.PiecewiseLinearEmbeddings(bins, d_embedding=1)
    x = torch.tensor([[-1.0, 5.0], [1.5, 20.0], [5.0, -5.0]])
    ratio = (x.unsqueeze(-1) - emb.left) / emb.width
    encoded = torch.minimum(torch.maximum(ratio, emb.low), emb.high) * emb.mask
    expected = torch.tensor(
        [
            [[-1.0, 0.0, 0.0], [0.5, 0.0, 0.0]],  # below the range: first bin goes negative
            [[1.0, 0.5, 0.0], [2.0, 0.0, 0.0]],  # a single bin is both first and last: unclamped
            [[1.0, 1.0, 1.5], [-0.5, 0.0, 0.0]],  # above the range: last bin exceeds 1; padding stays 0
        ]
    )
    torch.testing.assert_close(encoded, expected)


def test_regression_rmse_is_in_original_units():
    task = tab.TASK.make("tiny", dataset="diabetes")
    assert task.metric.name == "rmse" and task.metric.direction == "min"
    data = task.make_data(torch.device("cpu"))

    class Mean(torch.nn.Module):  # predicts the training mean (0 in standardised units)
        def forward(self, x):
            return torch.zeros(x.shape[0], 1)

    out = task.evaluate(Mean(), data, "val")
    assert out["rmse"] > 50  # diabetes targets are in the 25..346 range, std ~77
    assert task.penalty == pytest.approx(2 * out["rmse"], rel=1e-5)
    assert out["loss"] == pytest.approx(
        (out["rmse"] / _load("diabetes", "", None, "auto", "quantile", 0, None, ()).y_std) ** 2, rel=1e-5
    )


# ---- user files ------------------------------------------------------------------------------------


def _table(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": np.where(rng.random(n) < 0.1, np.nan, x2),
            "shop": rng.choice(["north", "south"], n),
            "price": 3.0 * x1 + rng.standard_normal(n) * 0.1 + 100.0,  # float, many values -> regression
            "label": np.where(x1 + x2 > 0, "yes", "no"),  # strings -> binary
            "grade": rng.integers(0, 4, n),  # few ints -> multiclass
        }
    )


def test_csv_and_parquet_files(tmp_path):
    frame = _table()
    csv, parquet = tmp_path / "t.csv", tmp_path / "t.parquet"
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet)
    reg = tab.TASK.make("tiny", dataset=f"path:{csv}", target="price")
    assert reg.metric.name == "rmse" and reg.target is None
    binary = tab.TASK.make("tiny", dataset=f"path:{parquet}", target="label")
    assert binary.metric.name == "accuracy" and binary.penalty == 0.5
    assert binary.make_model(torch.Generator()).head.out_features == 1  # binary: one logit, BCE
    multi = tab.TASK.make("tiny", dataset=f"path:{csv}", target="grade")
    assert multi.make_model(torch.Generator()).head.out_features == 4
    forced = tab.TASK.make("tiny", dataset=f"path:{csv}", target="grade", task_type="regression")
    assert forced.metric.name == "rmse"
    # the price is a near-linear function of x1: a short run beats the mean predictor clearly
    result = run(
        RunSpec(
            task="tabular_mlp",
            optimizer="adamw",
            dataset=f"path:{csv}",
            size="tiny",
            steps=60,
            hparams={"lr": 1e-2},
            task_options={"target": "price"},
        )
    )
    assert result.row["val_metric"] < 0.5 * reg.penalty / 2


def test_file_errors_name_the_problem(tmp_path):
    frame = _table()
    csv = tmp_path / "t.csv"
    frame.to_csv(csv, index=False)
    with pytest.raises(UserError, match="target=<column>"):
        tab.TASK.make("tiny", dataset=f"path:{csv}")
    with pytest.raises(UserError, match="no column 'nope'.*x1"):
        tab.TASK.make("tiny", dataset=f"path:{csv}", target="nope")
    with pytest.raises(UserError, match="missing table.*absent.csv"):
        tab.TASK.make("tiny", dataset=f"path:{tmp_path / 'absent.csv'}", target="y")
    with pytest.raises(UserError, match=".csv or .parquet"):
        tab.TASK.make("tiny", dataset=f"path:{tmp_path / 't.xlsx'}", target="y")
    with pytest.raises(UserError, match="exactly 2"):
        tab.TASK.make("tiny", dataset=f"path:{csv}", target="grade", task_type="binary")
    with pytest.raises(UserError, match="numeric target"):
        tab.TASK.make("tiny", dataset=f"path:{csv}", target="label", task_type="regression")


# ---- OpenML cache layout -------------------------------------------------------------------------


def _write_openml_cache(root, data_id: int, n=80, seed=0):
    """A dataset in scikit-learn's fetch_openml cache layout under ``root/openml/openml.org``: the JSON API
    answers (description, features, qualities) and the ARFF file, gzipped, with the md5 of the ARFF in
    the description (fetch_openml checks it)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    hours = rng.integers(10, 60, n)
    work = rng.choice(["Private", "Self-emp", "Gov"], n)
    label = np.where(age + hours > 85, ">50K", "<=50K")
    rows = [f"{a},{w},{'?' if i % 11 == 0 else h},{y}" for i, (a, w, h, y) in enumerate(zip(age, work, hours, label))]
    arff = (
        "% adult-like fixture\n@relation adult\n@attribute age numeric\n"
        "@attribute workclass {Private,Self-emp,Gov}\n@attribute hours-per-week numeric\n"
        "@attribute class {<=50K,>50K}\n@data\n" + "\n".join(rows) + "\n"
    ).encode()
    file_id = 9_000_000 + data_id
    base = root / "openml" / "openml.org"
    api = base / "api" / "v1" / "json" / "data"

    def put(path, payload: bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb") as fh:
            fh.write(payload)

    description = {
        "data_set_description": {
            "id": str(data_id),
            "name": "adult",
            "version": "2",
            "format": "ARFF",
            "status": "active",
            "description": "fixture",
            "file_id": str(file_id),
            "default_target_attribute": "class",
            "url": f"https://api.openml.org/data/v1/download/{file_id}/adult.arff",
            "md5_checksum": hashlib.md5(arff).hexdigest(),
        }
    }
    feature = [
        ("age", "numeric", []),
        ("workclass", "nominal", ["Private", "Self-emp", "Gov"]),
        ("hours-per-week", "numeric", []),
        ("class", "nominal", ["<=50K", ">50K"]),
    ]
    features = {
        "data_features": {
            "feature": [
                {
                    "index": str(i),
                    "name": name,
                    "data_type": kind,
                    "nominal_value": values,
                    "is_target": "true" if name == "class" else "false",
                    "is_ignore": "false",
                    "is_row_identifier": "false",
                    "number_of_missing_values": str(n // 11 + 1 if name == "hours-per-week" else 0),
                }
                for i, (name, kind, values) in enumerate(feature)
            ]
        }
    }
    qualities = {"data_qualities": {"quality": [{"name": "NumberOfInstances", "value": f"{n}.0"}]}}
    put(api / f"{data_id}.gz", json.dumps(description).encode())
    put(api / "features" / f"{data_id}.gz", json.dumps(features).encode())
    put(api / "qualities" / f"{data_id}.gz", json.dumps(qualities).encode())
    put(base / "data" / "v1" / "download" / str(file_id) / "adult.arff.gz", arff)


def test_openml_named_dataset_loads_offline_from_the_cache(tmp_path):
    _write_openml_cache(tmp_path, data_id=1590)  # 'adult' maps to OpenML 1590
    task = tab.TASK.make("tiny", dataset="adult", data_dir=tmp_path)
    assert task.metric.name == "accuracy" and task.target == 0.85
    prep = _load("adult", str(tmp_path), None, "auto", "quantile", 0, None, ())
    assert prep.kind == "binary" and prep.n_num == 2  # age, hours (NaN -> 0); workclass one-hot (3)
    assert prep.x["train"].shape[1] == 2 + 3
    assert sum(len(v) for v in prep.y.values()) == 80
    # the same files through the generic openml:<id> name, and a short run on them
    result = run(
        RunSpec(task="tabular_mlp", optimizer="adamw", dataset="openml:1590", size="tiny", steps=10), data_dir=tmp_path
    )
    assert result.row["status"] == "ok"


def test_openml_missing_files_name_the_cache_path(tmp_path):
    with pytest.raises(
        UserError, match=r"missing OpenML dataset 1590 \(adult\).*openml\.org/api/v1/json/data/1590\.gz"
    ):
        tab.TASK.make("tiny", dataset="adult", data_dir=tmp_path)
    _write_openml_cache(tmp_path, data_id=4242)
    arff = next((tmp_path / "openml").rglob("adult.arff.gz"))
    arff.unlink()
    with pytest.raises(UserError, match="adult.arff.gz"):
        tab.TASK.make("tiny", dataset="openml:4242", data_dir=tmp_path)


# ---- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dataset": "adults"}, "unknown dataset 'adults'; known: .*adult"),
        ({"dataset": "openml:abc"}, "openml:<numeric data_id>"),
        ({"size": "huge"}, "unknown size 'huge'; known: paper, small, tiny"),
        ({"width": 3}, "unknown option.*'width'.*d_block"),
        ({"d_block": 0}, "d_block=0"),
        ({"n_blocks": 1.5}, "n_blocks=1.5"),
        ({"dropout": 1.0}, r"dropout=1.0.*\[0, 1\)"),
        ({"num_embeddings": "periodic"}, "known: none, piecewise"),
        ({"scaling": "minmax"}, "known: quantile, standard"),
        ({"task_type": "ranking"}, "known: auto, binary, multiclass, regression"),
        ({"n_bins": 1}, "n_bins=1"),
        ({"data_seed": -1}, "data_seed=-1"),
        ({"target": "label"}, "target= applies to OpenML and path"),
    ],
)
def test_bad_input_raises_user_error(kwargs, message):
    kwargs = dict(kwargs)
    size = kwargs.pop("size", "tiny")
    with pytest.raises(UserError, match=message):
        tab.TASK.make(size, **kwargs)
