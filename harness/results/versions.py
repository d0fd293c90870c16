"""Which optbench versions changed results, in code, so a leaderboard can refuse to pool run records
that are not comparable.

Every record carries ``optbench_version`` (``package_version``). A *result epoch* is the span of
versions between two releases that changed the run records themselves (``RESULT_CHANGES`` entries
with ``records=True``: a training, optimizer or task change that makes the same spec give another
number). Records of one epoch are comparable; records of different epochs are not, and
``optbench leaderboard`` refuses to mix them unless told to (``--mixed-versions``). A change to how
the leaderboard computes its statistics (``records=False``) is listed too (the CHANGELOG names it),
but opens no epoch: the leaderboard recomputes every row with the running code.

Rows without ``optbench_version`` (results schema 1, written before versions were recorded) form the
epoch ``unknown``: they pool with each other, as they always did, and never silently with versioned
rows. A version newer than the running optbench is its own epoch (this code cannot know what it
changed). A pre-release or local build (``0.2.0rc1``, ``0.2.0+abc``) counts as its release. Torch-free.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

DISTRIBUTION = "optbench"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class ResultChange:
    """A change to what optbench computes: from ``version`` on. ``records``: the run records differ
    (opens a result epoch); otherwise only statistics computed from records changed."""

    version: str
    records: bool
    what: str


# Oldest first. A release that changes results adds an entry here and a "Changes results" line in
# CHANGELOG.md (tests/test_results_dataset.py checks they agree).
RESULT_CHANGES: tuple[ResultChange, ...] = (
    ResultChange(
        "0.1.0",
        True,
        "the first version whose run records carry optbench_version; the changes to "
        "results made before it (CHANGELOG.md, 0.1.0) are in records whose version is unknown",
    ),
)


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """optbench's version: the installed distribution's (``importlib.metadata``), else
    ``harness.__version__`` (a source tree that is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        import harness

        return harness.__version__


def release(version: str) -> tuple[int, ...] | None:
    """The release numbers of ``version`` (``"0.2.0rc1"`` -> ``(0, 2, 0)``), trailing zeros dropped so
    ``0.2`` and ``0.2.0`` are one release; None when it does not start with one."""
    match = re.match(r"v?(\d+(?:\.\d+)*)", str(version).strip())
    if match is None:
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def is_unknown(version: object) -> bool:
    """True for a row without a version: null, NaN, '' or 'unknown'."""
    return version is None or version != version or str(version).strip() in ("", UNKNOWN)


def result_epoch(version: object) -> str:
    """The epoch a row of ``version`` belongs to, named by the version that opened it: ``unknown``
    for rows without a version, the version itself when it is newer than this optbench or
    unparsable, ``before <first>`` for a version older than the first entry."""
    if is_unknown(version):
        return UNKNOWN
    mine, theirs = release(package_version()), release(str(version))
    if theirs is None or (mine is not None and theirs > mine):
        return str(version)
    opened = [c.version for c in RESULT_CHANGES if c.records and _change_release(c.version) <= theirs]
    return max(opened, key=_change_release) if opened else f"before {RESULT_CHANGES[0].version}"


def _change_release(version: str) -> tuple[int, ...]:
    """``release`` of a ``RESULT_CHANGES`` entry's version, which is always a release number."""
    numbers = release(version)
    assert numbers is not None, f"RESULT_CHANGES lists {version!r}, not a release number"
    return numbers


def mixed_epochs(versions: Iterable[object]) -> dict[str, Counter]:
    """Epoch -> Counter of the versions (``unknown`` for rows without one) that fall in it; more than
    one key means the rows are not comparable."""
    out: dict[str, Counter] = {}
    for version in versions:
        name = UNKNOWN if is_unknown(version) else str(version)
        out.setdefault(result_epoch(version), Counter())[name] += 1
    return out


def describe(epochs: dict[str, Counter]) -> str:
    """Each version with its row count, epochs apart by ``;``, e.g. ``0.1.0 (12 rows), 0.1.1 (3 rows);
    unknown (90 rows, written before versions were recorded)``."""

    def key(text: str) -> tuple:
        return (text == UNKNOWN, release(text) or (), text)

    groups = []
    for epoch in sorted(epochs, key=key):
        parts = []
        for version, n in sorted(epochs[epoch].items(), key=lambda kv: key(kv[0])):
            extra = ", written before versions were recorded" if version == UNKNOWN else ""
            parts.append(f"{version} ({n} row{'s' if n != 1 else ''}{extra})")
        groups.append(", ".join(parts))
    return "; ".join(groups)
