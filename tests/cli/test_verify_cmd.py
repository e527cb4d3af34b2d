"""``isaprof verify`` command line and the reach picture."""

from __future__ import annotations

import json

from isaprof import targets as blocks
from isaprof.cli import main
from isaprof.flow.figures import reach_grid


def test_json_fields_and_exit_zero(capsys):
    assert main(["verify", "isa", "--size", "6x6", "--factor", "2x3", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["block"] == "isa" and row["options"] == {"factor": [2, 3]}
    assert row["fractions"] == [1 / 6, 1.0] and row["paths_min"] == row["paths_max"] == 1
    assert row["agree"] is True and row["ok"] is True and row["advertised"] is True


def test_exit_one_where_advertised_fully_connected_is_not(capsys, monkeypatch):
    # criss-cross advertises full connectivity only for R >= 2: R = 1 passes as "not advertised"...
    assert main(["verify", "criss_cross", "--size", "4x4", "--recurrence", "1"]) == 0
    assert "not advertised" in capsys.readouterr().out
    # ...and a block whose claim is wrong (here: a registry entry claiming R = 1 suffices) fails with exit 1
    claims = blocks.registry.BlockSpec.advertises_full
    monkeypatch.setattr(
        blocks.registry.BlockSpec,
        "advertises_full",
        lambda s, options, size: True if s.name == "criss_cross" else claims(s, options, size),
    )
    assert main(["verify", "criss_cross", "--size", "4x4", "--recurrence", "1"]) == 1
    out = capsys.readouterr().out
    assert "criss_cross" in out and "NOT fully connected" in out


def test_structural_only_at_large_size(capsys):
    assert main(["verify", "axial", "isa", "--size", "97x97", "--factor", "8x8", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["block"] for r in rows] == ["axial", "isa"]
    assert all(r["empirical"] == [] and r["agree"] is None and r["fractions"][-1] == 1.0 for r in rows)


def test_bad_block_name_is_one_line_error(capsys):
    assert main(["verify", "nope", "--no-empirical"]) == 2
    assert "unknown block 'nope'" in capsys.readouterr().err


def test_figure_written(tmp_path, capsys):
    out = tmp_path / "reach.png"
    assert main(["verify", "--figure", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote" in capsys.readouterr().out


def test_reach_grid_returns_path(tmp_path):
    p = reach_grid(tmp_path / "sub" / "r.png", size=(9, 7), query=(2, 3), factor=(3, 2))
    assert p.exists() and p.stat().st_size > 10_000
