"""``isaprof sweep`` and ``isaprof factorize`` command lines (parsing, listing, errors; no measuring)."""

from __future__ import annotations

import json

from isaprof.cli import main
from isaprof.studies.sweep import load_configs, shard
from tests import REPO

TINY = str(REPO / "reference" / "sweeps" / "tiny.toml")


def test_dry_run_lists_configurations(tmp_path, capsys):
    assert main(["sweep", TINY, "--out", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    cfgs = load_configs(TINY)
    assert lines[-1] == f"{len(cfgs)} configurations"
    assert lines[:-1] == [f"{c.grid}: {c.label()}" for c in cfgs]
    assert not (tmp_path / "results.csv").exists()  # nothing measured


def test_dry_run_overrides_and_shard(tmp_path, capsys):
    args = ["sweep", TINY, "--out", str(tmp_path), "--dry-run", "--blocks", "isa,dense", "--modes", "train"]
    assert main([*args, "--shard", "2/3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    kept = [c for c in load_configs(TINY) if c.block in ("isa", "dense") and c.mode == "train"]
    assert lines[-1] == f"{len(shard(kept, 2, 3))} configurations (shard 2/3 of {len(kept)})"
    assert lines[:-1] == [f"{c.grid}: {c.label()}" for c in shard(kept, 2, 3)]


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["sweep", TINY, "--out", str(tmp_path), "--blocks", "linear", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert (
        "--blocks linear: not in the sweep (it has dense, isa, criss_cross)" in err and "Traceback" not in err
    )
    assert main(["sweep", TINY, "--out", str(tmp_path), "--shard", "3/2"]) == 2
    assert "K/N with 1 <= K <= N" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "nope.toml"), "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_factorize_json(capsys):
    assert main(["factorize", "--size", "6x4", "--channels", "8", "--analytic-only", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    macs = {f["factor"]: f["macs"] for f in doc["factors"]}
    assert list(macs) == ["1x1", "1x2", "1x4", "2x1", "2x2", "2x4", "3x1", "3x2", "3x4", "6x1", "6x2", "6x4"]
    assert macs[doc["best"]] == min(macs.values()) and doc["measured_best"] is None


def test_factorize_table(capsys):
    assert main(["factorize", "--size", "5", "--channels", "8", "--analytic-only", "--metric", "macs"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["factor", "groups", "padded", "macs", "measured_macs", "peak_bytes",
                              "measured_peak_bytes", "latency_ms", "best"]  # fmt: skip
    assert len(out) == 1 + 4 * 4 + 1  # 5: P in 1, 2, 3, 5
    assert sum(line.rstrip().endswith("*") for line in out[1:-1]) == 1
