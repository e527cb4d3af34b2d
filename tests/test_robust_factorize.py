"""factorize and check say what they do (issue 13): analytic-only measures nothing, progress bar on
stderr, noisy latencies flagged, readable numbers, no ``None``."""

from __future__ import annotations

import sys

from isaprof.cli import main


class FakeProfile:
    """Stands in for isaprof.profile.profile: macs on meta; on cpu a latency, noisy for factor 1x1."""

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
    monkeypatch.setattr(sys.modules["isaprof.profile"], "profile", fake)
    assert main(["factorize", "--size", "97x97", "--metric", "latency", "--analytic-only"]) == 2
    assert "cannot go with analytic-only" in capsys.readouterr().err and fake.devices == []
    assert main(["factorize", "--size", "6x4", "--channels", "8", "--analytic-only"]) == 0
    out = capsys.readouterr().out
    assert fake.devices == [] and "None" not in out
    assert "best by macs: analytic 1x4, measured: not run (--analytic-only)" in out
    assert "12.480kMAC " in out and "KiB" in out  # readable: 12480 MAC for 1x1 at 6x4, C = 8 (formula)


def test_latency_noise_flagged_and_progress_on_stderr(capsys, monkeypatch):
    fake = FakeProfile()
    monkeypatch.setattr(sys.modules["isaprof.profile"], "profile", fake)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["factorize", "--size", "2x2", "--channels", "8", "--metric", "latency"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[1].split()[0] == "1x1" and "2.000ms~" in lines[1]  # 1x1: noisy
    assert "~" not in lines[2]
    assert "WARNING: 1 of 4 latencies are noisy" in captured.out
    assert "factors (meta, cpu timing)" in captured.err and "4/4" in captured.err  # tqdm, on stderr
    assert sorted(set(fake.devices)) == ["cpu", "meta"]
