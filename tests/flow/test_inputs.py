"""verify --empirical: no false FAIL from an unlucky draw; refuse a too-large comparison first."""

from __future__ import annotations

import time

from isaprof.cli import main
from isaprof.flow import empirical


def test_one_draw_never_gives_a_false_fail(capsys):
    # ISA at 8x8 is fully connected; the first draw (seed 0) zeroes one long-range Jacobian entry
    assert main(["verify", "isa", "--size", "8x8", "--empirical", "--draws", "1"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and " yes " in out and "ok" in out


def test_thin_evidence_is_inconclusive_not_fail(capsys, monkeypatch):
    monkeypatch.setattr(empirical, "EXTRA_DRAWS", 0)  # no draw past the first: the union still grows
    assert main(["verify", "isa", "--size", "8x8", "--empirical", "--draws", "1"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "inconclusive" in out
    assert "long_range alone: inconclusive: 1 pairs not yet reached empirically after 1 draws" in out


def test_factor_too_large_refused_before_any_jacobian(capsys):
    start = time.perf_counter()
    assert main(["verify", "isa", "--size", "8x8", "--factor", "99x99"]) == 2
    assert time.perf_counter() - start < 5  # refused before computing 1.9 GB of Jacobians (26-50 s)
    err = capsys.readouterr().err
    assert "compares grids of 9801 positions" in err and len(err.splitlines()) == 1
