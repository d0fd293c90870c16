"""harness.outputs' atomic writers give a result the mode ``open()`` gives a new file: 0666 less the
umask in force when it is written (0644 under 022, 0600 under 077), also when the umask changed
after harness.outputs was imported, and also for a writer that replaces the temporary file by one
of its own (0600, as ``tempfile.mkstemp`` makes them)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import pytest

from harness.outputs import atomic_write, atomic_write_bytes, atomic_write_text
from harness.results import store


@contextlib.contextmanager
def umask(mask: int):
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writers_give_0666_less_the_umask_of_the_moment(tmp_path, mask, expected):
    with umask(mask):
        text = atomic_write_text(tmp_path / "board.md", "| a |\n")
        data = atomic_write_bytes(tmp_path / "sub" / "fig.png", b"\x89PNG")
    assert (mode(text), mode(data)) == (expected, expected)
    assert text.read_text() == "| a |\n" and data.read_bytes() == b"\x89PNG"
    assert _hidden(tmp_path) == [] and _hidden(tmp_path / "sub") == []


def test_replacing_a_file_takes_the_new_mode_not_the_old_one(tmp_path):
    target = tmp_path / "leaderboard.csv"
    with umask(0o077):
        atomic_write_text(target, "old\n")
    assert mode(target) == 0o600
    with umask(0o022):
        atomic_write_text(target, "new\n")
    assert mode(target) == 0o644 and target.read_text() == "new\n"


def test_a_writer_that_swaps_in_its_own_0600_file_still_gives_the_usual_mode(tmp_path):
    def swap(tmp: str) -> None:  # as a library that writes elsewhere and renames over the name could
        fd, own = tempfile.mkstemp(dir=tmp_path)
        os.write(fd, b"payload")
        os.close(fd)
        assert mode(Path(own)) == 0o600
        os.replace(own, tmp)

    with umask(0o022):
        path = atomic_write(tmp_path / "data.bin", swap)
    assert mode(path) == 0o644 and path.read_bytes() == b"payload"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.html"
    with umask(0o022):
        atomic_write_text(target, "old")

        def fail(tmp: str) -> None:
            Path(tmp).write_text("half")
            raise RuntimeError("writer broke")

        with pytest.raises(RuntimeError, match="writer broke"):
            atomic_write(target, fail)
    assert target.read_text() == "old" and mode(target) == 0o644 and _hidden(tmp_path) == []


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600)])
def test_run_records_follow_the_umask(tmp_path, mask, expected):
    """The record writer (harness.results.store.write_run) goes through atomic_write."""
    with umask(mask):
        path = store.write_run(
            tmp_path, {"run_id": "r1", "status": "ok"}, [{"step": 1, "split": "train", "name": "loss", "value": 1.0}]
        )
    assert mode(path) == expected and mode(store.curves_dir(tmp_path) / "r1.parquet") == expected


def test_checkpoints_follow_the_umask_too(tmp_path):
    import torch

    from harness.run import checkpoint as ckpt

    old = os.umask(0o022)
    try:
        path = ckpt.save(tmp_path / "c" / "step-3.pt", {"x": torch.zeros(3)})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert ckpt.load(path)["x"].shape == (3,) and not list(path.parent.glob(".*.tmp"))
