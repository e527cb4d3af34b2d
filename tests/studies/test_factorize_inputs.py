"""factorize, check and reproduce say what they do: analytic-only measures nothing,
progress bars on stderr, noisy latencies flagged, readable numbers, no ``None``."""

from __future__ import annotations

import sys

from isaprof.cli import main


class FakeProfile:
    """Stands in for isaprof.profile: macs on meta; on cpu a latency, noisy for factor 1x1."""

    def __init__(self):
        self.devices = []

    def __call__(self, name, *, size, device, latency, factor, **kw):
        self.devices.append(device)
        rows = [{"metric": "macs", "measured": 1000 * factor[0] + factor[1], "status": "ok"}]
        if device == "cpu":
            iqr = 5.0 if factor == (1, 1) else 0.01  # 1x1: IQR 5 ms on a 1 ms median: noise
            rows.append({"metric": "latency_ms", "measured": 1.0 + factor[0], "spread": iqr, "status": "ok"})
        return type("R", (), {"rows": lambda self: rows})()


def test_analytic_only_measures_nothing(capsys, monkeypatch):
    fake = FakeProfile()
    monkeypatch.setattr("isaprof.profiling.profiler.profile", fake)
    assert main(["factorize", "--size", "97x97", "--metric", "latency", "--analytic-only"]) == 2
    assert "cannot go with analytic-only" in capsys.readouterr().err and fake.devices == []
    assert main(["factorize", "--size", "6x4", "--channels", "8", "--analytic-only"]) == 0
    out = capsys.readouterr().out
    assert fake.devices == [] and "None" not in out
    assert "best by macs: analytic 1x4, measured: not run (--analytic-only)" in out
    assert "12.48kMAC " in out and "KiB" in out  # readable: 12480 MAC for 1x1 at 6x4, C = 8 (formula)


def test_latency_noise_flagged_and_progress_on_stderr(capsys, monkeypatch):
    fake = FakeProfile()
    monkeypatch.setattr("isaprof.profiling.profiler.profile", fake)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["factorize", "--size", "2x2", "--channels", "8", "--metric", "latency"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].split()[0] == "1x1" and "2.000ms~" in lines[1]  # 1x1: noisy
    assert "~" not in lines[2]
    assert "WARNING: 1 of 4 latencies are noisy" in captured.out
    assert "factors (meta, cpu timing)" in captured.err and "4/4" in captured.err  # tqdm, on stderr
    assert sorted(set(fake.devices)) == ["cpu", "meta"]


def test_check_shows_a_progress_bar_on_stderr(capsys, monkeypatch):
    import isaprof.studies.check

    grid = [{"name": "dense", "size": (4, 4), "channels": 8}] * 3
    monkeypatch.setattr(isaprof.studies.check, "default_grid", lambda quick=False: grid)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["check", "--quick"]) == 0
    captured = capsys.readouterr()
    assert "check (meta)" in captured.err and "3/3" in captured.err
    assert captured.out.strip() == "0 disagreement(s) over 3 configurations"


def test_reproduce_prints_its_summary(tmp_path, capsys):
    assert main(["reproduce", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    import csv

    with (tmp_path / "reproduction.csv").open() as f:
        rows = list(csv.DictReader(f))
    matched = sum(abs(float(r["ratio"]) - 1) <= 0.01 for r in rows)
    assert out[0] == f"{len(rows)} published figures: {matched} match within 1%, {len(rows) - matched} do not"
    assert len(out) == 1 + (len(rows) - matched) + 1 and out[-1] == f"table: {tmp_path / 'reproduction.csv'}"
    assert any(line.startswith("  ccnet-nl-memory: ours ") and "(ratio 0.497)" in line for line in out)
