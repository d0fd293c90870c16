"""Tabular MLP: the plain MLP of "Revisiting Deep Learning Models for Tabular Data" (Gorishniy, Rubachev,
Khrulkov, Babenko, NeurIPS 2021, arXiv 2106.11959) as benchmarked for optimizers in "Benchmarking
Optimizers for Tabular MLPs" (Gorishniy, Rubachev, Feoktistov, Babenko, arXiv 2604.15297;
yandex-research/tabular-dl-optimizers). Paper-scale setup and reference numbers:
docs/protocol.md#tabular-mlp.

Model: ``n_blocks`` x [Linear -> ReLU -> Dropout] of width ``d_block``, then a Linear head. With
``num_embeddings="piecewise"`` every numerical feature first goes through a piecewise-linear encoding
over quantile bins followed by a per-feature Linear + ReLU ("Q-LR" in Gorishniy, Rubachev, Babenko,
"On Embeddings for Numerical Features in Tabular Deep Learning", NeurIPS 2022, arXiv 2203.05556, eq. 1
and section 3.2.1; the MLP-dagger variant of the optimizer benchmark uses piecewise-linear embeddings).

Data: ``tasks.data.tables`` (scikit-learn's bundled sets, OpenML, CSV / parquet files); preprocessing:
``tasks.data.table_prep``; batches, loss and evaluation: ``tasks.data.table_batches``.

Parameter roles (as in the reference: Muon gets every backbone Linear weight, the first layer
included): backbone Linear weights -> ``matrix``, the output Linear -> ``head``, embedding weights ->
``embedding``, every bias -> ``vector``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.errors import UserError
from harness.task import Option, Task, TaskRequest, TaskSpec, TinyRun, roles_by_module
from tasks.data import table_batches, table_prep, tables

DESCRIPTION = (
    "MLP (n_blocks x [Linear-ReLU-Dropout] + Linear head, optional piecewise-linear numeric "
    "embeddings) on tabular data; accuracy (classification) or RMSE (regression)"
)

OPTIONS = (
    Option("d_block", int, None, "width of every block", auto="size (32, 128, 512)", minimum=1),
    Option("n_blocks", int, None, "number of [Linear-ReLU-Dropout] blocks", auto="size (2, 3, 3)", minimum=1),
    Option("dropout", float, None, "dropout probability", auto="size (0, 0, 0.1)", minimum=0, below=1),
    Option(
        "batch_size",
        int,
        None,
        "rows per optimizer step",
        auto="size (64, 128; paper: per dataset, docs/protocol.md#tabular-mlp)",
        minimum=1,
    ),
    Option(
        "num_embeddings",
        str,
        "none",
        "none (plain MLP) or piecewise (Q-LR piecewise-linear embeddings)",
        choices=("none", "piecewise"),
    ),
    Option("n_bins", int, 48, "quantile bins per numerical feature for piecewise embeddings", minimum=2),
    Option("d_embedding", int, 16, "embedding width per numerical feature", minimum=1),
    Option(
        "scaling", str, "quantile", "quantile (noisy quantile -> normal) or standard", choices=("quantile", "standard")
    ),
    Option("target", str, None, "target column (required for path: datasets; overrides OpenML's default)"),
    Option(
        "task_type",
        str,
        "auto",
        "auto (inferred from the target), regression, binary or multiclass",
        choices=("auto", "regression", "binary", "multiclass"),
    ),
    Option("data_seed", int, 0, "fixes the train/val/test split and the quantile noise", minimum=0),
)

# Per-size model and budget. "small" is the demo size: one run with evals takes ~3-6 s on one CPU thread.
SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"d_block": 32, "n_blocks": 2, "dropout": 0.0, "batch_size": 64, "steps": 40, "eval_every": 20},
    "small": {"d_block": 128, "n_blocks": 3, "dropout": 0.0, "batch_size": 128, "steps": 800, "eval_every": 200},
    # The reference tunes n_blocks in [1, 6], d_block in [64, 1024] and dropout jointly; these
    # fixed defaults are a middle point of that space [I]; set them as task options in a sweep.
    "paper": {"d_block": 512, "n_blocks": 3, "dropout": 0.1, "batch_size": None, "epochs": 100},
}

# The reference's batch sizes for the named sets (docs/protocol.md#tabular-mlp); the rest follow the same
# rule by training-set size.
PAPER_BATCH = {
    "adult": 256,
    "california": 256,
    "house": 256,
    "higgs-small": 512,
    "black-friday": 512,
    "diamonds": 512,
    "covertype": 1024,
}

# Steps-to-target thresholds: a little below the tuned MLP's test score (reference table in
# docs/protocol.md#tabular-mlp, AdamW column, converted to original units where needed) for the named
# sets [I]; from our own small runs for the bundled ones. None where no reference exists (user files,
# raw-price regressions).
TARGETS: dict[str, tuple[str, float]] = {
    "synthetic": ("accuracy", 0.80),
    "breast_cancer": ("accuracy", 0.95),
    "wine": ("accuracy", 0.95),
    "digits": ("accuracy", 0.95),
    "diabetes": ("rmse", 60.0),
    "adult": ("accuracy", 0.85),
    "higgs-small": ("accuracy", 0.72),
    "covertype": ("accuracy", 0.95),
    "california": ("rmse", 50_000.0),
    "house": ("rmse", 32_000.0),
}


# --------------------------------------------------------------------------------------------------
# Model


class PiecewiseLinearEmbeddings(nn.Module):
    """Q-LR embeddings (arXiv 2203.05556): piecewise-linear encoding of each numerical feature over its
    quantile bins, then a separate Linear per feature and ReLU. Input (B, F) -> output (B, F * d).

    Encoding of value x in bin t with edges [l_t, r_t): (x - l_t) / (r_t - l_t), clamped to [0, 1] except
    that the first bin may go below 0 and the last bin above 1 (so values outside the training range
    still move the encoding). Features with fewer bins are padded with bins that always encode 0.
    """

    def __init__(self, bins: tuple[np.ndarray, ...], d_embedding: int):
        super().__init__()
        n_features = len(bins)
        max_bins = max(len(b) - 1 for b in bins)
        left = np.zeros((n_features, max_bins), dtype=np.float32)
        width = np.ones((n_features, max_bins), dtype=np.float32)
        low = np.zeros((n_features, max_bins), dtype=np.float32)
        high = np.ones((n_features, max_bins), dtype=np.float32)
        mask = np.zeros((n_features, max_bins), dtype=np.float32)
        for j, edges in enumerate(bins):
            k = len(edges) - 1
            left[j, :k] = edges[:-1]
            width[j, :k] = np.diff(edges)
            mask[j, :k] = 1.0
            low[j, 0] = -np.inf
            high[j, k - 1] = np.inf
        for name, value in (("left", left), ("width", width), ("low", low), ("high", high), ("mask", mask)):
            self.register_buffer(name, torch.from_numpy(value))
        self.d_embedding = d_embedding
        self.weight = nn.Parameter(torch.empty(n_features, max_bins, d_embedding))
        # Stored flat so it is a 1-D "vector" parameter (no weight decay), like any other bias.
        self.bias = nn.Parameter(torch.empty(n_features * d_embedding))

    def reset_parameters(self, generator: torch.Generator) -> None:
        bound = self.weight.shape[1] ** -0.5  # rtdl _NLinear init: U(-1/sqrt(d_in), 1/sqrt(d_in))
        nn.init.uniform_(self.weight, -bound, bound, generator=generator)
        nn.init.uniform_(self.bias, -bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ratio = (x.unsqueeze(-1) - self.left) / self.width
        encoded = torch.minimum(torch.maximum(ratio, self.low), self.high) * self.mask
        out = torch.einsum("bfk,fkd->bfd", encoded, self.weight).flatten(1) + self.bias
        return F.relu(out)


class TabularMLP(nn.Module):
    """[optional embeddings] -> n_blocks x [Linear -> ReLU -> Dropout] -> Linear head."""

    def __init__(
        self,
        n_num: int,
        n_cat: int,
        n_out: int,
        d_block: int,
        n_blocks: int,
        dropout: float,
        bins: tuple[np.ndarray, ...] | None = None,
        d_embedding: int = 16,
    ):
        super().__init__()
        self.n_num = n_num
        self.embeddings = PiecewiseLinearEmbeddings(bins, d_embedding) if bins else None
        d_in = (n_num * d_embedding if bins else n_num) + n_cat
        layers: list[nn.Module] = []
        for i in range(n_blocks):
            layers += [nn.Linear(d_in if i == 0 else d_block, d_block), nn.ReLU(), nn.Dropout(dropout)]
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(d_block, n_out)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """PyTorch's Linear init (U(+-1/sqrt(fan_in)) for weight and bias), drawn from ``generator``."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = module.in_features**-0.5
                nn.init.uniform_(module.weight, -bound, bound, generator=generator)
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        if self.embeddings is not None:
            self.embeddings.reset_parameters(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embeddings is not None:
            x = torch.cat([self.embeddings(x[:, : self.n_num]), x[:, self.n_num :]], dim=1)
        return self.head(self.blocks(x))


def build_model(prep: table_prep.Prepared, opts: Mapping[str, Any], generator: torch.Generator | None) -> TabularMLP:
    """The model for ``prep``; initialised from ``generator`` (left uninitialised when None, e.g. on meta)."""
    n_out = prep.n_classes if prep.kind == "multiclass" else 1
    bins = prep.bins if opts["num_embeddings"] == "piecewise" else None
    # Build without touching the global RNG (module constructors draw their default init from it).
    with torch.random.fork_rng(devices=[]):
        model = TabularMLP(
            prep.n_num,
            prep.x["train"].shape[1] - prep.n_num,
            n_out,
            opts["d_block"],
            opts["n_blocks"],
            opts["dropout"],
            bins,
            opts["d_embedding"],
        )
    if generator is not None:
        model.reset_parameters(generator)
    return model


def _roles(model: TabularMLP) -> dict[str, list[nn.Parameter]]:
    return roles_by_module(model, embedding=(PiecewiseLinearEmbeddings,), head=model.head)


# --------------------------------------------------------------------------------------------------
# The record


def resolve(request: TaskRequest) -> TaskRequest:
    """Size defaults filled in; the dataset name and the ``target`` option checked against it."""
    dataset, opts = request.dataset, dict(request.options)
    tables.check_name(dataset)
    for key in ("d_block", "n_blocks", "dropout", "batch_size"):
        if opts[key] is None:
            opts[key] = SIZE_DEFAULTS[request.size][key]  # paper batch_size stays None: set per dataset
    if opts["dropout"] is not None:
        opts["dropout"] = float(opts["dropout"])
    if opts["target"] is not None and not (dataset.startswith(("path:", "openml:")) or dataset in tables.OPENML):
        raise UserError(f"option target= applies to OpenML and path: datasets, not to {dataset!r}")
    if dataset.startswith("path:") and opts["target"] is None:
        raise UserError(f"dataset {dataset!r} needs option target=<column> (the column to predict)")
    return request.with_options(**opts)


def locate(request: TaskRequest, data_dir: Path) -> tables.TableKey:
    opts = request.options
    return tables.locate(
        request.dataset,
        data_dir,
        target=opts["target"],
        task_type=opts["task_type"],
        scaling=opts["scaling"],
        data_seed=opts["data_seed"],
        n_bins=opts["n_bins"] if opts["num_embeddings"] == "piecewise" else None,
    )


def build(request: TaskRequest, prep: table_prep.Prepared) -> Task:
    """The task on a preprocessed table (pure): the metric, the model's widths and the paper-size
    budget follow from the table."""
    size, dataset, opts = request.size, request.dataset, dict(request.options)
    n_train = prep.x["train"].shape[0]
    if opts["batch_size"] is None:  # paper: the reference's per-dataset batch, else the same rule by size
        opts["batch_size"] = PAPER_BATCH.get(dataset) or (
            256 if n_train <= 30_000 else 512 if n_train <= 120_000 else 1024
        )
    if size == "paper":
        # The reference: no epoch cap with early stopping (patience 16) and constant LR; the harness has
        # a fixed step budget, so we give a fixed number of epochs [I] and evaluate once per epoch.
        per_epoch = max(1, n_train // opts["batch_size"])
        steps, eval_every = SIZE_DEFAULTS["paper"]["epochs"] * per_epoch, per_epoch
        schedule, warmup = "constant", 0.0
    else:
        steps, eval_every = SIZE_DEFAULTS[size]["steps"], SIZE_DEFAULTS[size]["eval_every"]
        schedule, warmup = "cosine", 0.05

    if prep.kind == "regression":
        metric = tables.RMSE
        # Worse than predicting the training mean by a factor of 2: a diverged run ranks below any run that
        # learned nothing, while staying on the metric's scale (so model-based samplers are not distorted).
        penalty = 2.0 * prep.baseline
    else:
        metric = tables.ACCURACY
        penalty = 1.0 / prep.n_classes  # chance level of a uniform guess
    # A threshold applies only to its own metric (task_type= may turn a dataset into another task).
    target_metric, target = TARGETS.get(dataset, (None, None))
    if target_metric != metric.name:
        target = None
    batch_size = opts["batch_size"]

    def make_model(generator: torch.Generator) -> nn.Module:
        return build_model(prep, opts, generator)

    def make_data(device: torch.device) -> table_batches.TabularData:
        return table_batches.TabularData(prep, device, batch_size)

    return Task(
        name="tabular_mlp",
        dataset=dataset,
        size=size,
        metric=metric,
        steps=steps,
        eval_every=eval_every,
        make_model=make_model,
        make_data=make_data,
        loss=table_batches.loss_fn(prep.kind),
        evaluate=table_batches.evaluator(prep.kind, prep.y_std),
        roles=_roles,
        penalty=float(penalty),
        target=target,
        schedule=schedule,
        warmup_fraction=warmup,
        grad_clip=1.0,
        batch_size=batch_size,
        options=opts,
        description=f"{DESCRIPTION}; {prep.kind}, {n_train} training rows",
    )


TASK = TaskSpec(
    name="tabular_mlp",
    description=DESCRIPTION,
    datasets=tables.DATASETS,
    default_dataset={"tiny": "synthetic", "small": "digits", "paper": "adult"},
    options=OPTIONS,
    metrics=(tables.ACCURACY, tables.RMSE),
    resolve=resolve,
    locate=locate,
    load=tables.load,
    build=build,
    tiny=TinyRun(steps=24, lr_position=0.9, window=5, min_drop=0.05),
)
