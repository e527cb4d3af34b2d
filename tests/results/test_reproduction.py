"""The reproduction table's one summary: matched within 10%, exact within 1%, misses with their reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from isaprof.results import reproduction
from tests import REPO


def _rows() -> list[dict[str, str]]:
    return [
        {"id": "a", "ratio": "1.0004", "ours": "1", "published": "1", "unit": "GFLOP", "reason": "matches"},
        {"id": "b", "ratio": "1.1", "ours": "1.1", "published": "1", "unit": "GFLOP", "reason": ""},
        {"id": "c", "ratio": "0.4966", "ours": "698", "published": "1411", "unit": "MiB",
         "reason": "two maps held; training buffers"},
        {"id": "d", "ratio": "", "ours": "", "published": "3", "unit": "x", "reason": ""},
    ]  # fmt: skip


def test_counts_at_the_stated_tolerances() -> None:
    s = reproduction.summarize(_rows())
    # 1.1 sits on the 10% boundary and counts as matched; an unreadable ratio is a miss, never a match
    assert (s.total, s.matched, s.exact) == (4, 2, 1)
    assert [f.id for f in s.misses] == ["c", "d"]
    assert s.sentence() == (
        "2 of 4 published figures are matched within 10% (1 within 1%); not: c (ratio 0.50); d (ratio nan)."
    )
    lines = s.lines()
    assert lines[0] == s.sentence()
    assert lines[1] == "  c: ours 698 vs published 1411 MiB (ratio 0.497): two maps held"
    assert lines[2].endswith("no reason recorded in the published-figures file")


def test_all_matched_has_no_tail() -> None:
    s = reproduction.summarize(_rows()[:2])
    assert s.sentence() == "2 of 2 published figures are matched within 10% (1 within 1%)."
    assert s.lines() == [s.sentence()]


def test_reads_the_committed_table_and_rejects_a_row_without_ratio(tmp_path: Path) -> None:
    committed = REPO / "reports" / "data" / "reproduction.csv"
    s = reproduction.read(committed)
    assert s.total >= 15 and 0 < s.matched < s.total and s.exact <= s.matched
    with pytest.raises(ValueError, match="lacks ratio"):
        reproduction.summarize([{"id": "x"}])
