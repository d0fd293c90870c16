"""The report's figures say what they show and show every optimizer (issue 24's plot list): twins are
told apart, labels read as words, every figure names its bands and marks, legends sit outside the
data, LR sensitivity is a per-replicate scatter, the performance profile names how many benchmarks
each optimizer ran, temperature panels are filled, best-after-k's y range follows its curves. The
PNGs and the HTML page's SVGs are drawn by the same code (``harness.report.figures``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from report_page import fixture_data

import optimizers
from harness.report import figures, panels
from harness.report.style import canvas, finish, metric_label, style

SBM = ("gnn_graphland", "sbm", "small", "")
DIABETES = ("tabular_mlp", "diabetes", "small", "")


@pytest.fixture(scope="module")
def data():
    return fixture_data()


def _texts(fig) -> str:
    """The figure's notes as one line (they are wrapped to the figure's width)."""
    return " ".join(" ".join(t.get_text() for t in fig.texts).split())


def _legend_labels(fig) -> list[str]:
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def test_every_optimizer_has_its_own_look():
    """No two registered optimizers share colour, line style and marker; a switching optimizer
    differs from the one it is before its switch in line style and marker, and has hollow markers."""
    from harness.leaderboard import soft_ref

    names = list(optimizers.REGISTRY)
    looks = [(style(n).color, str(style(n).linestyle), style(n).marker) for n in names]
    assert len(set(looks)) == len(names)
    for name in names:
        ref = soft_ref(name)
        if ref:
            assert style(name).linestyle != style(ref).linestyle and style(name).marker != style(ref).marker
            assert style(name).hollow and not style(ref).hollow


def test_metric_labels_read_as_words():
    assert metric_label("val_loss", "min", "val") == "validation loss (lower is better)"
    assert metric_label("accuracy", "max", "test") == "test accuracy (higher is better)"
    assert metric_label("char_acc", "max") == "character accuracy (higher is better)"
    assert metric_label("my_metric", "min") == "my metric (lower is better)"


def test_curves_name_their_band_and_keep_the_legend_off_the_data(data):
    fig = figures.bench_figure("curves", data, SBM)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "validation accuracy (higher is better)"
    assert "band: min..max over seeds" in _texts(fig)
    labels = _legend_labels(fig)
    assert labels == [f"{n} (3 seeds)" for n in ("adamw", "signum", "softsignum", "muon", "softmuon")]
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    for axes in fig.axes:
        assert not legend.overlaps(axes.get_window_extent())
    drawn = [(line.get_color(), str(line.get_linestyle()), line.get_marker()) for line in ax.get_lines()]
    assert len(set(drawn)) == 5  # five optimizers, five looks, every one drawn


def test_lr_sensitivity_is_a_scatter_per_replicate(data):
    tunes = data.tunes[(data.tunes["dataset"] == "sbm")]
    second = tunes.assign(replicate=1, hp_lr=tunes["hp_lr"] * 1.5, run_id=tunes["run_id"] + "r1")
    rows = pd.concat([tunes, second], ignore_index=True)
    c = canvas(1, "t")
    assert panels.lr_sensitivity(c.axes[0], c, SBM, rows)
    ax = c.axes[0]
    assert all(len(line.get_xdata()) <= 1 for line in ax.get_lines())  # nothing joined
    shapes = {tuple(np.round(coll.get_paths()[0].vertices, 3).ravel()) for coll in ax.collections}
    assert len(shapes) == 2  # one marker per replicate
    fig = finish(c)
    assert {"replicate 0", "replicate 1"} <= set(_legend_labels(fig))
    assert "one point per tune trial, not joined" in _texts(fig)
    assert ax.get_xscale() == "log"


def test_best_after_k_range_follows_the_curves(data):
    fig = figures.bench_figure("best_after_k", data, DIABETES)  # signum has a diverged trial at penalty 1000
    lo, hi = fig.axes[0].get_ylim()
    assert 50 < lo < hi < 70
    assert "pulled by diverged trials" in _texts(fig)
    fig = figures.bench_figure("best_after_k", data, SBM)
    lo, hi = fig.axes[0].get_ylim()
    assert 0.7 < lo < hi < 0.9  # accuracy near 0.8: no 0 forced into the view
    assert "thin steps: best so far" in _texts(fig)


def test_temperature_panels_are_filled(data):
    fig = figures.bench_figure("temperature", data, SBM)
    ax = fig.axes[0]
    steps = np.concatenate([line.get_xdata() for line in ax.get_lines() if len(line.get_xdata()) > 1])
    lo, hi = ax.get_xlim()
    assert (steps.max() - steps.min()) / (hi - lo) > 0.9
    assert any("switch at step S = 70" in t.get_text() for t in ax.texts)
    labels = _legend_labels(fig)
    assert labels == ["softsignum (3 seeds)", "softmuon (3 seeds)"]


def test_profile_shows_every_optimizer_and_what_it_ran(data):
    board = data.board
    rows = tuple(r for r in board.rows if r["optimizer"] != "softsignum" or r["dataset"] == "sbm")
    fig, skipped = figures.profile_figure(dataclasses.replace(board, rows=rows))
    assert skipped is None
    labels = _legend_labels(fig)
    assert labels == [
        "adamw (3/3 benchmarks)",
        "signum (3/3 benchmarks)",
        "softsignum (1/3 benchmarks)",
        "muon (3/3 benchmarks)",
        "softmuon (3/3 benchmarks)",
    ]
    assert "softsignum ran 1 of 3" in _texts(fig)
    assert len(fig.axes[0].get_lines()) == 5


def test_branched_optimizers_are_marked(data):
    """SoftX trials branched from X are named so in best-after-k (with the step they start at), an
    optimizer without tune trials of its own is named, and curves mark the branch step."""
    tunes = data.tunes[data.tunes["dataset"] == "sbm"]
    soft = tunes["optimizer"] == "softsignum"
    tunes = tunes.assign(
        branched_from=soft.map({True: "parent-run", False: ""}), branch_step=soft.map({True: 70, False: 0})
    )
    tunes = tunes[tunes["optimizer"] != "softmuon"]
    evals = data.evals[data.evals["dataset"] == "sbm"]
    c = canvas(1, "t")
    assert panels.best_after_k(c.axes[0], c, SBM, tunes, evals)
    fig = finish(c)
    assert "softsignum (3 trials, branched)" in _legend_labels(fig)
    assert "signum (3 trials)" in _legend_labels(fig)
    notes = _texts(fig)
    assert "softsignum from signum at S=70" in notes and "no tune trials of their own: softmuon" in notes

    soft = evals["optimizer"] == "softsignum"
    evals = evals.assign(
        branched_from=soft.map({True: "parent-run", False: ""}), branch_step=soft.map({True: 70, False: 0})
    )
    c = canvas(1, "t")
    assert panels.curves(c.axes[0], c, SBM, evals, data.curves)
    verticals = [line for line in c.axes[0].get_lines() if list(line.get_xdata()) == [70, 70]]
    assert len(verticals) == 1 and verticals[0].get_color() == style("softsignum").color
    assert "step S where branched runs start" in _texts(finish(c))
