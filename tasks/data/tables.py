"""Tables: the catalogue, and finding and reading each kind: scikit-learn's bundled sets, OpenML (through
scikit-learn's ``fetch_openml`` cache), the user's own CSV / parquet files (``path:``) and a generated
mixed-type table; ``locate`` / ``load`` for the ``tabular_mlp`` task.

Preprocessing (docs/protocol.md#tabular-mlp): ``tasks.data.table_prep``; the splits on the device, the
loss and evaluation: ``tasks.data.table_batches``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from harness import paths
from harness.errors import UserError, missing_data
from harness.task import Dataset, Metric
from tasks.data.table_prep import Prepared, infer_kind, prepare

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
    kind = infer_kind(y.dropna() if hasattr(y, "dropna") else y, key.task_type, f"dataset {dataset!r}")
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
