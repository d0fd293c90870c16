"""Number and table formatting shared by the leaderboard's Markdown (``render_md``) and its condition
sections (``render_conditions``)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from harness.stats.verdicts import format_bound


def decimals(rows: Sequence[dict]) -> int:
    """Decimals for one benchmark: the typical std shown with 2 significant digits (4 significant
    digits of the mean when no std exists), clamped to 0..8."""
    stds = sorted(r["std"] for r in rows if math.isfinite(r["std"]) and r["std"] > 0)
    if stds:
        scale, digits = stds[len(stds) // 2], 2
    else:
        means = [abs(r["mean"]) for r in rows if math.isfinite(r["mean"]) and r["mean"] != 0]
        if not means:
            return 4
        scale, digits = max(means), 4
    return int(min(8, max(0, digits - 1 - math.floor(math.log10(scale)))))


def num(value: float, decimals: int) -> str:
    if not math.isfinite(value):
        return "n/a"
    text = f"{value:.{decimals}f}"
    return text.replace("-", "") if float(text) == 0.0 else text


def signed(value: float, margin: float, decimals: int) -> str:
    """A difference or bound with enough digits to show its side of 0 and of ±margin, and a sign."""
    text = format_bound(value, margin, decimals)
    return text if text.startswith("-") or text == "n/a" else ("+" + text if float(text) != 0 else text)


def md_table(header: Sequence[str], body: Iterable[Sequence[str]], align: Sequence[str]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return lines + ["| " + " | ".join(cells) + " |" for cells in body]
