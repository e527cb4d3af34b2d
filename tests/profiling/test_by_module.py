"""``isaprof profile --by-module`` and ``Record.by_module`` / ``module_rows()``."""

import json

import pytest

from isaprof.cli import main
from isaprof.profiling.profiler import profile


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_record_breakdown_sums_to_its_totals(mode: str) -> None:
    rec = profile("isa", size=(8, 8), channels=16, mode=mode, factor=(2, 2), by_module=True)
    assert rec.by_module is not None and rec.by_module[0].module == ""
    assert sum(r.self_macs for r in rec.by_module) == rec.macs == rec.macs_analytic
    assert sum(r.peak_bytes for r in rec.by_module) == rec.peak_bytes == rec.peak_bytes_analytic
    assert rec.by_module[0].params == rec.params
    rows = rec.module_rows()
    assert len(rows) == 4 * len(rec.by_module)
    macs = {r["module"]: r["measured"] for r in rows if r["metric"] == "macs"}
    assert macs[""] == rec.macs and {r["unit"] for r in rows} == {"count", "MAC", "byte"}
    assert all(r["block"] == "isa" and r["mode"] == mode for r in rows)


def test_no_breakdown_unless_asked() -> None:
    rec = profile("dense", size=(4, 4), channels=8)
    assert rec.by_module is None and rec.module_rows() == [] and "by_module" not in rec.to_json()


def test_cli_by_module_json_and_table(capsys) -> None:
    argv = ["profile", "dense", "--size", "6x6", "--channels", "8", "--mode", "train", "--by-module"]
    assert main([*argv, "--json"]) == 0
    out, err = capsys.readouterr()
    obj = json.loads(out)
    entries = obj["by_module"]
    assert entries[0] == {**entries[0], "module": "", "depth": 0}
    assert set(entries[0]) == {"module", "depth", "params", "macs", "self_macs", "peak_bytes"}
    assert sum(e["self_macs"] for e in entries) == obj["macs"]["measured"]
    assert sum(e["peak_bytes"] for e in entries) == obj["peak_bytes"]["measured"]
    assert err == ""  # nothing uncounted: no warning
    assert main(argv) == 0
    out, _ = capsys.readouterr()
    assert "self MACs" in out and "(root)" in out and out.splitlines()[-1].startswith("total")


def test_uncounted_warning_line_names_ops_and_calls() -> None:
    from isaprof.cli.profile_cmd import uncounted_line

    line = uncounted_line({"aten.linalg_inv": 2, "mylib.fused": 1})
    assert "aten.linalg_inv x2" in line and "mylib.fused x1" in line and "\n" not in line
