"""Tables on the device: the splits as tensors, training batches, the loss, and evaluation
(accuracy, or RMSE in the target's original units).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness.task import device_generator, epoch_indices
from tasks.data.table_prep import Prepared

EVAL_CHUNK = 8192  # rows per forward pass at evaluation (bounded memory on covertype-sized sets)


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
