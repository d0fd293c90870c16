"""Preprocessing of tables: ``prepare`` turns a raw table (features DataFrame, target Series) into a
``Prepared`` one, split and scaled as the tabular-DL literature does.

Recipe (docs/protocol.md#tabular-mlp, after ``lib/data.py`` of yandex-research/tabular-dl-optimizers):
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

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from harness.errors import UserError

MAX_LEVELS = 256  # most frequent levels kept per categorical column (ID-like columns would explode one-hot)
REGRESSION_MIN_UNIQUE = 21  # a numeric target with more distinct values than 20 is treated as regression


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


def infer_kind(y, task_type: str, where: str) -> str:
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
