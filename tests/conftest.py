"""Test-wide setup: offline, CPU, one thread per process, quiet progress bars."""

from __future__ import annotations

import os

# Set before anything imports datasets / huggingface_hub: tests never touch the network.
for _key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "OPTBENCH_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ[_key] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only, even on a GPU box
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def results_dir(tmp_path):
    """A fresh results folder."""
    out = tmp_path / "results"
    out.mkdir()
    return out


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data folder, also exported as $OPTBENCH_DATA_DIR for subprocesses."""
    path = tmp_path / "data"
    path.mkdir()
    monkeypatch.setenv("OPTBENCH_DATA_DIR", str(path))
    return path
