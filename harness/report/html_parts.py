"""The HTML page's building blocks (escaping, verdict badges, flags and their legend, sortable cells,
inline SVG charts), shared by ``harness.report.html`` (the page) and ``harness.report.html_conditions``
(its budget, delay, time-to-target and axis sections)."""

from __future__ import annotations

import html
import math
import re

from harness.leaderboard import render_md as md
from harness.report.style import svg_text

E = html.escape
VERDICT_ORDER = {"best": 0, "better": 1, "equivalent": 2, "inconclusive": 3, "worse": 4, "": 5}
FLAGS = {
    "best": "bold: the best mean on this benchmark",
    "≈": "rank 1 and equivalent to the best: the 95% interval of its difference from the best lies inside ±margin",
    "?": "rank 1 but inconclusive against the best: not yet told apart from it (more runs needed)",
    "†": "some eval runs diverged or failed and are left out of the statistics",
    "‡": "its rank changes between tuning replicates",
    "=": "rank shared with another optimizer (no verdict 'better' between them)",
    "branched": "the SoftX runs started from the X run of the same seed and replicate at step S, so the pair "
    "shares its trajectory up to S and Δ measures the tail alone",
    "MDE": "minimum detectable effect: the smallest true difference this design detects with 80% power",
    "R≥k": "tuning replicates that would bring the MDE under the margin (at the current eval seeds)",
    "R≥k: n/a": "no number of tuning replicates (up to the cap) settles this comparison, or it is undefined; "
    "hover over it for why",
}
VERDICT_TEXT = {
    "better": "the 95% interval of Δ excludes 0 on the better side and is not inside ±margin",
    "worse": "the 95% interval of Δ excludes 0 on the worse side and is not inside ±margin",
    "equivalent": "the 95% interval of Δ lies inside ±margin (a real but smaller difference included)",
    "inconclusive": "the interval holds 0 and reaches past the margin: more runs are needed",
}


def slug(key) -> str:
    return "bench-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(k for k in key if k)).strip("-")


def _flag(mark: str, explain: str | None = None, used: set | None = None) -> str:
    if used is not None:
        used.add(mark)
    return f'<abbr class="flag" title="{E(explain or FLAGS[mark])}">{E(mark)}</abbr>'


def _badge(verdict: str, extra: str = "") -> str:
    if not verdict:
        return "—"
    text = "best mean" if verdict == "best" else VERDICT_TEXT.get(verdict, "")
    return f'<span class="v v-{E(verdict)}" title="{E(verdict + ": " + text + extra)}">{E(verdict)}</span>'


def _sort(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return "" if not math.isfinite(float(value)) else f"{float(value):.10g}"
    return E(str(value))


def _td(content: str, sort=None, cls: str = "num") -> str:
    attr = f' data-sort="{_sort(sort)}"' if sort is not None else ""
    return f'<td class="{cls}"{attr}>{content}</td>'


def _main_cell(row: dict, d: int, used: set) -> str:
    """``render_md._main_cell`` (the leaderboard's marks) with each mark explained."""
    text = E(md._main_cell(row, d))
    text = re.sub(r"\*\*(.+?)\*\*", lambda m: f'<strong title="{E(FLAGS["best"])}">{m.group(1)}</strong>', text)
    if row["best_mean"]:
        used.add("best")
    for mark in ("≈", "?", "†", "‡"):
        if f" {mark}" in text:
            n = row["n_failed"]
            explain = f"{FLAGS[mark]} ({n} of {n + row['n_seeds']})" if mark == "†" else None
            text = text.replace(f" {mark}", " " + _flag(mark, explain, used))
    return text


def _flag_list(used: set) -> str:
    if not used:
        return ""
    order = [m for m in FLAGS if m in used]
    items = "".join(f"<dt>{E('bold' if m == 'best' else m)}</dt><dd>{E(FLAGS[m])}</dd>" for m in order)
    return f'<dl class="flags">{items}</dl>'


class Charts:
    """Renders figures to inline SVG, each with its own id salt, and counts them."""

    def __init__(self) -> None:
        self.count = 0

    def figure(self, fig, kind: str, caption: str, label: str) -> str:
        if fig is None:
            return ""
        self.count += 1
        svg = svg_text(fig, f"c{self.count}")
        svg = svg.replace("<svg ", f'<svg role="img" aria-label="{E(label)}" ', 1)
        return (
            f'<figure class="chart" data-kind="{E(kind)}" id="chart-{self.count}">{svg}'
            f"<figcaption>{E(caption)}</figcaption></figure>"
        )
