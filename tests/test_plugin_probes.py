"""Plugins a hostile or careless user writes (issue 17): an optimizer class whose learning rate is
not called ``lr``, torch.optim classes the loop cannot drive (L-BFGS needs a closure, SparseAdam
sparse gradients), and a plugin module that calls ``sys.exit`` while it is imported. Each ends at
validation with exit 2 and a message naming why, through the real CLI in a subprocess, and
nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import plugins
from harness.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

MODULES = {
    "renamed_lr.py": """
        import torch

        class Renamed(torch.optim.Optimizer):
            def __init__(self, params, learning_rate=0.01):
                super().__init__(params, dict(learning_rate=learning_rate))

            def step(self, closure=None):
                pass
    """,
    "exits_on_import.py": """
        import sys
        sys.exit(0)
    """,
    "exits_nonzero.py": """
        raise SystemExit("plugin refused to load")
    """,
}


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    folder.mkdir()
    for name, text in MODULES.items():
        (folder / name).write_text(textwrap.dedent(text))
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in MODULES:
        sys.modules.pop(name[:-3], None)
    plugins._resolve_plugin.cache_clear()


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        OPTBENCH_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(folder), str(ROOT)]),
    )
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _sweep(tmp_path: Path, optimizer: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        textwrap.dedent(f"""
        suite: probe
        tasks:
          - task: tabular_mlp
            size: tiny
            datasets: [synthetic]
            steps: 5
        optimizers: [adamw, "{optimizer}"]
        trials: 2
        eval_seeds: 1
    """)
    )
    return path


@pytest.mark.parametrize(
    "name, words",
    [
        ("renamed_lr:Renamed", "its learning rate is the argument 'learning_rate'"),
        ("torch:LBFGS", "needs a closure"),
        ("torch:SparseAdam", "accepts only sparse gradients"),
    ],
)
def test_optimizer_classes_the_loop_cannot_drive_are_refused_naming_why(plugin_dir, name, words):
    with pytest.raises(UserError, match="cannot run in optbench") as info:
        plugins.optimizer(name)
    assert words in str(info.value)


def test_a_sweep_naming_such_a_class_exits_2_before_writing_anything(plugin_dir, tmp_path):
    # one subprocess for the three kinds: validation names the first refused optimizer
    out, words = tmp_path / "out", "'learning_rate'"
    proc = _cli(plugin_dir, "suite", str(_sweep(tmp_path, "renamed_lr:Renamed")), "--out", str(out), "--workers", "1")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert "re-run" not in proc.stderr  # not a resumable failure: nothing a re-run could fix
    assert not out.exists()


def test_a_plugin_that_exits_on_import_is_an_import_error_exit_2(plugin_dir, tmp_path):
    module, words, out = "exits_on_import", "called sys.exit(0) while being imported", tmp_path / "out"
    proc = _cli(plugin_dir, "suite", str(_sweep(tmp_path, f"{module}:Anything")), "--out", str(out), "--workers", "1")
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert f"cannot import module '{module}'" in proc.stderr and words in proc.stderr
    assert not out.exists()
    run = _cli(plugin_dir, "run", "--task", "tabular_mlp", "--optimizer", f"{module}:X", "--out", str(out))
    assert run.returncode == 2 and words in run.stderr and not out.exists()


def test_sys_exit_with_a_message_on_import_is_named_too(plugin_dir):
    with pytest.raises(UserError, match=r"cannot import module 'exits_nonzero'.*sys.exit\('plugin refused to load'\)"):
        plugins.optimizer("exits_nonzero:Anything")


def test_a_usable_torch_class_is_still_accepted():
    assert plugins.unsupported_class(__import__("torch").optim.RAdam) is None
