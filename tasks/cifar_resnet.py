"""CIFAR ResNets on plain and long-tailed CIFAR (shared/PROTOCOL.md section 5).

Models:
  * ``resnet8`` / ``resnet20`` / ``resnet32``: the CIFAR ResNets of He, Zhang, Ren, Sun, "Deep Residual
    Learning for Image Recognition" (CVPR 2016, section 4.2): a 3x3 stem with 16 channels, three stages of
    n = (depth - 2) / 6 BasicBlocks with 16 / 32 / 64 channels (stride 1, 2, 2), option-A shortcuts
    (subsample + zero-pad channels, no parameters), global average pooling, a Linear head. ResNet-32 is the
    model of the LDAM-DRW long-tailed recipe (Cao et al., NeurIPS 2019, kaidic/LDAM-DRW
    ``models/resnet_cifar.py``; 0.46M parameters), with its Kaiming-normal init.
  * ``resnet18``: the CIFAR ResNet-18 of kuangliu/pytorch-cifar (3x3 stem with 64 channels, no max-pool,
    [2, 2, 2, 2] BasicBlocks with 64..512 channels, 1x1-conv + BN projection shortcuts; ~11.2M parameters).
  All use BatchNorm.

Data: CIFAR-10 / CIFAR-100 through torchvision (downloaded into ``<data_dir>/cifar``; an existing
``cifar-10-batches-py`` / ``cifar-100-python`` folder there is used offline). A balanced validation set of
10 % of each class is held out from the official training set; the test set is the official balanced one.
``imbalance=k > 1`` makes the remaining training set long-tailed with the LDAM-DRW profile
n_i = floor(n_max * k^(-i / (C - 1))) for class i = 0..C-1 (n_max = 4,500 / 450 per class after the
validation hold-out), per-class subsets drawn with ``data_seed``. Augmentation (random 32x32 crop of the
image zero-padded by 4, horizontal flip, as in both recipes) runs on the device on whole batches: one
gather with per-image row/column offsets, the flip folded into the column index. Inputs are normalised
with the training split's per-channel mean and std.

Offline sets: ``digits`` (scikit-learn's bundled 8x8 grey digits, real data, padding 1 for the crop) and
``synthetic`` (generated 3x16x16 class templates, for tests).

Roles: the stem convolution -> ``conv_first``, the Linear head -> ``head``, BatchNorm weights and biases
and the head bias -> ``vector``, every other convolution kernel -> ``matrix``.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import paths
from harness.errors import UserError, missing_data, unknown
from harness.task import Metric, Task, device_generator, epoch_indices, roles_by_module

DESCRIPTION = ("CIFAR ResNets (ResNet-8/20/32 option A, ResNet-18 with 3x3 stem; BatchNorm) on CIFAR-10/100, "
               "optionally long-tailed; crop+flip on device; top-1 accuracy")
SIZES = ("tiny", "small", "paper")

DATASETS: dict[str, str] = {
    "synthetic": "offline, generated: 10 classes of 3x16x16 images (class templates, random shifts, noise); "
                 "1,024 / 256 / 256 train / val / test",
    "digits": "offline (bundled with scikit-learn): 1,797 real 8x8 grey digits, 10 classes; 60 / 20 / 20 % "
              "train / val / test per class",
    "cifar10": "download (torchvision) into <data_dir>/cifar/cifar-10-batches-py: 50,000 + 10,000 32x32 "
               "colour images, 10 classes; val = 10 % of each training class; option imbalance=k long-tails "
               "the training set",
    "cifar100": "download (torchvision) into <data_dir>/cifar/cifar-100-python: as cifar10 with 100 classes",
}
DEFAULT_DATASET = {"tiny": "synthetic", "small": "digits", "paper": "cifar10"}

OPTIONS: dict[str, Any] = {
    "model": None,        # resnet8 | resnet20 | resnet32 | resnet18 (None: size default)
    "imbalance": 1.0,     # long-tail ratio k = n_max / n_min of the training set (1: as is)
    "augment": True,      # random crop (zero padding) + horizontal flip on device
    "batch_size": None,   # None: size default
    "data_seed": 0,       # fixes the validation hold-out and the long-tailed subsets
}

MODELS = ("resnet8", "resnet20", "resnet32", "resnet18")

SIZE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"model": "resnet8", "batch_size": 32, "steps": 30, "eval_every": 15},
    # The demo size: one run with its evals takes a few seconds on one CPU thread.
    "small": {"model": "resnet8", "batch_size": 64, "steps": 300, "eval_every": 75},
    # PROTOCOL section 5: LDAM-DRW ResNet-32 recipe (200 epochs, batch 128, 5 warmup epochs) with the
    # harness's warmup + cosine schedule; kuangliu's ResNet-18 uses the same epochs and batch.
    "paper": {"model": "resnet32", "batch_size": 128, "epochs": 200, "warmup_epochs": 5, "eval_epochs": 5},
}


@dataclass(frozen=True)
class _Source:
    channels: int
    size: int
    n_classes: int
    pad: int                 # crop padding: 4 at 32x32 (the recipes), scaled down for small images
    per_class: int | None    # images per class in the official training set (CIFAR only)


SOURCES = {
    "synthetic": _Source(3, 16, 10, 2, None),
    "digits": _Source(1, 8, 10, 1, None),
    "cifar10": _Source(3, 32, 10, 4, 5000),
    "cifar100": _Source(3, 32, 100, 4, 500),
}

CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"],
                "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"],
                 "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}

VAL_FRACTION = 0.1  # of each CIFAR training class, held out as a balanced validation set

# Top-1 references for steps-to-target (the threshold is 95 % of the reference, rounded down to 0.01):
# ResNet-32 / CE on CIFAR-10 (He et al. 2016: 7.51 % error) and on long-tailed CIFAR with k = 10, 100
# (LDAM-DRW paper, Table 2, ERM rows); ResNet-18 on CIFAR-10 (kuangliu README, 93.02 %); our own runs
# for the offline sets. Other (model, dataset, k) combinations have no target.
REFERENCE_ACCURACY: dict[tuple[str, str, float], float] = {
    ("resnet32", "cifar10", 1.0): 0.9249, ("resnet32", "cifar10", 10.0): 0.8639,
    ("resnet32", "cifar10", 100.0): 0.7036, ("resnet32", "cifar100", 10.0): 0.5570,
    ("resnet32", "cifar100", 100.0): 0.3832, ("resnet18", "cifar10", 1.0): 0.9302,
}
OFFLINE_TARGETS = {("synthetic", 1.0): 0.5, ("digits", 1.0): 0.9}

EVAL_CHUNK = 1024
# Long-tail groups of Liu et al. 2019 (OLTR): many-shot > 100, few-shot < 20 training images per class.
MANY_SHOT, FEW_SHOT = 100, 20


# --------------------------------------------------------------------------------------------------
# Models


def _conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


class BasicBlockA(nn.Module):
    """He et al. 2016 CIFAR block with the parameter-free option-A shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.stride, self.extra = stride, c_out - c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1 or self.extra:
            shortcut = x[:, :, ::self.stride, ::self.stride]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(out + shortcut)


class BasicBlockB(nn.Module):
    """ResNet-18 block with a 1x1-conv + BN projection shortcut where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(c_in, c_out, stride), nn.BatchNorm2d(c_out)
        self.conv2, self.bn2 = _conv3x3(c_out, c_out), nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """3x3 stem -> stages of BasicBlocks -> global average pool -> Linear head."""

    def __init__(self, block: type[nn.Module], widths: tuple[int, ...], depths: tuple[int, ...],
                 in_channels: int, n_classes: int):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c_in = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(block(c_in, width, 2 if (i > 0 and j == 0) else 1))
                c_in = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c_in, n_classes)

    def reset_parameters(self, generator: torch.Generator) -> None:
        """Kaiming-normal (fan-in, ReLU gain) conv and Linear weights as in LDAM-DRW's ``_weights_init``;
        Linear bias U(+-1/sqrt(fan_in)); BatchNorm gain 1, shift 0. All draws from ``generator``."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    bound = module.weight.shape[1] ** -0.5
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
                module.reset_running_stats()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.stages(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_model(name: str, in_channels: int, n_classes: int, generator: torch.Generator | None = None) -> CifarResNet:
    """A CIFAR ResNet by name (``MODELS``); initialised from ``generator`` when given."""
    if name == "resnet18":
        args = (BasicBlockB, (64, 128, 256, 512), (2, 2, 2, 2))
    elif name in ("resnet8", "resnet20", "resnet32"):
        n = (int(name[len("resnet"):]) - 2) // 6
        args = (BasicBlockA, (16, 32, 64), (n, n, n))
    else:
        raise unknown("model", name, MODELS)
    # Constructors draw a default init from the global RNG; keep it untouched (we re-draw from generator).
    with torch.random.fork_rng(devices=[]):
        model = CifarResNet(*args, in_channels=in_channels, n_classes=n_classes)
    if generator is not None:
        model.reset_parameters(generator)
    return model


def _roles(model: CifarResNet) -> dict[str, list[nn.Parameter]]:
    return roles_by_module(model, head=model.fc, conv_first=model.conv1)


# --------------------------------------------------------------------------------------------------
# Splits and the long-tailed profile


def long_tail_counts(n_max: int, n_classes: int, imbalance: float) -> list[int]:
    """LDAM-DRW / Cui et al. profile: n_i = floor(n_max * k^(-i / (C - 1))), i = 0..C-1."""
    if n_classes == 1:
        return [n_max]
    return [int(math.floor(n_max * imbalance ** (-i / (n_classes - 1)) + 1e-9)) for i in range(n_classes)]


def _per_class_split(labels: np.ndarray, n_classes: int, fractions: Mapping[str, float],
                     rng: np.random.Generator) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Per class: a seeded permutation; the first round(f * n_c) indices go to each split in
    ``fractions`` (in order); the rest is returned as that class's training pool (still permuted)."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    pools = []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, fraction in fractions.items():
            take = int(round(fraction * len(idx)))
            out[name].append(idx[start:start + take])
            start += take
        pools.append(idx[start:])
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}, pools


def _training_subset(pools: list[np.ndarray], imbalance: float) -> np.ndarray:
    """The training indices: every pool when ``imbalance == 1``, else the first n_i of class i's
    (permuted) pool with n_max = the smallest pool (equal to every pool on CIFAR)."""
    if imbalance == 1.0:
        return np.sort(np.concatenate(pools))
    counts = long_tail_counts(min(len(p) for p in pools), len(pools), imbalance)
    return np.sort(np.concatenate([p[:max(n, 1)] for p, n in zip(pools, counts)]))


# --------------------------------------------------------------------------------------------------
# Loading (cached per process: sweeps build the same task for every trial)


@dataclass(frozen=True)
class Images:
    """Splits as CPU tensors (N, C, H, W), uint8 (CIFAR) or float32, with int64 labels."""

    x: Mapping[str, torch.Tensor]
    y: Mapping[str, torch.Tensor]
    n_classes: int
    pad: int
    scale: float                    # raw value * scale lies in [0, 1] (before normalisation)
    mean: tuple[float, ...]         # per channel, of the scaled training images
    std: tuple[float, ...]
    train_counts: tuple[int, ...]   # training images per class


def _finish(x: dict[str, np.ndarray], y: dict[str, np.ndarray], source: _Source, scale: float) -> Images:
    train = x["train"].astype(np.float64) * scale
    mean = tuple(float(v) for v in train.mean(axis=(0, 2, 3)))
    std = tuple(float(max(v, 1e-6)) for v in train.std(axis=(0, 2, 3)))
    counts = tuple(int(v) for v in np.bincount(y["train"], minlength=source.n_classes))
    return Images(x={k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in x.items()},
                  y={k: torch.from_numpy(v.astype(np.int64)) for k, v in y.items()},
                  n_classes=source.n_classes, pad=source.pad, scale=scale, mean=mean, std=std,
                  train_counts=counts)


def _synthetic(data_seed: int, imbalance: float) -> Images:
    """Class templates (4x4 random patterns upsampled to 16x16), randomly shifted by up to 2 pixels, plus
    noise: learnable in a few steps, not trivially (shifts and noise)."""
    source = SOURCES["synthetic"]
    rng = np.random.default_rng(20_011 + data_seed)
    templates = np.kron(rng.standard_normal((source.n_classes, 3, 4, 4)), np.ones((1, 1, 4, 4)))
    n = {"train": 1024, "val": 256, "test": 256}
    labels = np.arange(sum(n.values())) % source.n_classes
    images = templates[labels]
    shifts = rng.integers(-2, 3, size=(len(labels), 2))
    for s in np.unique(shifts, axis=0):  # vectorised per distinct shift (25 of them)
        rows = np.all(shifts == s, axis=1)
        images[rows] = np.roll(images[rows], tuple(s), axis=(2, 3))
    images = (images + 0.8 * rng.standard_normal(images.shape)).astype(np.float32)
    order = rng.permutation(len(labels))
    images, labels = images[order], labels[order]
    bounds = np.cumsum([0, n["train"], n["val"], n["test"]])
    x = {k: images[bounds[i]:bounds[i + 1]] for i, k in enumerate(n)}
    y = {k: labels[bounds[i]:bounds[i + 1]] for i, k in enumerate(n)}
    if imbalance != 1.0:
        pools = [rng.permutation(np.flatnonzero(y["train"] == c)) for c in range(source.n_classes)]
        keep = _training_subset(pools, imbalance)
        x["train"], y["train"] = x["train"][keep], y["train"][keep]
    return _finish(x, y, source, 1.0)


def _digits(data_seed: int, imbalance: float) -> Images:
    from sklearn.datasets import load_digits

    source = SOURCES["digits"]
    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(data_seed)
    split, pools = _per_class_split(labels, source.n_classes, {"test": 0.2, "val": 0.2}, rng)
    split["train"] = _training_subset(pools, imbalance)
    return _finish({k: images[v] for k, v in split.items()}, {k: labels[v] for k, v in split.items()},
                   source, 1.0 / 16.0)


@functools.lru_cache(maxsize=2)
def _cifar_raw(dataset: str, root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images NCHW uint8, train labels, test images, test labels) read by torchvision."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if dataset == "cifar10" else CIFAR100
    folder, files, url = CIFAR_FILES[dataset]
    try:
        train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError as exc:  # torchvision's md5 check failed: truncated or foreign files
        raise UserError(f"{dataset} files under {Path(root) / folder} are corrupt ({exc}); delete the folder "
                        f"and fetch {url} again (extract it into {root})") from None

    def nchw(data) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).transpose(0, 3, 1, 2))

    return (nchw(train.data), np.asarray(train.targets, dtype=np.int64),
            nchw(test.data), np.asarray(test.targets, dtype=np.int64))


def _cifar(dataset: str, root: str, data_seed: int, imbalance: float) -> Images:
    source = SOURCES[dataset]
    train_x, train_y, test_x, test_y = _cifar_raw(dataset, root)
    rng = np.random.default_rng(data_seed)
    split, pools = _per_class_split(train_y, source.n_classes, {"val": VAL_FRACTION}, rng)
    keep = _training_subset(pools, imbalance)
    x = {"train": train_x[keep], "val": train_x[split["val"]], "test": test_x}
    y = {"train": train_y[keep], "val": train_y[split["val"]], "test": test_y}
    return _finish(x, y, source, 1.0 / 255.0)


@functools.lru_cache(maxsize=2)
def _images(dataset: str, root: str, data_seed: int, imbalance: float) -> Images:
    if dataset == "synthetic":
        return _synthetic(data_seed, imbalance)
    if dataset == "digits":
        return _digits(data_seed, imbalance)
    return _cifar(dataset, root, data_seed, imbalance)


def _ensure_cifar(dataset: str, root: Path) -> None:
    """Check the extracted CIFAR files are under ``root``; download them with torchvision when allowed."""
    folder, files, url = CIFAR_FILES[dataset]
    missing = [root / folder / f for f in files if not (root / folder / f).is_file()]
    if not missing:
        return
    how = f"download {url} and extract it into {root} (it unpacks to {folder}/)"
    if paths.offline():
        raise missing_data(dataset, missing[0], how)
    from torchvision.datasets import CIFAR10, CIFAR100

    try:
        (CIFAR10 if dataset == "cifar10" else CIFAR100)(str(root), train=True, download=True)
    except Exception as exc:  # network down, proxy, disk full
        raise missing_data(dataset, missing[0], f"{how} [download failed: {type(exc).__name__}: {exc}]") from None


# --------------------------------------------------------------------------------------------------
# Data on the device


def crop_flip(x: torch.Tensor, codes: torch.Tensor, pad: int) -> torch.Tensor:
    """Random crop of the zero-padded image and horizontal flip, for a whole batch in one gather.

    ``codes`` (B,) int64 in [0, 2 * (2 * pad + 1)^2) encode per image the row offset, column offset
    (each in [0, 2 * pad]) and a flip bit. Returns a contiguous (B, C, H, W) tensor.
    """
    b, _, h, w = x.shape
    span = 2 * pad + 1
    dy, dx, flip = codes % span, (codes // span) % span, codes // (span * span)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=x.device)                # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)                # (B, W)
    cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)         # flipped crop = reversed columns
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing around the channel slice yields (B, H, W, C); back to contiguous NCHW, which the
    # convolutions run fastest on (a channels-last input is ~20 % slower on CPU).
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


class ImageData:
    """All splits on the device (uint8 stays uint8); batches are normalised (and augmented) on the fly."""

    def __init__(self, images: Images, device: torch.device, batch_size: int, augment: bool):
        self.device = torch.device(device)
        self.batch_size, self.augment, self.pad = batch_size, augment, images.pad
        self.n_classes = images.n_classes
        self.train_counts = images.train_counts
        self.x = {k: v.to(self.device) for k, v in images.x.items()}
        self.y = {k: v.to(self.device) for k, v in images.y.items()}
        std = torch.tensor(images.std, dtype=torch.float32)
        mean = torch.tensor(images.mean, dtype=torch.float32)
        # normalise(x) = (x * scale - mean) / std = x * gain + shift, per channel
        self.gain = (images.scale / std).view(1, -1, 1, 1).to(self.device)
        self.shift = (-mean / std).view(1, -1, 1, 1).to(self.device)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() * self.gain + self.shift

    def batches(self, generator: torch.Generator, rank: int = 0, world_size: int = 1,
                start: int = 0) -> Iterator[tuple]:
        """Endless (images, labels) batches: a generator-drawn permutation per epoch cut into batches of
        ``batch_size // world_size`` (the last partial batch is dropped); under DDP every rank draws the
        same permutation and keeps every world_size-th index. Crop offsets and flips come from the same
        generator; on a GPU everything is drawn there by a generator seeded from ``generator``.
        ``start`` skips that many batches (a resumed run): their random draws are replayed, their
        images are never gathered."""
        x, y = self.x["train"], self.y["train"]
        n_codes = 2 * (2 * self.pad + 1) ** 2
        generator = device_generator(generator, self.device)
        for i, idx in enumerate(epoch_indices(x.shape[0], self.batch_size, generator, rank, world_size)):
            codes = torch.randint(0, n_codes, (idx.numel(),), generator=generator, device=self.device) \
                if self.augment else None
            if i < start:
                continue
            batch = x[idx].float()
            if codes is not None:
                batch = crop_flip(batch, codes, self.pad)
            yield batch * self.gain + self.shift, y[idx]


def _loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).float(), y)


def _evaluate_fn(long_tailed: bool):
    def evaluate(model: nn.Module, data: ImageData, split: str) -> dict[str, float]:
        x, y = data.x[split], data.y[split]
        loss_sum = torch.zeros((), device=data.device)
        hits = torch.zeros(data.n_classes, device=data.device)
        for i in range(0, x.shape[0], EVAL_CHUNK):
            logits = model(data.normalise(x[i:i + EVAL_CHUNK])).float()
            target = y[i:i + EVAL_CHUNK]
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            hits += torch.bincount(target[logits.argmax(1) == target], minlength=data.n_classes).float()
        support = torch.bincount(y, minlength=data.n_classes).float()
        values = [hits.sum() / y.numel(), loss_sum / y.numel()]
        names = ["accuracy", "loss"]
        if long_tailed:  # accuracy per shot group (by training images per class), as in the LT literature
            counts = torch.tensor(data.train_counts, device=data.device)
            for name, group in (("acc_many", counts > MANY_SHOT),
                                ("acc_medium", (counts >= FEW_SHOT) & (counts <= MANY_SHOT)),
                                ("acc_few", counts < FEW_SHOT)):
                if bool(group.any()) and bool((support[group] > 0).any()):
                    names.append(name)
                    values.append(hits[group].sum() / support[group].sum())
        return dict(zip(names, torch.stack(values).tolist()))  # one host sync

    return evaluate


# --------------------------------------------------------------------------------------------------
# make


def _resolve_options(size: str, options: Mapping[str, Any]) -> dict[str, Any]:
    bad = sorted(set(options) - set(OPTIONS))
    if bad:
        raise UserError(f"unknown option(s) {', '.join(map(repr, bad))} for task 'cifar_resnet'; "
                        f"known: {', '.join(sorted(OPTIONS))}")
    opts = {**OPTIONS, **options}
    defaults = SIZE_DEFAULTS[size]
    if opts["model"] is None:
        opts["model"] = defaults["model"]
    if opts["batch_size"] is None:
        opts["batch_size"] = defaults["batch_size"]
    if opts["model"] not in MODELS:
        raise unknown("model", opts["model"], MODELS)
    k = opts["imbalance"]
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not math.isfinite(k) or k < 1:
        raise UserError(f"invalid option imbalance={k!r} for task 'cifar_resnet' (must be a number >= 1: "
                        "n_max / n_min of the training set)")
    opts["imbalance"] = float(k)
    if not isinstance(opts["augment"], bool):
        raise UserError(f"invalid option augment={opts['augment']!r} for task 'cifar_resnet' (must be true or false)")
    for key in ("batch_size", "data_seed"):
        value, low = opts[key], 1 if key == "batch_size" else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise UserError(f"invalid option {key}={value!r} for task 'cifar_resnet' (must be an integer >= {low})")
    return opts


def make(size: str = "tiny", dataset: str | None = None, data_dir: str | os.PathLike | None = None,
         **options: Any) -> Task:
    """Build the CIFAR ResNet task at ``size`` on ``dataset`` (the size's default when None).

    Checks (or downloads) CIFAR files here; the images are read in ``make_data`` (cached per process).
    Raises UserError for unknown names, bad option values and missing files.
    """
    if size not in SIZES:
        raise unknown("size", size, SIZES)
    dataset = DEFAULT_DATASET[size] if dataset is None else str(dataset)
    if dataset not in DATASETS:
        raise unknown("dataset", dataset, DATASETS)
    opts = _resolve_options(size, options)
    source = SOURCES[dataset]
    root = paths.data_dir(data_dir) / "cifar"
    if source.per_class is not None:
        _ensure_cifar(dataset, root)

    model_name, batch_size, k = opts["model"], opts["batch_size"], opts["imbalance"]
    if size == "paper":
        defaults = SIZE_DEFAULTS["paper"]
        if source.per_class is not None:  # the training-set size follows from the profile: no need to load
            pool = source.per_class - int(round(VAL_FRACTION * source.per_class))
            counts = long_tail_counts(pool, source.n_classes, k) if k != 1.0 else [pool] * source.n_classes
            n_train = sum(max(c, 1) for c in counts)
        else:
            n_train = len(_images(dataset, str(root), opts["data_seed"], k).y["train"])
        per_epoch = max(1, n_train // batch_size)
        steps = defaults["epochs"] * per_epoch
        eval_every = defaults["eval_epochs"] * per_epoch
        warmup = defaults["warmup_epochs"] / defaults["epochs"]
    else:
        steps, eval_every, warmup = SIZE_DEFAULTS[size]["steps"], SIZE_DEFAULTS[size]["eval_every"], 0.05

    reference = REFERENCE_ACCURACY.get((model_name, dataset, k))
    target = math.floor(95 * reference) / 100 if reference is not None else OFFLINE_TARGETS.get((dataset, k))

    def make_model(generator: torch.Generator) -> nn.Module:
        return build_model(model_name, source.channels, source.n_classes, generator)

    def make_data(device: torch.device) -> ImageData:
        images = _images(dataset, str(root), opts["data_seed"], k)
        return ImageData(images, device, batch_size, opts["augment"])

    return Task(
        name="cifar_resnet", dataset=dataset, size=size, metric=Metric("accuracy", "max"), steps=steps,
        eval_every=eval_every, make_model=make_model, make_data=make_data, loss=_loss,
        evaluate=_evaluate_fn(k > 1.0), roles=_roles,
        penalty=1.0 / source.n_classes,  # chance level: a diverged run ranks with a model that learned nothing
        target=target, schedule="cosine", warmup_fraction=warmup, grad_clip=None, batch_size=batch_size,
        options=dict(opts), description=f"{DESCRIPTION}; {model_name}",
    )
