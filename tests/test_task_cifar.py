"""cifar_resnet: a real-data run, roles and parameter counts, on-device augmentation, the
long-tailed profile, and CIFAR loading through torchvision from fixtures in the real pickle layout."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar as tv_cifar

from harness.errors import UserError
from harness.run.loop import run
from harness.spec import RunSpec
from harness.task import check_roles
from tasks import cifar_resnet as cr
from tasks.data import images


def test_small_learns_real_digits():
    result = run(
        RunSpec(
            task="cifar_resnet",
            optimizer="adamw",
            dataset="digits",
            size="small",
            steps=60,
            seed=0,
            hparams={"lr": 3e-3},
        )
    )
    assert result.row["status"] == "ok"
    assert result.row["val_metric"] > 0.5  # chance is 0.1
    # Accuracies are fractions (the contract suite checks the tiny runs of every optimizer).
    assert 0.0 <= result.row["val_metric"] <= 1.0 and 0.0 <= result.row["test_metric"] <= 1.0


@pytest.mark.parametrize(
    "name,classes,expected",
    [
        ("resnet8", 10, 75_290),
        ("resnet20", 10, 269_722),
        ("resnet32", 10, 464_154),  # LDAM-DRW's ResNet-32: 0.46M
        ("resnet18", 10, 11_173_962),  # kuangliu's CIFAR ResNet-18: ~11M
        ("resnet32", 100, 470_004),
    ],
)
def test_models_have_the_published_sizes_and_roles(name, classes, expected):
    with torch.device("meta"):
        model = cr.build_model(name, 3, classes, torch.Generator())
    assert sum(p.numel() for p in model.parameters()) == expected
    roles = cr._roles(model)
    check_roles(model, roles)
    assert roles["conv_first"] == [model.conv1.weight]
    assert roles["head"] == [model.fc.weight]
    assert all(p.ndim == 4 for p in roles["matrix"])  # every other conv kernel, 1x1 shortcuts included
    bn = [p for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()]
    assert {id(p) for p in roles["vector"]} == {id(p) for p in bn} | {id(model.fc.bias)}


@pytest.mark.parametrize("size", ["tiny", "small"])
def test_roles_cover_every_parameter_of_the_offline_sizes(size):
    task = cr.TASK.make(size)
    model = task.make_model(torch.Generator().manual_seed(0))
    check_roles(model, task.roles(model))


def test_model_init_is_deterministic_and_leaves_the_global_rng_alone():
    task = cr.TASK.make("tiny")
    state = torch.get_rng_state()
    a = task.make_model(torch.Generator().manual_seed(5))
    b = task.make_model(torch.Generator().manual_seed(5))
    assert torch.equal(state, torch.get_rng_state())
    c = task.make_model(torch.Generator().manual_seed(6))
    assert all(torch.equal(pa, pb) for pa, pb in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


# ---- augmentation and the data stream --------------------------------------------------------------


def _reference_crop_flip(x, codes, pad):
    """Per image, the torchvision way: zero-pad, crop at (dy, dx), then maybe flip."""
    span = 2 * pad + 1
    out = []
    for img, code in zip(x, codes.tolist()):
        dy, dx, flip = code % span, (code // span) % span, code // (span * span)
        padded = torch.nn.functional.pad(img, (pad, pad, pad, pad))
        crop = padded[:, dy : dy + img.shape[1], dx : dx + img.shape[2]]
        out.append(crop.flip(2) if flip else crop)
    return torch.stack(out)


def test_crop_flip_matches_the_per_image_reference():
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    pad = 2
    codes = torch.arange(64) % (2 * (2 * pad + 1) ** 2)  # covers every offset with and without flip
    torch.testing.assert_close(images.crop_flip(x, codes, pad), _reference_crop_flip(x, codes, pad), rtol=0, atol=0)
    centre = torch.full((64,), pad * (2 * pad + 1) + pad)
    assert torch.equal(images.crop_flip(x, centre, pad), x)
    assert torch.equal(images.crop_flip(x, centre + (2 * pad + 1) ** 2, pad), x.flip(3))


def test_data_stream_is_deterministic_and_augments_on_device():
    task = cr.TASK.make("tiny")
    data = task.make_data(torch.device("cpu"))

    def take(seed, k=5, **kw):
        stream = data.batches(torch.Generator().manual_seed(seed), **kw)
        return [next(stream) for _ in range(k)]

    a, b, c = take(0), take(0), take(1)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    x, y = a[0]
    assert x.shape == (task.batch_size, 3, 16, 16) and x.dtype == torch.float32 and x.is_contiguous()
    # Without augmentation a batch is exactly the normalised training rows, in the same order.
    plain = cr.TASK.make("tiny", augment=False).make_data(torch.device("cpu"))
    xp, yp = next(plain.batches(torch.Generator().manual_seed(0)))
    perm = torch.randperm(plain.x["train"].shape[0], generator=torch.Generator().manual_seed(0))[: task.batch_size]
    torch.testing.assert_close(xp, plain.normalise(plain.x["train"][perm]))
    assert torch.equal(yp, plain.y["train"][perm])
    # The training split is normalised to mean 0, std 1 per channel.
    full = plain.normalise(plain.x["train"])
    torch.testing.assert_close(full.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(full.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-2, rtol=0)


# ---- long-tailed profile ---------------------------------------------------------------------------


def test_long_tail_counts_match_the_ldam_profile():
    # Training-set sizes of docs/protocol.md#cifar-resnet (n_max = 5000 / 500 as in LDAM-DRW)
    assert sum(images.long_tail_counts(5000, 10, 100.0)) == 12_406
    assert sum(images.long_tail_counts(5000, 10, 10.0)) == 20_431
    assert sum(images.long_tail_counts(500, 100, 100.0)) == 10_847
    assert sum(images.long_tail_counts(500, 100, 200.0)) == 9_502
    counts = images.long_tail_counts(5000, 10, 100.0)
    assert counts[0] == 5000 and counts[-1] == 50 and counts == sorted(counts, reverse=True)
    assert images.long_tail_counts(4500, 10, 1.0) == [4500] * 10


def test_long_tailed_digits_keep_val_and_test_balanced():
    flat = images.load(images.ImageKey("digits", "", 0, 1.0))
    lt = images.load(images.ImageKey("digits", "", 0, 10.0))
    counts = lt.train_counts
    assert list(counts) == images.long_tail_counts(min(flat.train_counts), 10, 10.0)
    for split in ("val", "test"):
        assert torch.equal(lt.y[split], flat.y[split])
    assert sum(flat.train_counts) + len(flat.y["val"]) + len(flat.y["test"]) == 1797
    assert abs(len(flat.y["test"]) - 0.2 * 1797) < 10 and abs(len(flat.y["val"]) - 0.2 * 1797) < 10
    task = cr.TASK.make("tiny", dataset="digits", imbalance=10)
    data = task.make_data(torch.device("cpu"))
    model = task.make_model(torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        out = task.evaluate(model, data, "val")
    assert {"accuracy", "loss", "acc_many", "acc_medium", "acc_few"} <= set(out)
    support = torch.bincount(data.y["val"], minlength=10).float()
    groups = torch.tensor(counts)
    hits = (
        out["acc_many"] * support[groups > 100].sum()
        + out["acc_medium"] * support[(groups >= 20) & (groups <= 100)].sum()
        + out["acc_few"] * support[groups < 20].sum()
    )
    assert float(hits) == pytest.approx(out["accuracy"] * len(data.y["val"]), abs=1e-3)


# ---- CIFAR in the real on-disk layout -------------------------------------------------------------


class _Py2Str(str):
    """A key written as a Python 2 ``str`` (SHORT_BINSTRING), as in the files from the CIFAR website."""


class _Py2Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin1")
        self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)

    dispatch[_Py2Str] = _save_py2_str


def _dump(path, obj):
    with open(path, "wb") as fh:
        _Py2Pickler(fh, protocol=2).dump({_Py2Str(k): v for k, v in obj.items()})


def _write_cifar10(root, per_class=20, test_per_class=3):
    """cifar-10-batches-py with data_batch_1..5, test_batch, batches.meta: keys and dtypes of the real files
    (b'data' uint8 (N, 3072) row-major R, G, B planes; b'labels' list of int)."""
    folder = root / "cifar" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(10), per_class))
    data = rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8)
    data[:, 0] = labels  # a recognisable pixel (R plane, top-left) to check the NCHW reshape
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5)):
        _dump(
            folder / f"data_batch_{i + 1}",
            {
                "batch_label": f"training batch {i + 1} of 5",
                "labels": [int(v) for v in labels[part]],
                "data": data[part],
                "filenames": [f"img_{j}.png" for j in part],
            },
        )
    test_labels = np.repeat(np.arange(10), test_per_class)
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test_labels.tolist(),
            "data": rng.integers(0, 256, (len(test_labels), 3072), dtype=np.uint8),
            "filenames": [f"t_{j}.png" for j in range(len(test_labels))],
        },
    )
    _dump(
        folder / "batches.meta",
        {
            "num_cases_per_batch": len(labels) // 5,
            "num_vis": 3072,
            "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
        },
    )
    return folder


def _write_cifar100(root, per_class=10):
    folder = root / "cifar" / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", per_class), ("test", 1)):
        fine = np.repeat(np.arange(100), n)
        _dump(
            folder / name,
            {
                "filenames": [f"{name}_{j}.png" for j in range(len(fine))],
                "batch_label": name,
                "fine_labels": fine.tolist(),
                "coarse_labels": (fine // 5).tolist(),
                "data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
            },
        )
    _dump(
        folder / "meta",
        {"fine_label_names": [f"f{i}" for i in range(100)], "coarse_label_names": [f"c{i}" for i in range(20)]},
    )
    return folder


@pytest.fixture
def md5_by_presence(monkeypatch):
    """torchvision checks each file's md5 against the real CIFAR archives; a fixture cannot match them,
    so the check is narrowed to "the file exists" (torchvision's parsing runs unchanged)."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def test_cifar10_loads_through_torchvision(tmp_path, md5_by_presence):
    folder = _write_cifar10(tmp_path)
    with open(folder / "data_batch_1", "rb") as fh:  # same key type as the real (Python 2) files
        assert b"data" in pickle.load(fh, encoding="bytes")
    task = cr.TASK.make("tiny", dataset="cifar10", data_dir=tmp_path)
    data = task.make_data(torch.device("cpu"))
    assert data.x["train"].dtype == torch.uint8 and data.x["train"].shape[1:] == (3, 32, 32)
    assert len(data.y["val"]) == 10 * 2 and len(data.y["train"]) == 10 * 18  # 10 % of each class held out
    assert len(data.y["test"]) == 30
    assert torch.equal(data.x["val"][:, 0, 0, 0].long(), data.y["val"])  # pixel written = label: NCHW intact
    x, y = next(data.batches(torch.Generator().manual_seed(0)))
    assert x.shape == (task.batch_size, 3, 32, 32) and y.max() < 10
    lt = cr.TASK.make("tiny", dataset="cifar10", data_dir=tmp_path, imbalance=6.0).make_data(torch.device("cpu"))
    assert torch.bincount(lt.y["train"], minlength=10).tolist() == images.long_tail_counts(18, 10, 6.0)
    assert torch.equal(lt.y["val"], data.y["val"]) and torch.equal(lt.y["test"], data.y["test"])
    result = run(
        RunSpec(task="cifar_resnet", optimizer="adamw", dataset="cifar10", size="tiny", steps=4), data_dir=tmp_path
    )
    assert result.row["status"] == "ok"


def test_cifar100_loads_fine_labels(tmp_path, md5_by_presence):
    _write_cifar100(tmp_path)
    task = cr.TASK.make("tiny", dataset="cifar100", data_dir=tmp_path)
    assert task.penalty == pytest.approx(0.01)
    data = task.make_data(torch.device("cpu"))
    assert data.n_classes == 100 and len(data.y["train"]) == 900 and len(data.y["val"]) == 100
    assert task.make_model(torch.Generator()).fc.out_features == 100


def test_cifar_files_failing_torchvisions_checksum_are_reported(tmp_path):
    _write_cifar10(tmp_path)  # present, but not the real bytes: torchvision's md5 check rejects them
    key = cr.TASK.locate(cr.TASK.request("tiny", "cifar10"), tmp_path)  # locating only sees the files
    assert key == images.ImageKey("cifar10", str(tmp_path / "cifar"))
    with pytest.raises(UserError, match="corrupt.*cifar-10-python.tar.gz"):
        cr.TASK.make("tiny", dataset="cifar10", data_dir=tmp_path)  # loading reads them


def test_missing_cifar_names_the_file_and_the_download(tmp_path):
    with pytest.raises(
        UserError,
        match=r"missing cifar10: expected .*cifar-10-batches-py/data_batch_1; "
        r"download https://www\.cs\.toronto\.edu/~kriz/cifar-10-python\.tar\.gz",
    ):
        cr.TASK.make("tiny", dataset="cifar10", data_dir=tmp_path)
    with pytest.raises(UserError, match="cifar-100-python/train"):
        cr.TASK.make("paper", dataset="cifar100", data_dir=tmp_path)


def test_paper_size_follows_the_ldam_recipe(tmp_path, md5_by_presence):
    _write_cifar10(tmp_path)
    task = cr.TASK.make("paper", dataset="cifar10", data_dir=tmp_path)
    assert task.options["model"] == "resnet32" and task.batch_size == 128
    assert task.steps == 200 * (45_000 // 128) and task.eval_every == 5 * (45_000 // 128)
    assert task.warmup_fraction == pytest.approx(5 / 200) and task.schedule == "cosine"
    assert task.target == 0.87  # 95 % of ResNet-32's 92.49 %
    lt = cr.TASK.make("paper", dataset="cifar10", data_dir=tmp_path, imbalance=100)
    assert lt.steps == 200 * (sum(images.long_tail_counts(4500, 10, 100.0)) // 128)
    assert lt.target == 0.66
    assert cr.TASK.make("paper", dataset="cifar10", data_dir=tmp_path, imbalance=50).target is None
    with torch.device("meta"):
        model = task.make_model(torch.Generator())
    check_roles(model, task.roles(model))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"dataset": "cifar"}, "unknown dataset 'cifar'; known: cifar10, cifar100, digits, synthetic"),
        ({"size": "large"}, "unknown size 'large'"),
        ({"model": "resnet50"}, "unknown model 'resnet50'; known: resnet18, resnet20, resnet32, resnet8"),
        ({"imbalance": 0.5}, "imbalance=0.5.*>= 1"),
        ({"imbalance": float("inf")}, "imbalance=inf"),
        ({"augment": "yes"}, "augment='yes'"),
        ({"batch_size": 0}, "batch_size=0"),
        ({"depth": 20}, "unknown option.*'depth'.*known: augment, batch_size, data_seed, imbalance, model"),
    ],
)
def test_bad_input_raises_user_error(kwargs, message):
    kwargs = dict(kwargs)
    size = kwargs.pop("size", "tiny")
    with pytest.raises(UserError, match=message):
        cr.TASK.make(size, **kwargs)
