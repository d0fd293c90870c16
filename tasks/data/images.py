"""Image classification data: CIFAR-10/100, scikit-learn's digits, synthetic class templates; balanced
or long-tailed training sets; crop + flip on the device; top-1 scoring (overall and per shot group).

CIFAR comes through torchvision (downloaded into ``<data_dir>/cifar``; an existing
``cifar-10-batches-py`` / ``cifar-100-python`` folder there is used offline). A balanced validation set
of 10 % of each class is held out from the official training set; the test set is the official balanced
one. ``imbalance=k > 1`` makes the remaining training set long-tailed with the LDAM-DRW profile
n_i = floor(n_max * k^(-i / (C - 1))) for class i = 0..C-1 (Cao et al., NeurIPS 2019, kaidic/LDAM-DRW;
n_max = 4,500 / 450 per class after the validation hold-out), per-class subsets drawn with ``data_seed``.
Augmentation (random crop of the image zero-padded by ``pad``, horizontal flip, as in the CIFAR recipes)
runs on the device on whole batches: one gather with per-image row/column offsets, the flip folded into
the column index. Inputs are normalised with the training split's per-channel mean and std.

Offline sets: ``digits`` (scikit-learn's bundled 8x8 grey digits, real data, padding 1 for the crop) and
``synthetic`` (generated 3x16x16 class templates, for tests).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from harness import paths
from harness.errors import UserError, missing_data
from harness.task import Dataset, device_generator, epoch_indices


@dataclass(frozen=True)
class Source:
    """Shape of one image source."""

    channels: int
    size: int
    n_classes: int
    pad: int  # crop padding: 4 at 32x32 (the recipes), scaled down for small images
    per_class: int | None  # images per class in the official training set (CIFAR only)


SOURCES = {
    "synthetic": Source(3, 16, 10, 2, None),
    "digits": Source(1, 8, 10, 1, None),
    "cifar10": Source(3, 32, 10, 4, 5000),
    "cifar100": Source(3, 32, 100, 4, 500),
}

DATASETS = (
    Dataset(
        "synthetic",
        "generated: 10 classes of 3x16x16 images (class templates, random shifts, noise); "
        "1,024 / 256 / 256 train / val / test",
        offline=True,
    ),
    Dataset(
        "digits",
        "scikit-learn's bundled 1,797 real 8x8 grey digits, 10 classes; 60 / 20 / 20 % train / val / test per class",
        offline=True,
    ),
    Dataset(
        "cifar10",
        "50,000 + 10,000 32x32 colour images, 10 classes; val = 10 % of each training class; "
        "option imbalance=k long-tails the training set",
        fetch="torchvision downloads https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz into "
        "<data_dir>/cifar/cifar-10-batches-py",
    ),
    Dataset(
        "cifar100",
        "as cifar10 with 100 classes",
        fetch="torchvision downloads https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz into "
        "<data_dir>/cifar/cifar-100-python",
    ),
)

CIFAR_FILES = {
    "cifar10": (
        "cifar-10-batches-py",
        [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"],
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "cifar-100-python",
        ["train", "test", "meta"],
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}

VAL_FRACTION = 0.1  # of each CIFAR training class, held out as a balanced validation set
EVAL_CHUNK = 1024
# Long-tail groups of Liu et al. 2019 (OLTR): many-shot > 100, few-shot < 20 training images per class.
MANY_SHOT, FEW_SHOT = 100, 20


# --------------------------------------------------------------------------------------------------
# Splits and the long-tailed profile


def long_tail_counts(n_max: int, n_classes: int, imbalance: float) -> list[int]:
    """LDAM-DRW / Cui et al. profile: n_i = floor(n_max * k^(-i / (C - 1))), i = 0..C-1."""
    if n_classes == 1:
        return [n_max]
    return [int(math.floor(n_max * imbalance ** (-i / (n_classes - 1)) + 1e-9)) for i in range(n_classes)]


def _per_class_split(
    labels: np.ndarray, n_classes: int, fractions: Mapping[str, float], rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Per class: a seeded permutation; the first round(f * n_c) indices go to each split in
    ``fractions`` (in order); the rest is returned as that class's training pool (still permuted)."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in fractions}
    pools = []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for name, fraction in fractions.items():
            take = int(round(fraction * len(idx)))
            out[name].append(idx[start : start + take])
            start += take
        pools.append(idx[start:])
    return {k: np.sort(np.concatenate(v)) for k, v in out.items()}, pools


def _training_subset(pools: list[np.ndarray], imbalance: float) -> np.ndarray:
    """The training indices: every pool when ``imbalance == 1``, else the first n_i of class i's
    (permuted) pool with n_max = the smallest pool (equal to every pool on CIFAR)."""
    if imbalance == 1.0:
        return np.sort(np.concatenate(pools))
    counts = long_tail_counts(min(len(p) for p in pools), len(pools), imbalance)
    return np.sort(np.concatenate([p[: max(n, 1)] for p, n in zip(pools, counts)]))


def official_train_count(dataset: str, imbalance: float) -> int | None:
    """Training images of a CIFAR set after the validation hold-out and the long-tail profile, known
    without reading a file (the paper-size step budget follows from it); None for other sources."""
    source = SOURCES[dataset]
    if source.per_class is None:
        return None
    pool = source.per_class - int(round(VAL_FRACTION * source.per_class))
    counts = long_tail_counts(pool, source.n_classes, imbalance) if imbalance != 1.0 else [pool] * source.n_classes
    return sum(max(c, 1) for c in counts)


# --------------------------------------------------------------------------------------------------
# Locating and loading


@dataclass(frozen=True)
class Images:
    """Splits as CPU tensors (N, C, H, W), uint8 (CIFAR) or float32, with int64 labels."""

    x: Mapping[str, torch.Tensor]
    y: Mapping[str, torch.Tensor]
    n_classes: int
    pad: int
    scale: float  # raw value * scale lies in [0, 1] (before normalisation)
    mean: tuple[float, ...]  # per channel, of the scaled training images
    std: tuple[float, ...]
    train_counts: tuple[int, ...]  # training images per class


@dataclass(frozen=True)
class ImageKey:
    """What to load: the dataset, its folder (empty for the offline sets) and the training subset."""

    dataset: str
    root: str
    data_seed: int = 0
    imbalance: float = 1.0


def locate(dataset: str, data_dir: Path, data_seed: int = 0, imbalance: float = 1.0) -> ImageKey:
    """Check the extracted CIFAR files are under ``<data_dir>/cifar`` (torchvision downloads them when
    allowed; otherwise a UserError names the archive to fetch and where to extract it)."""
    if SOURCES[dataset].per_class is None:
        return ImageKey(dataset, "", data_seed, float(imbalance))
    root = Path(data_dir) / "cifar"
    folder, files, url = CIFAR_FILES[dataset]
    missing = [root / folder / f for f in files if not (root / folder / f).is_file()]
    if missing:
        how = f"download {url} and extract it into {root} (it unpacks to {folder}/)"
        if paths.offline():
            raise missing_data(dataset, missing[0], how)
        from torchvision.datasets import CIFAR10, CIFAR100

        try:
            (CIFAR10 if dataset == "cifar10" else CIFAR100)(str(root), train=True, download=True)
        except Exception as exc:  # network down, proxy, disk full
            raise missing_data(dataset, missing[0], f"{how} [download failed: {type(exc).__name__}: {exc}]") from None
    return ImageKey(dataset, str(root), data_seed, float(imbalance))


def load(key: ImageKey) -> Images:
    """The splits of ``key`` in memory (use through ``harness.task.load_data``: once per process)."""
    if key.dataset == "synthetic":
        return _synthetic(key.data_seed, key.imbalance)
    if key.dataset == "digits":
        return _digits(key.data_seed, key.imbalance)
    return _cifar(key.dataset, key.root, key.data_seed, key.imbalance)


def _finish(x: dict[str, np.ndarray], y: dict[str, np.ndarray], source: Source, scale: float) -> Images:
    train = x["train"].astype(np.float64) * scale
    mean = tuple(float(v) for v in train.mean(axis=(0, 2, 3)))
    std = tuple(float(max(v, 1e-6)) for v in train.std(axis=(0, 2, 3)))
    counts = tuple(int(v) for v in np.bincount(y["train"], minlength=source.n_classes))
    return Images(
        x={k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in x.items()},
        y={k: torch.from_numpy(v.astype(np.int64)) for k, v in y.items()},
        n_classes=source.n_classes,
        pad=source.pad,
        scale=scale,
        mean=mean,
        std=std,
        train_counts=counts,
    )


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
    x = {k: images[bounds[i] : bounds[i + 1]] for i, k in enumerate(n)}
    y = {k: labels[bounds[i] : bounds[i + 1]] for i, k in enumerate(n)}
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
    return _finish(
        {k: images[v] for k, v in split.items()}, {k: labels[v] for k, v in split.items()}, source, 1.0 / 16.0
    )


def _cifar_raw(dataset: str, root: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images NCHW uint8, train labels, test images, test labels) read by torchvision."""
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if dataset == "cifar10" else CIFAR100
    folder, _, url = CIFAR_FILES[dataset]
    try:
        train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError as exc:  # torchvision's md5 check failed: truncated or foreign files
        raise UserError(
            f"{dataset} files under {Path(root) / folder} are corrupt ({exc}); delete the folder "
            f"and fetch {url} again (extract it into {root})"
        ) from None

    def nchw(data) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(data, dtype=np.uint8).transpose(0, 3, 1, 2))

    return (
        nchw(train.data),
        np.asarray(train.targets, dtype=np.int64),
        nchw(test.data),
        np.asarray(test.targets, dtype=np.int64),
    )


def _cifar(dataset: str, root: str, data_seed: int, imbalance: float) -> Images:
    source = SOURCES[dataset]
    train_x, train_y, test_x, test_y = _cifar_raw(dataset, root)
    rng = np.random.default_rng(data_seed)
    split, pools = _per_class_split(train_y, source.n_classes, {"val": VAL_FRACTION}, rng)
    keep = _training_subset(pools, imbalance)
    x = {"train": train_x[keep], "val": train_x[split["val"]], "test": test_x}
    y = {"train": train_y[keep], "val": train_y[split["val"]], "test": test_y}
    return _finish(x, y, source, 1.0 / 255.0)


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
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flip[:, None].bool(), cols.flip(1), cols)  # flipped crop = reversed columns
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

    def batches(
        self, generator: torch.Generator, rank: int = 0, world_size: int = 1, start: int = 0
    ) -> Iterator[tuple]:
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
            codes = (
                torch.randint(0, n_codes, (idx.numel(),), generator=generator, device=self.device)
                if self.augment
                else None
            )
            if i < start:
                continue
            batch = x[idx].float()
            if codes is not None:
                batch = crop_flip(batch, codes, self.pad)
            yield batch * self.gain + self.shift, y[idx]


# --------------------------------------------------------------------------------------------------
# Scoring (any image classifier: logits (B, classes))


def classification_loss(model: nn.Module, batch) -> torch.Tensor:
    """Cross-entropy of one (images, labels) batch, in fp32 (also under bf16 autocast)."""
    x, y = batch
    return F.cross_entropy(model(x).float(), y)


def classification_evaluator(long_tailed: bool):
    """``evaluate(model, data, split)``: top-1 ``accuracy`` and mean ``loss``; with a long-tailed
    training set also the accuracy per shot group (``acc_many`` / ``acc_medium`` / ``acc_few``, by
    training images per class, as in the long-tail literature). One host sync."""

    def evaluate(model: nn.Module, data: ImageData, split: str) -> dict[str, float]:
        x, y = data.x[split], data.y[split]
        loss_sum = torch.zeros((), device=data.device)
        hits = torch.zeros(data.n_classes, device=data.device)
        for i in range(0, x.shape[0], EVAL_CHUNK):
            logits = model(data.normalise(x[i : i + EVAL_CHUNK])).float()
            target = y[i : i + EVAL_CHUNK]
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            hits += torch.bincount(target[logits.argmax(1) == target], minlength=data.n_classes).float()
        support = torch.bincount(y, minlength=data.n_classes).float()
        values = [hits.sum() / y.numel(), loss_sum / y.numel()]
        names = ["accuracy", "loss"]
        if long_tailed:
            counts = torch.tensor(data.train_counts, device=data.device)
            for name, group in (
                ("acc_many", counts > MANY_SHOT),
                ("acc_medium", (counts >= FEW_SHOT) & (counts <= MANY_SHOT)),
                ("acc_few", counts < FEW_SHOT),
            ):
                if bool(group.any()) and bool((support[group] > 0).any()):
                    names.append(name)
                    values.append(hits[group].sum() / support[group].sum())
        return dict(zip(names, torch.stack(values).tolist()))

    return evaluate
