"""``isaprof check``: the formulas against the meta measurement over a grid, with a progress bar on stderr."""

from __future__ import annotations

import sys

from isaprof.cli import main


def test_check_shows_a_progress_bar_on_stderr(capsys, monkeypatch):
    import isaprof.studies.check

    grid = [{"name": "dense", "size": (4, 4), "channels": 8}] * 3
    monkeypatch.setattr(isaprof.studies.check, "default_grid", lambda quick=False: grid)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["check", "--quick"]) == 0
    captured = capsys.readouterr()
    assert "check (meta)" in captured.err and "3/3" in captured.err
    assert captured.out.strip() == "0 disagreement(s) over 3 configurations"
