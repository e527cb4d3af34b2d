"""Nothing lost, nothing silent: one reader of results.csv for sweep and report, claims so
that concurrent runs share the work, exit status of a sweep with failures, devices skipped."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from isaprof.cli import main
from isaprof.report import data
from isaprof.results.reader import read_rows, read_table, statuses
from tests import REPO

ROOT = REPO
SPEC = """
[[grid]]
name = "two"
blocks = ["dense"]
sizes = ["4x4"]
channels = [8]
impls = ["naive"]
devices = ["meta"]
modes = ["inference", "train"]
"""


# rows per configuration on meta: params, macs, flops, elementwise, peak_bytes, bytes_moved
M = 6


def results_dir(tmp_path: Path, spec: str = SPEC) -> tuple[str, Path]:
    """A spec file and a result directory whose machine.json already has this host (no matmul peak)."""
    (tmp_path / "spec.toml").write_text(spec)
    out = tmp_path / "out"
    out.mkdir()
    roofs = {"peak_gflops": 1.0, "matmul_gflops": 1.0, "bandwidth_gbs": 1.0}  # this branch's and main's keys
    machine = {
        "peak_gflops": {"cpu": 1.0},
        "machines": [{"host": socket.gethostname(), "device": "cpu", **roofs}],
    }
    (out / "machine.json").write_text(json.dumps(machine))
    return str(tmp_path / "spec.toml"), out


def sweep(spec: str, out: Path, *extra: str) -> int:
    return main(["sweep", spec, "--out", str(out), "--workers", "1", "--no-progress", *extra])


def test_cut_row_is_remeasured_and_report_agrees(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    assert sweep(spec, out) == 0
    csv = out / "results.csv"
    text = csv.read_text()
    lines = text.splitlines(keepends=True)
    assert len(lines) == 1 + 2 * M
    csv.write_text(text[: len(text) - len(lines[-1]) // 2])  # the last row cut mid-way by a crash
    capsys.readouterr()
    with pytest.warns(UserWarning, match=rf"results\.csv:{1 + 2 * M}: skipped a malformed row"):
        assert len(statuses(out)) == 1  # the cut configuration counts as not measured
    with pytest.warns(UserWarning, match=rf"{csv}:{1 + 2 * M}: skipped a malformed row"):
        assert sweep(spec, out) == 0
    captured = capsys.readouterr()
    assert "1 measured" in captured.out and "1 already in the store" in captured.out
    # sweep and report read the same rows: 2 M, all ok, the cut one not among them
    rows = read_rows(out)
    df = data.read_results(csv)
    assert len(rows) == len(df) == 2 * M and set(df["status"]) == {"ok"}
    assert sorted(df["analytic"].dropna().astype(int).astype(str)) == sorted(r["analytic"] for r in rows
                                                                              if r["analytic"])  # fmt: skip


def test_retried_failure_is_ok_in_the_report(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    assert sweep(spec, out) == 0
    csv = out / "results.csv"
    lines = csv.read_text().splitlines(keepends=True)
    # an earlier oom attempt of the first configuration, then its ok attempt (as after --retry-failed)
    oom = [line.replace(",ok,", ",oom,") for line in lines[1:6]]
    csv.write_text(lines[0] + "".join(oom) + "".join(lines[1:]))
    df = data.read_results(csv)
    assert len(df) == 2 * M and set(df["status"]) == {"ok"}  # the last attempt wins, as for the sweep
    assert set(statuses(out).values()) == {"ok"}


def test_garbage_and_bad_bytes_warn_with_file_and_line(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    assert sweep(spec, out) == 0
    csv = out / "results.csv"
    with csv.open("ab") as f:
        f.write(b"this is not a row\n")
        f.write(b"dense,1,8,\xc2\xff,8\n")
    cmd = [sys.executable, "-m", "isaprof", "report", str(out), "--out", str(tmp_path / "rep")]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"isaprof: warning: {csv}:{2 * M + 2}: skipped a malformed row (1 fields" in done.stderr
    assert f"isaprof: warning: {csv}:{2 * M + 3}: skipped a malformed row" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 2
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipped a malformed row"):
        assert sweep(spec, out) == 0  # the configurations are still measured: nothing re-run
    assert "2 already in the store" in capsys.readouterr().out


def test_corrupt_header_names_file_and_line(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    (out / "results.csv").write_bytes(b"\xc2\x00garbage\n1,2\n")
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'results.csv'}:1: not a results table" in err and len(err.splitlines()) == 1
    assert sweep(spec, out) == 2
    assert f"{out / 'results.csv'}:1: not a results table" in capsys.readouterr().err


def test_sweep_with_failures_exits_nonzero_skipped_device_does_not(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec, out = results_dir(tmp_path, SPEC.replace('"meta"]', '"meta", "cuda"]\nskip_if_unavailable = true'))
    assert sweep(spec, out) == 0  # cuda absent: skipped and recorded, not a failure
    assert "2 skipped (device unavailable)" in capsys.readouterr().out
    assert {(r["device"], r["status"]) for r in read_rows(out)} == {("meta", "ok"), ("cuda", "skipped")}
    (tmp_path / "b").mkdir()
    spec2, out2 = results_dir(tmp_path / "b", SPEC.replace('"meta"]', '"cuda"]'))  # demanded, absent
    code = sweep(spec2, out2)
    printed = capsys.readouterr().out
    assert "2 failed" in printed and code == 1
    assert {r["status"] for r in read_rows(out2)} == {"error"}  # still recorded


@pytest.mark.parametrize(
    "argv, says",
    [
        (["profile", "dense", "--size", "-3x4", "--channels", "8"], "size must be positive in both"),
        (["sweep", "SPEC", "--out", "OUT", "--shard", "-1/2"], "shard must look like K/N with 1 <= K <= N"),
        (["sweep", "SPEC", "--out", "OUT/x.csv"], "--out is a directory (results.csv goes inside it)"),
        (["sweep", "SPEC", "--out", "OUT", "--jobs", "3"], "here use --workers 3"),
    ],
)
def test_bad_values_say_what_is_wrong(tmp_path, capsys, argv, says):
    spec, out = results_dir(tmp_path)
    argv = [a.replace("SPEC", spec).replace("OUT", str(out)) for a in argv]
    with pytest.raises(SystemExit) if argv[0] == "profile" else _nothing():
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.splitlines()) == 1 and "expected one argument" not in err
    assert not (out / "x.csv").exists() and not (out / "results.csv").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_reread_parses_appends_and_notices_rewrites(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    assert sweep(spec, out) == 0
    csv = out / "results.csv"
    full = csv.read_bytes()
    lines = full.splitlines(keepends=True)
    first = 1 + M  # the header and the first configuration's rows
    csv.write_bytes(b"".join(lines[:first]) + lines[first][:40])  # then a cut row
    with pytest.warns(UserWarning, match=rf"results\.csv:{first + 1}: skipped a malformed row \(\d+ fields"):
        assert len(read_table(out).rows) == M
    with csv.open("ab") as f:  # the crashed write's line ended, then a whole configuration appended
        f.write(b"\n" + b"".join(lines[first:]))
    table = read_table(out, warn=False)  # incremental: from the cached offset on
    assert len(table.rows) == 2 * M and table.lines[-1] == 2 * M + 2 and len(table.problems) == 1
    assert len(statuses(out)) == 2
    csv.write_bytes(b"".join(lines[:1] + lines[first:]))  # rewritten in place (same inode): parsed afresh
    fresh = read_table(out, warn=False)
    assert len(fresh.rows) == M and fresh.problems == [] and fresh.lines == list(range(2, M + 2))


def test_corrupt_machine_json_names_file_and_line(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    (out / "machine.json").write_text('{"peak_gflops": {},\n garbage')
    assert sweep(spec, out) == 2
    err = capsys.readouterr().err
    assert f"{out / 'machine.json'}:2: not valid JSON" in err and len(err.splitlines()) == 1


def test_the_reader_imports_no_torch_and_no_isaprof():
    import ast

    import isaprof.results.reader

    tree = ast.parse(Path(isaprof.results.reader.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not {m for m in names if m.split(".")[0] in ("torch", "isaprof", "numpy", "pandas")}, names
    from isaprof.report import data as report_data
    from isaprof.results import store

    assert (
        store.read_table is isaprof.results.reader.read_table
        and report_data.results is isaprof.results.reader
    )
