"""The shared vocabulary (harness.vocab): torch-free, one Metric through which every comparison goes,
and the same sizes and roles wherever they are imported from."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from harness.vocab import ROLES, SIZES, Metric


def test_importing_the_vocabulary_does_not_import_torch():
    code = (
        "import sys; import harness.vocab as v; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch')); "
        "print(v.SIZES, len(v.ROLES), v.Metric('x', 'min').sign)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["('tiny',", "'small',", "'paper')", "5", "-1.0"]


def test_one_vocabulary_everywhere():
    import harness.task
    import optimizers
    from optimizers import _base

    assert harness.task.Metric is Metric and harness.task.SIZES is SIZES and harness.task.ROLES is ROLES
    assert optimizers.ROLES is ROLES and _base.ROLES is ROLES
    assert SIZES == ("tiny", "small", "paper")
    assert ROLES == ("matrix", "conv_first", "embedding", "head", "vector")


def test_better_follows_the_direction_and_never_prefers_nan():
    acc, loss = Metric("accuracy", "max"), Metric("val_loss", "min")
    assert acc.better(0.9, 0.8) and not acc.better(0.8, 0.9) and not acc.better(0.8, 0.8)
    assert loss.better(1.0, 2.0) and not loss.better(2.0, 1.0)
    for m in (acc, loss):
        assert not m.better(math.nan, 0.5) and m.better(0.5, math.nan) and not m.better(math.nan, math.nan)
    assert (acc.sign, loss.sign) == (1.0, -1.0)
    assert (acc.optuna_direction, loss.optuna_direction) == ("maximize", "minimize")
    with pytest.raises(ValueError, match="'max' or 'min'"):
        Metric("x", "up")


def test_reached_counts_the_target_itself_and_ignores_nan_or_no_target():
    acc, loss = Metric("accuracy", "max"), Metric("val_loss", "min")
    assert acc.reached(0.9, 0.9) and acc.reached(0.95, 0.9) and not acc.reached(0.85, 0.9)
    assert loss.reached(3.0, 3.1) and loss.reached(3.1, 3.1) and not loss.reached(3.2, 3.1)
    assert not acc.reached(math.nan, 0.5) and not acc.reached(0.99, None)


def test_best_of_several_values_skips_nan():
    acc, loss = Metric("accuracy", "max"), Metric("val_loss", "min")
    values = [0.3, math.nan, 0.7, 0.5]
    assert acc.best(values) == 0.7 and loss.best(values) == 0.3
    assert loss.best(iter([2, 1.5])) == 1.5  # any iterable, ints too
    assert math.isnan(acc.best([])) and math.isnan(loss.best([math.nan, math.nan]))
    # -inf is a value (a run that diverged towards a better loss is still a number here)
    assert loss.best([1.0, -math.inf]) == -math.inf
