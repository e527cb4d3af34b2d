"""The benchmark suite collects and runs in CI quick mode, and the ratio gate reads its output.

The suite itself lives in ``benchmarks/`` (not collected by the default ``pytest`` run); here one
block at one size runs through a subprocess with the quick flags of ``make bench-quick``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import REPO

ROOT = REPO
sys.path.insert(0, str(ROOT / "benchmarks"))
import ratios  # noqa: E402  benchmarks/ratios.py is a script, not a package module

QUICK = ["--benchmark-min-rounds=1", "--benchmark-max-time=0", "--benchmark-warmup=off"]


def _pytest(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # -n 0 and no xdist worker variables: one process, as `make bench-quick` runs it (pytest-benchmark turns
    # itself off under xdist, and tells a worker by PYTEST_XDIST_WORKER, inherited from this test's worker)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_quick_mode_collects_everything_runs_and_records_costs(tmp_path: Path) -> None:
    from isaprof.targets import names, spec

    out = tmp_path / "run.json"
    done = _pytest(
        str(ROOT / "benchmarks"), *QUICK, f"--benchmark-json={out}", "-k", "cpu and dense-naive-32x32"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # every block x impl x 2 sizes x {forward, train} x {cpu, cuda} collected; 2 of them selected
    total = sum(len(spec(b).impls) for b in names()) * 2 * 2 * 2
    assert f"2 passed, {total - 2} deselected" in done.stdout.splitlines()[-1]
    run = json.loads(out.read_text())
    by_mode = {b["extra_info"]["mode"]: b for b in run["benchmarks"]}
    assert set(by_mode) == {"inference", "train"}
    for mode, b in by_mode.items():
        info = b["extra_info"]
        assert b["group"] == f"cpu {mode} 32x32 C64"
        assert (info["block"], info["impl"], info["height"], info["channels"]) == ("dense", "naive", 32, 64)
        assert "cost_error" not in info, info["cost_error"]
        assert info["flops"] == 2 * info["macs"] > 0 and info["peak_bytes_meta"] > 0
        assert b["stats"]["rounds"] >= 1 and b["stats"]["median"] > 0
    assert by_mode["train"]["extra_info"]["macs"] > 2 * by_mode["inference"]["extra_info"]["macs"]


# ---- the ratio gate on synthetic pytest-benchmark runs ----


def _run(medians: dict[tuple[str, str], float], iqr: float = 0.0) -> dict[str, Any]:
    """A pytest-benchmark JSON dict: one group, benchmarks named by (block, impl), medians in s."""
    benches = [
        {
            "name": f"test_forward[cpu-{b}-{i}-32x32-C64]",
            "group": "cpu inference 32x32 C64",
            "extra_info": {"block": b, "impl": i},
            "stats": {"median": m, "iqr": iqr * m},
        }
        for (b, i), m in medians.items()
    ]
    return {"benchmarks": benches}


BASE = {("dense", "naive"): 0.010, ("isa", "naive"): 0.004, ("axial", "naive"): 0.002}


def _gate(tmp_path: Path, new: dict[str, Any], old: dict[str, Any], *extra: str) -> int:
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    return ratios.main([str(tmp_path / "new.json"), str(tmp_path / "old.json"), *extra])


def test_ratio_gate_fails_when_one_block_gets_slower(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slower = dict(BASE) | {("isa", "naive"): 0.006}  # ISA / dense: 0.4 -> 0.6, +50 %
    assert _gate(tmp_path, _run(slower), _run(BASE)) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "isa/naive" in ln)
    assert "0.400" in line and "0.600" in line and "+50.0%" in line and "REGRESSED" in line
    assert "1 regression(s) in 2 compared" in out  # dense itself is the reference, not a ratio


def test_ratio_gate_passes_uniform_slowdown_and_noise_within_spread(tmp_path: Path) -> None:
    everything_2x = {k: 2 * v for k, v in BASE.items()}  # a slower machine: ratios unchanged
    assert _gate(tmp_path, _run(everything_2x), _run(BASE)) == 0
    slightly = dict(BASE) | {("isa", "naive"): 0.0048}  # +20 %: under the 25 % threshold
    assert _gate(tmp_path, _run(slightly), _run(BASE)) == 0
    assert _gate(tmp_path, _run(slightly), _run(BASE), "--threshold", "0.1") == 1
    # +40 % but each median spreads 15 % (IQR / median): 4 x 15 % = 60 % > 40 %, not evidence
    noisy = dict(BASE) | {("isa", "naive"): 0.0056}
    assert _gate(tmp_path, _run(noisy, iqr=0.15), _run(BASE, iqr=0.15)) == 0


def test_ratio_gate_ignores_medians_under_the_floor(tmp_path: Path) -> None:
    tiny = {k: v / 1000 for k, v in BASE.items()}  # 2-10 us: Python overhead, not the block
    slower = dict(tiny) | {("isa", "naive"): 2 * tiny[("isa", "naive")]}
    assert _gate(tmp_path, _run(slower), _run(tiny)) == 0


def test_ratio_gate_default_compares_the_two_newest_saved_runs(tmp_path: Path) -> None:
    storage = tmp_path / ".benchmarks" / "Linux-CPython-3.11-64bit"
    storage.mkdir(parents=True)
    (storage / "0001_a.json").write_text(json.dumps(_run(BASE)))
    (storage / "0002_b.json").write_text(json.dumps(_run(BASE)))
    assert ratios.main(["--storage", str(tmp_path / ".benchmarks")]) == 0
    worse = copy.deepcopy(_run(BASE))
    worse["benchmarks"][2]["stats"]["median"] *= 2  # axial 2x
    (storage / "0003_c.json").write_text(json.dumps(worse))
    assert ratios.main(["--storage", str(tmp_path / ".benchmarks")]) == 1


def test_ratio_gate_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text('{"foo": 1}')
    with pytest.raises(SystemExit) as e:
        ratios.main([str(tmp_path / "x.json"), str(tmp_path / "x.json")])
    assert e.value.code == 2 and "not a pytest-benchmark JSON file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ratios.main(["--storage", str(tmp_path / "empty")])
    assert "run `make bench` first" in capsys.readouterr().err
