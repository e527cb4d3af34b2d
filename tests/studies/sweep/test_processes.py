"""Real processes: two concurrent sweeps share the work; workers die with their parent.

Each test starts isaprof sweeps as subprocesses on a small meta grid and bounds every wait.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from isaprof.results.reader import read_table, row_key
from tests import REPO

ROOT = REPO
SPEC = """
[[grid]]
name = "small"
blocks = ["dense", "isa", "criss_cross"]
sizes = ["9x7", "12x10"]
channels = [16]
factors = ["2x2", "4x4"]
recurrences = [1]
impls = ["naive"]
devices = ["meta"]
modes = ["inference", "train"]
"""
N_CONFIGS = 16  # (dense 1 + isa 2 + criss_cross 1) x 2 sizes x 2 modes


M = 6  # rows per configuration on meta: params, macs, flops, elementwise, peak_bytes, bytes_moved


def prepare(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "spec.toml").write_text(SPEC)
    out = tmp_path / "out"
    out.mkdir()
    roofs = {"peak_gflops": 1.0, "matmul_gflops": 1.0, "bandwidth_gbs": 1.0}  # this branch's and main's keys
    machine = {
        "peak_gflops": {"cpu": 1.0},
        "machines": [{"host": socket.gethostname(), "device": "cpu", **roofs}],
    }
    (out / "machine.json").write_text(json.dumps(machine))  # no matmul peak: the test measures the store
    return tmp_path / "spec.toml", out


def start(spec: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "isaprof", "sweep", str(spec), "--out", str(out), "--no-progress", *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(d.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


@pytest.mark.slow
def test_two_concurrent_sweeps_share_the_work(tmp_path):
    spec, out = prepare(tmp_path)
    runs = [start(spec, out, "--workers", "1") for _ in range(2)]
    for p in runs:
        p.wait(timeout=240)
    outs = [p.communicate()[0] for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outs
    table = read_table(out)
    keys = Counter(row_key(r) for r in table.rows if r["metric"] == "macs")
    assert table.problems == [] and len(keys) == N_CONFIGS
    assert max(keys.values()) == 1  # no configuration measured twice
    assert len(table.rows) == M * N_CONFIGS
    measured = sum(int(o.split(" measured")[0].rsplit(" ", 1)[1]) for o in outs)
    assert measured == N_CONFIGS, outs
    assert not (out / "results.claims").exists()  # every claim released


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_workers_die_with_the_sweep(tmp_path, sig):
    spec, out = prepare(tmp_path)
    main = start(spec, out, "--workers", "2")
    csv = out / "results.csv"
    try:
        assert wait_for(lambda: csv.exists() and csv.read_text().count("\n") > 1, 120), "no row written"
        workers = [c for c in children(main.pid) if "spawn" in Path(f"/proc/{c}/cmdline").read_text()]
        assert workers, "no worker processes"
        os.kill(main.pid, sig)
        main.wait(timeout=30)
        assert wait_for(lambda: not any(alive(w) for w in workers), 15), "workers outlived the sweep"
    finally:
        if main.poll() is None:
            main.kill()
    if sig == signal.SIGINT:
        assert main.returncode == 130
    rows = csv.read_text()
    time.sleep(1.0)
    assert csv.read_text() == rows  # nobody writes any more
    table = read_table(out, warn=False)
    keys = Counter(row_key(r) for r in table.rows if r["metric"] == "macs")
    assert table.problems == [] and max(keys.values()) == 1 and len(table.rows) == M * len(keys)
    assert len(keys) < N_CONFIGS  # interrupted mid-way
