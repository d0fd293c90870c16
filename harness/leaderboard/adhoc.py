"""Ad-hoc run folders on the leaderboard: the records ``optbench run --out DIR`` writes (phase
``run``, no study, suite ``adhoc``) hold no tuned configurations re-run on fresh seeds (phase
``eval``), which is what the leaderboard compares. ``as_evaluations`` takes the runs of each
optimizer as its evaluations instead, and ``caveat`` / ``with_caveat_column`` say so in the
Markdown (a note of the board) and in every CSV row (a ``caveat`` column): the configurations were
not tuned alike, so a difference between optimizers may be one between their configurations.

A pre-processing step on the rows ``harness.leaderboard.load.load_runs`` returns, applied by
``harness.leaderboard.cli.build`` only when a folder holds run rows and no eval rows at all (a
sweep's folder is never touched)."""

from __future__ import annotations

import csv
import io
import json

RUN_PHASE = "run"
EVAL_PHASE = "eval"
CAVEAT_COLUMN = "caveat"
CAVEAT = ("ad-hoc runs (optbench run, phase 'run'), not a sweep: each optimizer's runs are taken as its "
          "evaluations, but they were not tuned alike (each ran the configuration it was given, with no common "
          "search or budget), so a difference between optimizers may be a difference between their "
          "configurations; runs of one optimizer with the same seed count once (the latest)")
CSV_CAVEAT = ("ad-hoc runs (optbench run), not tuned alike: each optimizer's runs taken as its evaluations; a "
              "difference may be one of configurations")
# compute() notes, for a sweep, that its intervals omit tuning luck; ad-hoc runs had no tuning at all
# and the caveat above says what the intervals are then, so that note is replaced.
_STUDY_NOTE = "one tuning study per optimizer"


def is_adhoc(frame) -> bool:
    """True when the rows hold ad-hoc runs (phase ``run``) and no eval run at all."""
    if len(frame) == 0 or "phase" not in frame.columns:
        return False
    phases = set(frame["phase"].fillna("").astype(str))
    return RUN_PHASE in phases and EVAL_PHASE not in phases


def as_evaluations(frame):
    """``(rows, notes)``: the ad-hoc runs relabelled as eval runs (replicate 0, keyed by their seed),
    other phases left as they are, and the notes the board must carry (the caveat first, then one per
    benchmark and optimizer whose runs hold more than one configuration). Rows that are not ad-hoc
    are returned unchanged with no notes."""
    if not is_adhoc(frame):
        return frame, []
    frame = frame.copy()
    runs = frame["phase"].astype(str) == RUN_PHASE
    frame.loc[runs, "phase"] = EVAL_PHASE
    frame["replicate"] = 0
    return frame, [CAVEAT, *_mixed_configurations(frame[runs])]


def _mixed_configurations(runs) -> list[str]:
    if "hparams" not in runs.columns:
        return []
    configs: dict[tuple[str, str, str], set[str]] = {}
    for task, dataset, name, hp in zip(runs["task"], runs["dataset"], runs["optimizer"], runs["hparams"]):
        configs.setdefault((str(task), str(dataset), str(name)), set()).add(_canonical(hp))
    mixed = [f"{name} on {task}/{dataset} ({len(c)} configurations)"
             for (task, dataset, name), c in sorted(configs.items()) if len(c) > 1]
    if not mixed:
        return []
    return ["these optimizers ran several configurations, pooled as if one (hparams 'mixed'): " + ", ".join(mixed)]


def _canonical(hparams) -> str:
    try:
        return json.dumps(json.loads(hparams), sort_keys=True)
    except (TypeError, ValueError):
        return str(hparams)


def replace_notes(notes, added) -> tuple[str, ...]:
    """The board's notes with ``added`` first and compute's note about tuning studies left out."""
    return (*added, *(n for n in notes if not n.startswith(_STUDY_NOTE)))


def has_caveat(board) -> bool:
    return CAVEAT in board.notes


def with_caveat_column(text: str) -> str:
    """CSV ``text`` with a last column ``caveat`` holding ``CSV_CAVEAT`` in every row (the short form of
    the Markdown's note), so a table read on its own still says what its rows are."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return text
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*rows[0], CAVEAT_COLUMN])
    for row in rows[1:]:
        writer.writerow([*row, CSV_CAVEAT])
    return buf.getvalue()
