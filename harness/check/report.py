"""``optbench check``, its report: one row per result (the CSV), the details (the JSON), the summary
table, and writing both files (each to a temp file, then renamed)."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CSV_COLUMNS = ("device", "device_name", "section", "item", "status", "value", "unit", "ratio", "ratio_to", "detail")


@dataclass
class Report:
    """Everything one check found; ``rows`` is the CSV."""

    device: Any
    tag: str
    device_name: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        section: str,
        item: str,
        status: str,
        value: Any = "",
        unit: str = "",
        ratio: Any = "",
        ratio_to: str = "",
        detail: str = "",
    ) -> None:
        self.rows.append(
            {
                "device": self.tag,
                "device_name": self.device_name,
                "section": section,
                "item": item,
                "status": status,
                "value": value,
                "unit": unit,
                "ratio": ratio,
                "ratio_to": ratio_to,
                "detail": detail,
            }
        )

    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] in ("FAIL", "failed")]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def print_summary(report: Report, log: Callable[[str], None]) -> None:
    """The measurements (and anything that failed or was skipped) as one table."""
    shown = [
        r
        for r in report.rows
        if r["section"] in ("optimizer_step", "throughput", "ns5") or r["status"] in ("FAIL", "failed", "skipped")
    ]
    smoke = [r for r in report.rows if r["section"] == "smoke"]
    log(f"\n== summary: {report.device} ({report.device_name})")
    if smoke:
        counts = {s: sum(r["status"] == s for r in smoke) for s in dict.fromkeys(r["status"] for r in smoke)}
        log("  smoke: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" of {len(smoke)} cells")
    cols = ("section", "item", "status", "value", "unit", "ratio", "ratio_to")
    table = [[_fmt(r[c]) for c in cols] for r in shown]
    widths = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    log("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for t in table:
        log("  " + "  ".join(v.ljust(w) for v, w in zip(t, widths)).rstrip())


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_outputs(report: Report, out: Path) -> tuple[Path, Path]:
    """``check_<tag>.csv`` and ``check_<tag>.json`` in ``out``, each written to a temp file and renamed."""
    out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out / f"check_{report.tag}.csv", out / f"check_{report.tag}.json"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(report.rows)
    os.replace(tmp, csv_path)
    payload = {
        "device": report.tag,
        "device_name": report.device_name,
        **report.details,
        "sections": report.sections,
        "rows": report.rows,
    }
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(payload), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, json_path)
    return csv_path, json_path
