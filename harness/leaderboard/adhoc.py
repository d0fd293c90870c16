"""Ad-hoc run folders on the leaderboard: the records ``optbench run --out DIR`` writes (phase
``run``, no study, suite ``adhoc``) hold no tuned configurations re-run on fresh seeds (phase
``eval``), which is what the leaderboard compares. ``as_evaluations`` takes the runs of each
optimizer as its evaluations instead, and ``notes`` / ``with_caveat_column`` say so in the Markdown
(a note of the board) and in every CSV row (a ``caveat`` column): the configurations were not tuned
alike, so a difference between optimizers may be one between their configurations.

A pre-processing step on the rows ``harness.leaderboard.load.load_runs`` returns, applied by
``harness.leaderboard.cli.build`` only when a folder holds run rows and no eval rows at all (a
sweep's folder is never touched)."""

from __future__ import annotations

import csv
import io

RUN_PHASE = "run"
EVAL_PHASE = "eval"
CAVEAT_COLUMN = "caveat"
CAVEAT = (
    "ad-hoc runs (optbench run, phase 'run'), not a sweep: each optimizer's runs are taken as its "
    "evaluations, but they were not tuned alike (each ran the configuration it was given, with no common "
    "search or budget), so a difference between optimizers may be a difference between their "
    "configurations; runs of one optimizer with the same seed count once (the latest)"
)
CSV_CAVEAT = (
    "ad-hoc runs (optbench run), not tuned alike: each optimizer's runs taken as its evaluations; a "
    "difference may be one of configurations"
)
# compute() notes, for a sweep, that its intervals omit tuning luck; ad-hoc runs had no tuning at all
# and the caveat above says what the intervals are then, so that note is replaced.
_STUDY_NOTE = "one tuning study per optimizer"


def is_adhoc(frame) -> bool:
    """True when the rows hold ad-hoc runs (phase ``run``) and no eval run at all."""
    if len(frame) == 0 or "phase" not in frame.columns:
        return False
    phases = set(frame["phase"].fillna("").astype(str))
    return RUN_PHASE in phases and EVAL_PHASE not in phases


def as_evaluations(frame) -> tuple[object, bool]:
    """``(rows, relabelled)``: the ad-hoc runs relabelled as eval runs (replicate 0, keyed by their
    seed) and True; or the rows unchanged and False when they are not ad-hoc."""
    if not is_adhoc(frame):
        return frame, False
    frame = frame.copy()
    frame.loc[frame["phase"].astype(str) == RUN_PHASE, "phase"] = EVAL_PHASE
    frame["replicate"] = 0
    return frame, True


def notes(rows) -> list[str]:
    """The notes an ad-hoc board carries, read off its computed ``rows``: the caveat, then the
    entries whose kept runs hold more than one configuration (``hparams`` 'mixed')."""
    mixed = [
        f"{r['optimizer']} on {r['task']}/{r['dataset']}" + (f" [{r['variant']}]" if r["variant"] else "")
        for r in rows
        if r["hparams"] == "mixed"
    ]
    if not mixed:
        return [CAVEAT]
    return [
        CAVEAT,
        "these entries pool runs of several configurations as if they were one (hparams 'mixed'): " + ", ".join(mixed),
    ]


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
