"""The papers' settings (reference/papers.toml) are defined once and read by one torch-free loader."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from isaprof import papers
from tests import REPO

# A literal naming a paper's feature map: (97, 97) / [128, 128] or CCNet's 769 crop.
PAPER_SIDES = {97, 128}
PAPER_CROP = 769


def _paper_literals(path: Path) -> list[int]:
    """Line numbers of tuple/list literals (H, H) with H a paper's side, and of the integer 769."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) == 2:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == 2 and values[0] == values[1] and values[0] in PAPER_SIDES:
                hits.append(node.lineno)
        elif isinstance(node, ast.Constant) and node.value == PAPER_CROP and not isinstance(node.value, bool):
            hits.append(node.lineno)
    return hits


def test_settings_as_read() -> None:
    assert papers.SIZES == ((97, 97), (128, 128)) and papers.CHANNELS == 512 and papers.IN_CHANNELS == 2048
    assert [s.label for s in papers.SETTINGS] == ["97x97", "128x128"] and "CCNet" in papers.SETTINGS[0].what
    heads = {h["head"]: h for h in papers.HEADS}
    assert list(heads) == ["isa_head", "dense_head", "rcca_head", "nl_head"]
    assert heads["isa_head"]["options"] == {"factor": (8, 8)} and heads["rcca_head"]["size"] == (97, 97)
    assert all(h["in_channels"] == 2048 and h["channels"] == 512 for h in papers.HEADS)


def test_the_studies_and_the_report_read_them_from_there() -> None:
    from isaprof.report import efficiency
    from isaprof.studies import bounds

    assert bounds.SIZES is papers.SIZES and bounds.CHANNELS == papers.CHANNELS
    assert efficiency.SETTINGS == tuple((s.size, s.what) for s in papers.SETTINGS)
    makefile = (REPO / "Makefile").read_text()
    assert "-m isaprof.papers" in makefile and "$(PAPERS) sizes" in makefile
    assert "97x97" not in makefile.split("TABLE_ARGS")[1]  # the recipe reads the sizes, it does not list them


def test_heads_study_reads_them() -> None:
    pytest.importorskip("torch")
    from isaprof.studies import heads

    assert heads.HEAD_CONFIGS is papers.HEADS


def test_no_module_restates_the_papers_sizes() -> None:
    """The networks are exempt: their slide window (769x769, stride 513) is mmseg's ``test_cfg``, a
    framework setting written as literal constructor defaults, which the registry reads without importing
    (``ast.literal_eval``)."""
    home = Path(papers.__file__)
    networks = REPO / "isaprof" / "targets" / "networks"
    found = {
        str(p.relative_to(REPO)): lines
        for p in sorted((REPO / "isaprof").rglob("*.py"))
        if p != home and networks not in p.parents and (lines := _paper_literals(p))
    }
    assert found == {}, f"the papers' sizes belong in reference/papers.toml: {found}"


def test_cli_and_bad_file(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "isaprof.papers"]
    res = subprocess.run([*run, "sizes"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0 and res.stdout.split() == ["97x97", "128x128"]
    res = subprocess.run([*run, "bogus"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 2 and "usage" in res.stderr
    (tmp_path / "p.toml").write_text("[feature_map]\nchannels = 1\n")
    with pytest.raises(ValueError, match="missing the table"):
        papers.load(tmp_path / "p.toml")
