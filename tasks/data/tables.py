"""Tables: scikit-learn's bundled sets, OpenML (through scikit-learn's ``fetch_openml`` cache), the user's
own CSV / parquet files (``path:``) and a generated mixed-type table; the preprocessing of the tabular-DL
literature; row batches on the device.

Preprocessing (docs/protocol.md#tabular-mlp, after ``lib/data.py`` of yandex-research/tabular-dl-optimizers):
numerical features are quantile-transformed to a normal distribution (fit on the training split plus
N(0, 1e-5/std) noise that breaks ties, n_quantiles = max(min(n_train // 30, 1000), 10)) or standardised
(``scaling``); NaN -> 0 afterwards (the training mean); features constant on the training split are
dropped. Categorical and binary features are one-hot encoded with the training split's levels (NaN is a
level of its own; unseen levels encode as all zeros; at most ``MAX_LEVELS`` most frequent levels per
column). Regression targets are standardised with training statistics; RMSE is reported in the target's
original units. Splits: 64 / 16 / 20 % train / val / test (the "Revisiting" protocol), stratified for
classification, fixed by ``data_seed``. Optional piecewise-linear bins: the training quantiles of each
numerical feature (arXiv 2203.05556, section 3.2.1).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import paths
from harness.errors import UserError, missing_data
from harness.task import Dataset, Metric, device_generator, epoch_indices

# Named OpenML datasets: name -> (OpenML data_id, task kind, one line). Ids checked against public
# benchmark tables (Grinsztajn et al. 2022 tabular benchmark, ExcelFormer appendix A, skrub dataset ids).
# Targets are the OpenML default target columns, in their original units (so RMSE values are not the
# standardised / log-scale numbers of the reference table in docs/protocol.md#tabular-mlp).
OPENML: dict[str, tuple[int, str]] = {
    "adult": (1590, "OpenML 1590 'adult': income > 50K, 48,842 rows, 14 features (8 categorical); binary"),
    "california": (
        537,
        "OpenML 537 'houses' = California housing 1990, 20,640 rows, 8 features; "
        "regression on median_house_value (USD)",
    ),
    "house": (574, "OpenML 574 'house_16H': 22,784 rows, 16 features; regression on price"),
    "higgs-small": (23512, "OpenML 23512 'higgs': 98,050 rows, 28 features; binary"),
    "covertype": (1596, "OpenML 1596 'covertype': 581,012 rows, 54 features; 7 classes"),
    "black-friday": (41540, "OpenML 41540 'black_friday': 166,821 rows, 9 features; regression on Purchase"),
    "diamonds": (42225, "OpenML 42225 'diamonds': 53,940 rows, 9 features (3 categorical); regression on price (USD)"),
}

BUNDLED = {  # scikit-learn's bundled sets: offline, no download
    "breast_cancer": "load_breast_cancer",
    "wine": "load_wine",
    "diabetes": "load_diabetes",
    "digits": "load_digits",
}


ACCURACY, RMSE = Metric("accuracy", "max"), Metric("rmse", "min")
_METRIC_OF = {"binary": ACCURACY, "multiclass": ACCURACY, "regression": RMSE}
_OPENML_KIND = {
    "adult": "binary",
    "california": "regression",
    "house": "regression",
    "higgs-small": "binary",
    "covertype": "multiclass",
    "black-friday": "regression",
    "diamonds": "regression",
}

DATASETS = (
    Dataset(
        "synthetic",
        "generated: 1,024 rows, 6 numerical (one with 5 % NaN) + 1 categorical feature, "
        "3 classes from a fixed random teacher network",
        offline=True,
        metric=ACCURACY,
    ),
    Dataset("breast_cancer", "scikit-learn bundled: 569 rows, 30 features; binary", offline=True, metric=ACCURACY),
    Dataset("wine", "scikit-learn bundled: 178 rows, 13 features; 3 classes", offline=True, metric=ACCURACY),
    Dataset("diabetes", "scikit-learn bundled: 442 rows, 10 features; regression", offline=True, metric=RMSE),
    Dataset(
        "digits", "scikit-learn bundled: 1,797 rows, 64 pixel features (8x8); 10 classes", offline=True, metric=ACCURACY
    ),
    *(
        Dataset(
            name,
            line,
            fetch=f"sklearn fetch_openml(data_id={data_id}) into <data_dir>/openml",
            metric=_METRIC_OF[_OPENML_KIND[name]],
        )
        for name, (data_id, line) in OPENML.items()
    ),
    Dataset(
        "openml:<data_id>",
        "any OpenML dataset by numeric id; option target= overrides the default "
        "target column; accuracy or RMSE by its target",
        fetch="sklearn fetch_openml into <data_dir>/openml",
    ),
    Dataset(
        "path:<file.csv|file.parquet>",
        "your own table; option target=<column> is required; task type "
        "inferred from the target (override with task_type=)",
        offline=True,
    ),
)

MAX_LEVELS = 256  # most frequent levels kept per categorical column (ID-like columns would explode one-hot)
REGRESSION_MIN_UNIQUE = 21  # a numeric target with more distinct values than 20 is treated as regression
EVAL_CHUNK = 8192  # rows per forward pass at evaluation (bounded memory on covertype-sized sets)


def check_name(dataset: str) -> None:
    """UserError for a malformed ``openml:`` / ``path:`` name (the rest is checked by the task record)."""
    if dataset.startswith("openml:"):
        ident = dataset[len("openml:") :]
        if not ident.isdigit() or int(ident) < 1:
            raise UserError(f"invalid dataset {dataset!r}: use openml:<numeric data_id>, e.g. openml:1590")
    elif dataset.startswith("path:"):
        if Path(dataset[len("path:") :]).suffix.lower() not in (".csv", ".parquet"):
            raise UserError(f"invalid dataset {dataset!r}: a path: dataset must be a .csv or .parquet file")


# --------------------------------------------------------------------------------------------------
# Locating and loading


@dataclass(frozen=True)
class TableKey:
    """What to load: the table and every preprocessing choice; ``stamp`` is a ``path:`` file's
    (mtime, size), so an edited file is read again."""

    dataset: str
    root: str
    target: str | None = None
    task_type: str = "auto"
    scaling: str = "quantile"
    data_seed: int = 0
    n_bins: int | None = None
    stamp: tuple = ()


def locate(
    dataset: str,
    data_dir: Path,
    *,
    target: str | None = None,
    task_type: str = "auto",
    scaling: str = "quantile",
    data_seed: int = 0,
    n_bins: int | None = None,
) -> TableKey:
    """Check a ``path:`` file exists, and (offline) that an OpenML set is in scikit-learn's cache; a
    missing one is a UserError naming the file and how to fetch it. Online, ``load`` downloads it."""
    root, stamp = Path(data_dir), ()
    if dataset.startswith("path:"):
        file = Path(dataset[len("path:") :]).expanduser()
        if not file.is_file():
            raise missing_data("table", file, "check the path after 'path:' (a .csv or .parquet file)")
        stat = file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    elif dataset in OPENML or dataset.startswith("openml:"):
        data_id = _openml_id(dataset)
        missing = [f for f in _openml_files(data_id, root) if not f.is_file()]
        if missing and paths.offline():
            raise missing_data(f"OpenML dataset {data_id} ({dataset})", missing[0], _openml_how(data_id, root))
    return TableKey(dataset, str(root), target, task_type, scaling, data_seed, n_bins, stamp)


def load(key: TableKey) -> Prepared:
    """Read and preprocess ``key`` (use through ``harness.task.load_data``: once per process)."""
    dataset = key.dataset
    if dataset == "synthetic":
        frame, y = _synthetic_frame(key.data_seed)
    elif dataset in BUNDLED:
        frame, y = _bundled_frame(dataset)
    elif dataset.startswith("path:"):
        frame, y = _file_frame(Path(dataset[len("path:") :]).expanduser(), key.target)
    else:
        frame, y = _openml_frame(dataset, _openml_id(dataset), Path(key.root), key.target)
    kind = _infer_kind(y.dropna() if hasattr(y, "dropna") else y, key.task_type, f"dataset {dataset!r}")
    return prepare(
        frame,
        y,
        kind=kind,
        scaling=key.scaling,
        data_seed=key.data_seed,
        n_bins=key.n_bins,
        where=f"dataset {dataset!r}",
    )


def _openml_id(dataset: str) -> int:
    return OPENML[dataset][0] if dataset in OPENML else int(dataset[len("openml:") :])


def _openml_how(data_id: int, root: Path) -> str:
    return (
        f"run once with network access (fetch_openml(data_id={data_id}, data_home='{root}') fills the "
        f"cache), or copy an existing scikit-learn OpenML cache folder 'openml.org' into {root / 'openml'}"
    )


# --------------------------------------------------------------------------------------------------
# Raw tables: (features DataFrame, target Series)


def _synthetic_frame(data_seed: int):
    """A small mixed-type classification table generated from a fixed random teacher network."""
    import pandas as pd

    rng = np.random.default_rng(10_007 + data_seed)
    n, n_num, n_levels, n_classes = 1024, 6, 4, 3
    x = rng.standard_normal((n, n_num))
    level = rng.integers(0, n_levels, n)
    inputs = np.concatenate([x, np.eye(n_levels)[level]], axis=1)
    w1 = rng.standard_normal((inputs.shape[1], 16)) / math.sqrt(inputs.shape[1])
    w2 = rng.standard_normal((16, n_classes))
    y = (np.maximum(inputs @ w1, 0.0) @ w2).argmax(axis=1)
    x[rng.random(n) < 0.05, n_num - 1] = np.nan  # exercises the NaN path
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(n_num)])
    frame["colour"] = pd.Series([f"c{v}" for v in level], dtype="object")
    return frame, pd.Series(y, name="label")


def _bundled_frame(name: str):
    import sklearn.datasets

    loader = getattr(sklearn.datasets, BUNDLED[name])
    kwargs = {"scaled": False} if name == "diabetes" else {}  # raw units; we scale ourselves
    bunch = loader(as_frame=True, **kwargs)
    return bunch.data, bunch.target


def _openml_files(data_id: int, root: Path) -> list[Path]:
    """The files ``fetch_openml(data_id=..., data_home=root)`` reads from its cache (the data file's name
    comes from the cached description, so it is listed only once that exists)."""
    base = root / "openml" / "openml.org" / "api" / "v1" / "json" / "data"
    files = [base / f"{data_id}.gz", base / "features" / f"{data_id}.gz", base / "qualities" / f"{data_id}.gz"]
    if files[0].is_file():
        import gzip

        try:
            with gzip.open(files[0], "rt", encoding="utf-8") as fh:
                url = json.load(fh)["data_set_description"]["url"]
            files.append(root / "openml" / "openml.org" / (urlparse(url).path.lstrip("/") + ".gz"))
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"corrupt OpenML cache file {files[0]} ({exc}); delete it and fetch again") from None
    return files


def _openml_frame(dataset: str, data_id: int, root: Path, target: str | None):
    """Load an OpenML dataset through scikit-learn's ``fetch_openml`` cache under ``root/openml``
    (the real cache layout: ``openml.org/api/v1/json/data/<id>.gz``, ``.../features/<id>.gz``,
    ``.../qualities/<id>.gz`` and ``openml.org/data/v1/download/<file_id>/<name>.arff.gz``)."""
    files = _openml_files(data_id, root)
    missing = [f for f in files if not f.is_file()]
    how = _openml_how(data_id, root)
    if missing and paths.offline():
        raise missing_data(f"OpenML dataset {data_id} ({dataset})", missing[0], how)
    from sklearn.datasets import fetch_openml

    try:
        bunch = fetch_openml(
            data_id=data_id,
            data_home=str(root),
            as_frame=True,
            target_column=target if target is not None else "default-target",
        )
    except KeyError as exc:
        raise UserError(f"OpenML dataset {data_id} has no column {target!r} ({exc})") from None
    except Exception as exc:  # network errors, checksum mismatch, 412 "not found"
        raise missing_data(
            f"OpenML dataset {data_id} ({dataset})",
            missing[0] if missing else files[0],
            f"{how} [fetch_openml failed: {type(exc).__name__}: {exc}]",
        ) from None
    y = bunch.target
    if y is None or getattr(y, "ndim", 1) != 1:
        raise UserError(f"OpenML dataset {data_id} has no single default target column; set option target=<column>")
    return bunch.data, y


def _file_frame(path: Path, target: str):
    import pandas as pd

    if not path.is_file():
        raise missing_data("table", path, "check the path after 'path:' (a .csv or .parquet file)")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as exc:
        raise UserError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    if target not in frame.columns:
        raise UserError(f"no column {target!r} in {path}; columns: {', '.join(map(str, frame.columns))}")
    return frame.drop(columns=[target]), frame[target]


# --------------------------------------------------------------------------------------------------
# Preprocessing


@dataclass(frozen=True)
class Prepared:
    """A preprocessed table: float32 features [numerical | one-hot], targets, and what the model needs."""

    x: Mapping[str, np.ndarray]  # split -> (n, n_num + n_onehot) float32
    y: Mapping[str, np.ndarray]  # split -> int64 labels or float32 standardised targets
    kind: str  # "binary" | "multiclass" | "regression"
    n_num: int  # leading numerical columns of x
    n_classes: int  # 0 for regression
    y_mean: float  # target standardisation (regression; 0 / 1 otherwise)
    y_std: float
    baseline: float  # val RMSE (original units) of predicting the train mean; 0 for classification
    bins: tuple[np.ndarray, ...] | None  # piecewise-linear bin edges per numerical feature


def _is_categorical(col) -> bool:
    import pandas as pd

    return not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _infer_kind(y, task_type: str, where: str) -> str:
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    n_unique = int(y.nunique())
    if task_type == "auto":
        if numeric and n_unique >= REGRESSION_MIN_UNIQUE:
            return "regression"
        task_type = "binary" if n_unique == 2 else "multiclass"
    if task_type == "regression" and not numeric:
        raise UserError(f"task_type=regression needs a numeric target, but {where} is {y.dtype}")
    if task_type != "regression" and n_unique < 2:
        raise UserError(f"the target of {where} has {n_unique} distinct value(s); classification needs >= 2")
    if task_type == "binary" and n_unique != 2:
        raise UserError(f"task_type=binary needs exactly 2 target values, but {where} has {n_unique}")
    return task_type


def _split(n: int, labels: np.ndarray | None, seed: int) -> dict[str, np.ndarray]:
    """64 / 16 / 20 % train / val / test indices, stratified when every class has >= 2 rows per cut."""
    from sklearn.model_selection import train_test_split

    index = np.arange(n)

    def cut(idx, size, strat):
        try:
            return train_test_split(idx, test_size=size, random_state=seed, stratify=strat)
        except ValueError:  # a class too rare to stratify: fall back to a plain random split
            return train_test_split(idx, test_size=size, random_state=seed)

    rest, test = cut(index, 0.2, labels)
    train, val = cut(rest, 0.2, None if labels is None else labels[rest])
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _infinite_as_missing(frame, cols, where: str):
    """An infinite entry in a numerical feature (``inf`` in a CSV, a division by zero upstream) is
    treated as missing, like an empty cell, with a warning naming the columns: scaling cannot use
    it (the quantile transform refuses it outright), and a silent clip would hide a data bug."""
    import warnings

    counts = {c: int(np.isinf(frame[c].to_numpy(dtype=np.float64, na_value=np.nan)).sum()) for c in cols}
    counts = {c: n for c, n in counts.items() if n}
    if not counts:
        return frame
    frame = frame.copy()
    for c in counts:
        values = frame[c].astype("float64")
        frame[c] = values.where(~np.isinf(values), np.nan)
    listing = ", ".join(f"{c!r} ({n})" for c, n in counts.items())
    warnings.warn(
        f"{where}: infinite values in numerical column(s) {listing} are treated as missing (like empty "
        "cells); replace them in the file to silence this",
        UserWarning,
        stacklevel=3,
    )
    return frame


def _numeric_block(frame, cols, split, scaling: str, seed: int) -> np.ndarray:
    if not cols:
        return np.zeros((len(frame), 0), dtype=np.float64)
    x = frame[cols].apply(lambda c: c.astype("float64")).to_numpy(dtype=np.float64, na_value=np.nan)
    train = x[split["train"]]
    if scaling == "quantile":
        from sklearn.preprocessing import QuantileTransformer

        n_train = len(train)
        qt = QuantileTransformer(
            output_distribution="normal",
            subsample=10**9,
            random_state=seed,
            n_quantiles=min(max(min(n_train // 30, 1000), 10), n_train),
        )
        # Reference recipe: fit on a noisy copy (noise 1e-5 / max(std, 1e-5)) so repeated values spread
        # over the normal instead of collapsing onto one quantile; transform the clean values.
        std = np.nanstd(train, axis=0, keepdims=True)
        noise = 1e-5 / np.maximum(std, 1e-5)
        qt.fit(train + noise * np.random.default_rng(seed).standard_normal(train.shape))
        out = qt.transform(x)
    else:
        mean = np.nanmean(train, axis=0)
        std = np.nanstd(train, axis=0)
        out = (x - mean) / np.where(std > 0, std, 1.0)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _onehot_block(frame, cols, split) -> np.ndarray:
    import pandas as pd

    blocks = []
    for col in cols:
        values = frame[col].astype("object").where(frame[col].notna(), "<NA>").astype(str)
        levels = values.iloc[split["train"]].value_counts()
        if len(levels) < 2:
            continue  # constant on train: carries no information
        levels = sorted(levels.index[:MAX_LEVELS])
        codes = pd.Index(levels).get_indexer(values)  # -1 for unseen levels -> all zeros
        block = np.zeros((len(frame), len(levels)), dtype=np.float32)
        seen = codes >= 0
        block[np.nonzero(seen)[0], codes[seen]] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), dtype=np.float32)


def _quantile_bins(train: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-feature bin edges: the (n_bins + 1) training quantiles, duplicates removed (arXiv 2203.05556,
    section 3.2.1). A feature with one distinct value gets the edges [v - 1, v + 1]."""
    n_bins = min(n_bins, max(len(train) - 1, 1))
    qs = np.quantile(train, np.linspace(0.0, 1.0, n_bins + 1), axis=0)
    bins = []
    for j in range(train.shape[1]):
        edges = np.unique(qs[:, j])
        if len(edges) < 2:
            edges = np.array([edges[0] - 1.0, edges[0] + 1.0])
        bins.append(edges.astype(np.float32))
    return tuple(bins)


def prepare(frame, y, *, kind: str, scaling: str, data_seed: int, n_bins: int | None, where: str) -> Prepared:
    """Split and preprocess a raw table (docs/protocol.md#tabular-mlp); see the module docstring."""
    import pandas as pd

    frame = frame.reset_index(drop=True)
    y = pd.Series(y).reset_index(drop=True)
    keep = y.notna().to_numpy()
    if not keep.all():  # rows without a target cannot be used
        frame, y = frame[keep].reset_index(drop=True), y[keep].reset_index(drop=True)
    if len(frame) < 10:
        raise UserError(f"{where} has {len(frame)} usable rows; need at least 10")
    if kind == "regression":
        target = y.astype("float64").to_numpy()
        split = _split(len(frame), None, data_seed)
        labels, n_classes = None, 0
    else:
        classes, labels = np.unique(y.astype(str).to_numpy(), return_inverse=True)
        n_classes = len(classes)
        split = _split(len(frame), labels, data_seed)
        target = labels.astype(np.int64)

    categorical = [c for c in frame.columns if _is_categorical(frame[c])]
    numeric = [c for c in frame.columns if c not in categorical]
    frame = _infinite_as_missing(frame, numeric, where)
    # Binary numerical columns are categorical (as in the reference preprocessing); columns constant on
    # train are dropped.
    train_rows = frame.iloc[split["train"]]
    n_distinct = {c: train_rows[c].nunique(dropna=True) for c in numeric}
    categorical += [c for c in numeric if n_distinct[c] == 2]
    numeric = [c for c in numeric if n_distinct[c] > 2]
    x_num = _numeric_block(frame, numeric, split, scaling, data_seed).astype(np.float32)
    x_cat = _onehot_block(frame, categorical, split)
    x = np.concatenate([x_num, x_cat], axis=1)
    if x.shape[1] == 0:
        raise UserError(f"{where} has no usable feature (all columns constant on the training split)")

    y_mean, y_std, baseline = 0.0, 1.0, 0.0
    if kind == "regression":
        y_mean = float(target[split["train"]].mean())
        y_std = float(target[split["train"]].std())
        if not y_std > 0:
            raise UserError(f"the target of {where} is constant on the training split")
        baseline = float(np.sqrt(np.mean((target[split["val"]] - y_mean) ** 2)))
        target = ((target - y_mean) / y_std).astype(np.float32)
    bins = _quantile_bins(x_num[split["train"]], n_bins) if n_bins and x_num.shape[1] else None
    xs, ys = {}, {}
    for name, idx in split.items():
        xs[name] = np.ascontiguousarray(x[idx])
        ys[name] = np.ascontiguousarray(target[idx])
        xs[name].setflags(write=False)  # shared through the cache: never mutated
        ys[name].setflags(write=False)
    return Prepared(
        x=xs,
        y=ys,
        kind=kind,
        n_num=x_num.shape[1],
        n_classes=n_classes,
        y_mean=y_mean,
        y_std=y_std,
        baseline=baseline,
        bins=bins,
    )


# --------------------------------------------------------------------------------------------------
# Data, loss, evaluation


class TabularData:
    """All splits on the device; training batches are random permutations cut into fixed-size batches
    (the last partial batch of an epoch is dropped), the order drawn only from the generator."""

    def __init__(self, prep: Prepared, device: torch.device, batch_size: int):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.x = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in prep.x.items()}
        self.y = {k: torch.from_numpy(np.array(v)).to(self.device) for k, v in prep.y.items()}

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1) -> Iterator[tuple]:
        """Endless (x, y) batches; under DDP every rank draws the same permutation (same generator seed)
        and takes every world_size-th row of it, ``batch_size // world_size`` rows per step. On a GPU the
        permutation is drawn there by a generator seeded from ``generator``."""
        x, y = self.x["train"], self.y["train"]
        generator = device_generator(generator, self.device)
        for idx in epoch_indices(x.shape[0], self.batch_size, generator, rank, world_size):
            yield x[idx], y[idx]


def loss_fn(kind: str):
    """Training loss of one (x, y) batch: cross-entropy, BCE-with-logits or MSE (standardised targets)."""

    def loss(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        out = model(x).float()
        if kind == "multiclass":
            return F.cross_entropy(out, y)
        if kind == "binary":
            return F.binary_cross_entropy_with_logits(out.squeeze(-1), y.float())
        return F.mse_loss(out.squeeze(-1), y)

    return loss


def evaluator(kind: str, y_std: float):
    """``evaluate(model, data, split)``: ``accuracy`` and ``loss``, or ``rmse`` in the target's original
    units and ``loss`` (the MSE on standardised targets)."""

    def evaluate(model: nn.Module, data: TabularData, split: str) -> dict[str, float]:
        x, y = data.x[split], data.y[split]
        out = torch.cat([model(x[i : i + EVAL_CHUNK]).float() for i in range(0, x.shape[0], EVAL_CHUNK)])
        if kind == "regression":
            mse = F.mse_loss(out.squeeze(-1), y)
            return {"rmse": math.sqrt(float(mse)) * y_std, "loss": float(mse)}
        if kind == "binary":
            logit = out.squeeze(-1)
            loss = F.binary_cross_entropy_with_logits(logit, y.float())
            acc = ((logit > 0).long() == y).float().mean()
        else:
            loss = F.cross_entropy(out, y)
            acc = (out.argmax(dim=1) == y).float().mean()
        acc_value, loss_value = torch.stack([acc, loss]).tolist()  # one host sync
        return {"accuracy": acc_value, "loss": loss_value}

    return evaluate
