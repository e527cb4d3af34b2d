"""Refuse what cannot fit before trying it, one line for every bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from isaprof.cli import main
from isaprof.profiling import guard
from isaprof.results.reader import read_rows
from tests import REPO

ROOT = REPO
SPEC = """
[[grid]]
name = "big"
blocks = ["dense"]
sizes = ["512x512"]
channels = [16]
impls = ["naive"]
devices = ["cpu"]
modes = ["inference"]
"""


def results_dir(tmp_path: Path, spec: str = SPEC) -> tuple[str, Path]:
    """A spec file and a result directory whose machine.json already has this host (no matmul peak)."""
    (tmp_path / "spec.toml").write_text(spec)
    out = tmp_path / "out"
    out.mkdir()
    roofs = {"peak_gflops": 1.0, "matmul_gflops": 1.0, "bandwidth_gbs": 1.0}  # this branch's and main's keys
    machine = {"machines": [{"host": socket.gethostname(), "device": "cpu", **roofs}]}
    (out / "machine.json").write_text(json.dumps({"peak_gflops": {"cpu": 1.0}, **machine}))
    return str(tmp_path / "spec.toml"), out


def test_profile_refuses_a_peak_that_cannot_fit(capsys):
    # dense at 512x512: the N x N = 262144^2 fp32 attention matrix alone is 256 GiB (2^38 bytes)
    assert main(["profile", "dense", "--size", "512x512", "--channels", "16", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "predicted peak 512.0 GiB does not fit in the" in err
    assert "GiB available on cpu" in err and "--force" in err


def test_force_overrides_the_refusal(capsys, monkeypatch):
    monkeypatch.setattr(guard, "available_bytes", lambda device: 1024)  # a machine with 1 KiB free
    argv = ["profile", "dense", "--size", "4x4", "--channels", "8", "--device", "cpu", "--latency", "none"]
    assert main(argv) == 2
    assert "does not fit in the 0.0 GiB available on cpu" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert "peak_bytes" in capsys.readouterr().out


def test_sweep_records_predicted_oom_without_running(tmp_path, capsys):
    spec, out = results_dir(tmp_path)
    assert main(["sweep", spec, "--out", str(out), "--workers", "1", "--no-progress"]) == 1
    rows = read_rows(out)
    assert {r["status"] for r in rows} == {"oom"}
    assert all(r["error"].startswith("not run: predicted peak 512.0 GiB") for r in rows)
    assert {r["metric"] for r in rows} >= {"macs", "peak_bytes"} and all(r["measured"] == "" for r in rows)


@pytest.mark.slow
def test_size_too_large_to_address_is_one_line():
    cmd = [sys.executable, "-m", "isaprof", "profile", "dense", "--size", "50000x50000", "--channels", "16"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "isaprof profile: error: size 50000x50000: its tensors are too large for torch to address "
        "(Storage size calculation overflowed with sizes=[1, 2500000000, 2500000000])"
    ]


def test_factor_larger_than_the_map_is_said(capsys):
    assert main(["profile", "isa", "--size", "8x8", "--channels", "8", "--factor", "100x100"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: computed on 100x100, 156 times the positions of the 8x8 input" in out


def test_fast_path_on_meta_prints_no_fake_tensor_warning(capsys, recwarn):
    assert main(["profile", "dense", "--size", "8x8", "--channels", "8", "--path", "fast"]) == 0
    assert not [w for w in recwarn if "data pointer" in str(w.message)]
    assert "peak_bytes" in capsys.readouterr().out


def test_forced_run_that_runs_out_of_memory_is_one_line(capsys, monkeypatch):
    def no_room(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 274877906944 bytes"
        )

    monkeypatch.setattr("isaprof.profiling.profiler.profile", no_room)
    argv = ["profile", "dense", "--size", "4x4", "--channels", "8", "--device", "cpu", "--force"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "isaprof profile: error: out of memory: DefaultCPUAllocator: can't allocate memory: "
        "you tried to allocate 274877906944 bytes"
    ]
