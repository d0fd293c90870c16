"""The aggregate table: per scope (each task, and "all") and optimizer, the GraphLand-style average
rank (rank by mean on each benchmark, exact ties averaged, then averaged over benchmarks), how often
it is best or tied with the best (rank 1), and its verdict counts against AdamW and SoftX vs X."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from harness.leaderboard.load import display_key, soft_ref
from harness.stats.verdicts import VERDICTS

BASELINE = "adamw"


def table(rows: Sequence[dict]) -> list[dict]:
    """Aggregate rows (keys ``columns.AGGREGATE``) from the per-benchmark rows."""
    scopes = sorted({r["task"] for r in rows}) + ["all"]
    out = []
    for scope in scopes:
        scoped = [r for r in rows if scope == "all" or r["task"] == scope]
        for name in sorted({r["optimizer"] for r in scoped}, key=display_key):
            mine = [r for r in scoped if r["optimizer"] == name]
            ranks = [r["mean_rank"] for r in mine]
            row = {
                "scope": scope,
                "optimizer": name,
                "n_benchmarks": len(mine),
                "avg_rank": float(np.mean(ranks)),
                "rank_std": float(np.std(ranks, ddof=1)) if len(ranks) > 1 else math.nan,
                "n_best": sum(r["rank"] == 1 for r in mine),
            }
            vs = [r["vs_adamw_verdict"] for r in mine]
            soft = [r["soft_verdict"] for r in mine]
            paired = name != BASELINE
            switching = soft_ref(name) is not None
            for v in VERDICTS:
                row[f"vs_adamw_{v}"] = vs.count(v) if paired else None
                row[f"soft_{v}"] = soft.count(v) if switching else None
            out.append(row)
    return out
