"""The one summary of ``reproduction.csv`` (written by ``isaprof reproduce``): how many published figures
isaprof matches and which it misses, with the reason each row records.

Computed here once and quoted word for word by the report's findings, its reproduction section and
``isaprof reproduce``. Convention: ``ratio`` = ours (in the source's convention) / published; a figure is
*matched* when the ratio lies within :data:`TOLERANCE` of 1, *exact* within :data:`EXACT`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

TOLERANCE = 0.10  # matched: |ratio - 1| <= 10%
EXACT = 0.01  # exact: |ratio - 1| <= 1% (the reproduce study's "matches within 1%")
REQUIRED = ("id", "ratio")


@dataclass(frozen=True)
class Figure:
    """One row of the reproduction table, as the summary uses it (``ratio`` NaN where unreadable)."""

    id: str
    ratio: float
    ours: str
    published: str
    unit: str
    reason: str

    @property
    def matched(self) -> bool:
        """Ratio within :data:`TOLERANCE` of 1 (a NaN ratio is not matched)."""
        return abs(self.ratio - 1) <= TOLERANCE + 1e-12

    @property
    def exact(self) -> bool:
        """Ratio within :data:`EXACT` of 1."""
        return abs(self.ratio - 1) <= EXACT + 1e-12

    @property
    def why(self) -> str:
        """The first clause of the row's reason, or a statement that none was recorded."""
        return self.reason.split("; ")[0].strip() or "no reason recorded in the published-figures file"


@dataclass(frozen=True)
class Summary:
    """How many published figures are matched within :data:`TOLERANCE`, how many within :data:`EXACT`,
    and the misses."""

    figures: tuple[Figure, ...]

    @property
    def total(self) -> int:
        return len(self.figures)

    @property
    def matched(self) -> int:
        return sum(f.matched for f in self.figures)

    @property
    def exact(self) -> int:
        return sum(f.exact for f in self.figures)

    @property
    def misses(self) -> tuple[Figure, ...]:
        """Figures outside :data:`TOLERANCE`, in the table's order."""
        return tuple(f for f in self.figures if not f.matched)

    def sentence(self) -> str:
        """The summary in one sentence, e.g. "12 of 15 published figures are matched within 10% (9 within
        1%); not: ccnet-nl-memory (ratio 0.50), ..."."""
        head = (
            f"{self.matched} of {self.total} published figures are matched within {TOLERANCE:.0%} "
            f"({self.exact} within {EXACT:.0%})"
        )
        tail = "; ".join(f"{f.id} (ratio {f.ratio:.2f})" for f in self.misses)
        return head + (f"; not: {tail}." if tail else ".")

    def lines(self) -> list[str]:
        """The sentence, then one line per miss: ours against published, the ratio and why."""
        return [self.sentence()] + [
            f"  {f.id}: ours {f.ours} vs published {f.published} {f.unit} (ratio {f.ratio:.3g}): {f.why}"
            for f in self.misses
        ]


def _ratio(text: object) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def summarize(rows: Iterable[Mapping[str, object]]) -> Summary:
    """Summary of reproduction rows (dicts with at least ``id`` and ``ratio``)."""
    figs = []
    for r in rows:
        missing = [c for c in REQUIRED if c not in r]
        if missing:
            raise ValueError(f"reproduction row lacks {', '.join(missing)}: {dict(r)}")
        figs.append(
            Figure(
                id=str(r["id"]),
                ratio=_ratio(r["ratio"]),
                ours=str(r.get("ours", "")),
                published=str(r.get("published", "")),
                unit=str(r.get("unit", "")),
                reason=str(r.get("reason", "") or ""),
            )
        )
    return Summary(tuple(figs))


def read(path: Path) -> Summary:
    """Summary of the ``reproduction.csv`` at ``path``."""
    with Path(path).open(newline="") as f:
        return summarize(csv.DictReader(f))
