"""How every report figure looks: one style per optimizer, readable labels, figures with their legend
and their explanatory note outside the data, and the two outputs (PNG bytes, inline SVG text).

Styles. Colour, line style and marker are fixed per optimizer, so every figure agrees and no two
optimizers look alike: an optimizer that *is* another one before its switch (SoftSignum and
HardSwitchSign are Signum until step S, SoftMuon is Muon; ``harness.leaderboard.soft_ref``) gets a
non-solid line, and markers sit at staggered positions, so twins whose curves coincide still show
both (a dashed line over a solid one shows the colours of both).

Charts are matplotlib figures written as PNG (``png_bytes``) or as inline SVG (``svg_text``) for the
HTML page: no JavaScript chart library, so the page needs no network and no JS dependency to keep
up to date (docs/report.md).
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is imported once a figure is drawn
    from matplotlib.figure import Figure
    from matplotlib.text import Text
    from matplotlib.typing import LineStyleType

PALETTE = (
    "tab:blue",
    "tab:gray",
    "tab:orange",
    "tab:red",
    "tab:green",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")
SWITCH_LINES: tuple[LineStyleType, ...] = (
    "--",
    "-.",
    ":",
    (0, (5, 1, 1, 1)),
)  # switching optimizers, in registry order
REPLICATE_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
SCALE = {"max": "higher is better", "min": "lower is better"}
NAMES = {
    "val_loss": "loss",
    "char_acc": "character accuracy",
    "rmse": "RMSE",
    "mae": "MAE",
    "accuracy": "accuracy",
    "perplexity": "perplexity",
    "roc_auc": "ROC AUC",
    "ap": "average precision",
    "r2": "R²",
}
SPLITS = {"val": "validation", "test": "test"}

LEGEND_WIDTH = 2.3  # inches reserved right of the panels for the legend
TOP, BOTTOM, LINE = 0.65, 0.5, 0.16  # inches: title and panel title; x label; one line of notes
NOTE_SIZE = 7
PANEL = (3.9, 2.9)  # inches per panel (data area plus its tick labels)
MAX_COLUMNS = 3


@dataclass(frozen=True)
class Style:
    color: str
    linestyle: LineStyleType
    marker: str
    index: int  # position in the registry order: staggers marker positions

    @property
    def hollow(self) -> bool:
        """Switching optimizers get hollow markers: over a twin's filled one both stay visible."""
        return self.linestyle != "-"

    def line(self, n_points: int = 0) -> dict:
        """keyword arguments for ``Axes.plot``: markers at about 8 staggered points of a long line."""
        every = max(1, n_points // 8) if n_points else 1
        return {
            "color": self.color,
            "linestyle": self.linestyle,
            "marker": self.marker,
            "markersize": 5.5 if self.hollow else 4,
            "markerfacecolor": "none" if self.hollow else self.color,
            "markevery": (self.index % every, every),
            "linewidth": 1.8 if self.linestyle == ":" else 1.4,
        }


def _order() -> list[str]:
    import optimizers

    return list(optimizers.REGISTRY)


@functools.cache
def style(optimizer: str) -> Style:
    """The optimizer's fixed style; plugins (not in the registry) by a stable hash of the name. An
    axis entry (``softsignum[alpha_sign=0.5]``) has its optimizer's colour and line, and a marker of
    its own."""
    from harness.leaderboard import soft_ref
    from harness.leaderboard.load import base_name

    if base_name(optimizer) != optimizer:
        base = style(base_name(optimizer))
        shift = 1 + sum(map(ord, optimizer[len(base_name(optimizer)) :])) % (len(MARKERS) - 1)
        return Style(
            base.color, base.linestyle, MARKERS[(MARKERS.index(base.marker) + shift) % len(MARKERS)], base.index
        )
    order = _order()
    index = order.index(optimizer) if optimizer in order else len(order) + sum(map(ord, optimizer))
    switching = [n for n in order if soft_ref(n)]
    if soft_ref(optimizer):
        position = switching.index(optimizer) if optimizer in switching else sum(map(ord, optimizer))
        linestyle = SWITCH_LINES[position % len(SWITCH_LINES)]
    else:
        linestyle = "-"
    return Style(PALETTE[index % len(PALETTE)], linestyle, MARKERS[index % len(MARKERS)], index)


def metric_name(metric: str) -> str:
    """A metric's readable name: ``val_loss`` -> loss, ``char_acc`` -> character accuracy."""
    if metric in NAMES:
        return NAMES[metric]
    for prefix in ("val_", "test_"):
        if metric.startswith(prefix):
            return metric_name(metric[len(prefix) :])
    return metric.replace("_", " ")


def metric_label(metric: str, direction: str, split: str | None = None) -> str:
    """An axis label: "validation loss (lower is better)"."""
    name = metric_name(metric)
    if split:
        name = f"{SPLITS.get(split, split)} {name}"
    return f"{name} ({SCALE[direction]})" if direction in SCALE else name


def bench_title(key: tuple[str, ...]) -> str:
    task, dataset, size, variant = key
    return f"{dataset} [{variant}] ({size})" if variant else f"{dataset} ({size})"


# ---------------------------------------------------------------------------------------- figures


@dataclass
class Canvas:
    """A figure with its panels, the legend entries collected while drawing, and notes for the
    figure's foot (what lines, bands and marks mean)."""

    fig: Figure
    axes: list
    legend: dict
    notes: list
    title: Text | None = None

    def add(self, name: str, handle, detail: str = "", *, last: bool = False) -> None:
        """A legend entry for ``name``; ``detail`` (e.g. "3 seeds") is shown when every panel agrees.
        Optimizers are listed in registry order, then entries added with ``last`` (e.g. replicates)."""
        entry = self.legend.setdefault(name, [handle, set(), last])
        entry[1].add(detail)

    def labels(self) -> tuple[list, list]:
        handles, labels = [], []
        entries = sorted(self.legend.items(), key=lambda kv: (kv[1][2], 0 if kv[1][2] else style(kv[0]).index))
        for name, (handle, details, _) in entries:
            detail = next(iter(details)) if len(details) == 1 else ""
            handles.append(handle)
            labels.append(f"{name} ({detail})" if detail else name)
        return handles, labels

    def note(self, text: str, items=()) -> None:
        """A note at the figure's foot. With ``items``, ``text`` holds ``{}`` and the items of every
        panel are pooled into one note (e.g. the hyperparameters that vary)."""
        if not text:
            return
        for note in self.notes:
            if note[0] == text:
                note[1].update(items)
                return
        self.notes.append((text, set(items)))

    def note_lines(self) -> list[str]:
        return [text.format(", ".join(sorted(items))) if "{}" in text else text for text, items in self.notes]


def canvas(n: int, title: str, *, legend: bool = True, columns: int = MAX_COLUMNS) -> Canvas:
    """A figure of ``n`` panels (Agg canvas, no pyplot state) with fixed margins in inches: the title
    above, the legend right of the panels; ``finish`` adds the room the notes need below. A layout
    engine would cost another draw pass per figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = max(1, min(n, columns))
    rows = max(1, math.ceil(n / cols))
    right = LEGEND_WIDTH if legend else 0.25
    gap_x, gap_y = 0.8, 0.8  # y tick labels and label of the next panel; x label and title of the next
    axis_w, axis_h = PANEL[0] - gap_x, PANEL[1] - gap_y
    width = cols * PANEL[0] + right
    height = rows * axis_h + (rows - 1) * gap_y + TOP + BOTTOM
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(
        left=gap_x / width,
        right=1 - right / width,
        bottom=BOTTOM / height,
        top=1 - TOP / height,
        wspace=gap_x / axis_w,
        hspace=gap_y / axis_h,
    )
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(max(n, 1))]
    text = fig.suptitle(title, fontsize=10, va="top")
    return Canvas(fig, axes, {}, [], text)


def finish(c: Canvas) -> Figure:
    """Grow the figure's foot to hold the notes (wrapped to its width), place them there and the
    legend right of the panels; returns the figure. The panels keep their size in inches."""
    import textwrap

    fig = c.fig
    width, height = fig.get_size_inches()
    per_line = max(40, int(width * 72 / (NOTE_SIZE * 0.56)))
    lines = [line for note in c.note_lines() for line in textwrap.wrap(note, per_line, subsequent_indent="  ")]
    panels = height - TOP - BOTTOM
    height = panels + TOP + BOTTOM + LINE * len(lines)
    bottom = BOTTOM + LINE * len(lines)
    fig.set_size_inches(width, height)
    fig.subplots_adjust(bottom=bottom / height, top=1 - TOP / height)
    if c.title is not None:
        c.title.set_y(1 - 0.1 / height)
    if c.legend:
        handles, labels = c.labels()
        fig.legend(
            handles,
            labels,
            loc="upper left",
            fontsize=7,
            bbox_to_anchor=(fig.subplotpars.right + 0.12 / width, fig.subplotpars.top),
            frameon=False,
            handlelength=2.8,
            borderaxespad=0.0,
        )
    for i, line in enumerate(lines):
        fig.text(
            0.12 / width,
            (0.08 + LINE * (len(lines) - 1 - i)) / height,
            line,
            fontsize=NOTE_SIZE,
            color="0.25",
            ha="left",
            va="bottom",
        )
    return fig


def png_bytes(fig, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def svg_text(fig, prefix: str) -> str:
    """The figure as an ``<svg>`` element for inlining: text kept as text (smaller, selectable), no
    XML prolog, no metadata block, no date. Every id (and every reference to one) starts with
    ``prefix`` (give each figure of a page its own), so figures on one page never share an id; the
    same figure gives the same bytes."""
    import re

    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "optbench"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    text = re.sub(r'(\sid=")([^"]+")', rf"\g<1>{prefix}-\2", text)
    return re.sub(r'((?:xlink:)?href="#|url\(#)', rf"\g<1>{prefix}-", text)
