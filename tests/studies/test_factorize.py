"""ISA factorizations: which factors are listed, and that the named optimum is the listed minimum."""

from __future__ import annotations

import math
import sys

import pytest

from isaprof.cli import main
from isaprof.studies.factorize import candidate_factors, factorize, padding_minimal


def test_padding_minimal_values():
    # 8: P=3 gives Q=3 (padded 9); P=5,6,7 give Q=2 like P=4, which does not pad: left out
    assert padding_minimal(8) == [1, 2, 3, 4, 8]
    # 97 (prime): ceil(97/q) for q = 1..97, 19 distinct values
    assert padding_minimal(97) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 17, 20, 25, 33, 49, 97]
    with pytest.raises(ValueError, match="positive integer"):
        padding_minimal(0)


@pytest.mark.parametrize("n", [1, 7, 12, 64, 97])
def test_padding_minimal_is_one_minimal_p_per_group_count(n):
    listed = padding_minimal(n)
    qs = [math.ceil(n / p) for p in listed]
    assert len(set(qs)) == len(qs)  # one P per Q
    for p in range(1, n + 1):  # every P has a listed P0 <= P with the same Q
        assert any(p0 <= p and math.ceil(n / p0) == math.ceil(n / p) for p0 in listed)
    assert {d for d in range(1, n + 1) if n % d == 0} <= set(listed)  # divisors (no padding) all listed


def test_every_factor_appears_once():
    rows = factorize((13, 7), channels=16, measure=False)
    factors = [r.factor for r in rows]
    assert (
        factors == candidate_factors((13, 7)) and len(set(factors)) == len(factors) == 7 * 5
    )  # 13: 1,2,3,4,5,7,13; 7: 1,2,3,4,7
    for r in rows:  # groups and padded size as in isaprof.targets.blocks.isa
        assert r.groups == (math.ceil(13 / r.factor[0]), math.ceil(7 / r.factor[1]))
        assert r.padded == (r.groups[0] * r.factor[0], r.groups[1] * r.factor[1])


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_best_is_the_minimum_and_the_omitted_factors_are_dominated(mode):
    full = factorize((13, 7), channels=16, mode=mode, measure=False, full=True)
    assert len(full) == 13 * 7
    rows = factorize((13, 7), channels=16, mode=mode, measure=False)
    [best] = [r for r in rows if r.best]
    assert best.macs == min(r.macs for r in rows)
    assert best == next(r for r in rows if r.macs == best.macs)  # ties: first listed
    # the padding-minimal listing loses nothing: each omitted factor costs more than the listed one
    listed = {r.groups: r for r in rows}
    for r in full:
        assert r.macs >= listed[r.groups].macs
        assert r.factor == listed[r.groups].factor or r.macs > listed[r.groups].macs


class FakeProfile:
    """Measured MACs = analytic + a factor-dependent offset, so the measured best differs."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, *, size, device, latency, factor, **kw):
        self.calls.append((name, device, factor))
        rows = [{"metric": "macs", "measured": 10**9 - 1000 * factor[0] - factor[1], "status": "ok"}]
        if device == "cpu":
            rows.append({"metric": "latency_ms", "measured": float(factor[0] * factor[1]), "status": "ok"})
        return type("R", (), {"rows": lambda self: rows})()


def test_measured_best_and_latency_metric():
    fake = FakeProfile()
    rows = factorize((6, 4), channels=8, profile_fn=fake)
    assert len(fake.calls) == len(rows) and {c[1] for c in fake.calls} == {"meta"}
    [mbest] = [r for r in rows if r.measured_best]
    assert mbest.factor == (6, 4) == max(r.factor for r in rows)  # largest 1000 P_h + P_w
    assert mbest.measured_macs == min(r.measured_macs for r in rows)
    fake = FakeProfile()
    rows = factorize((6, 4), channels=8, metric="latency", profile_fn=fake)
    assert {c[1] for c in fake.calls} == {"meta", "cpu"}
    assert not any(r.best for r in rows)  # no closed form for latency
    assert [r.factor for r in rows if r.measured_best] == [(1, 1)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="metric must be one of macs, peak_bytes, latency"):
        factorize((8, 8), metric="flops", measure=False)
    with pytest.raises(ValueError, match="isa option.* factor not allowed"):
        factorize((8, 8), factor=(2, 2), measure=False)
    with pytest.raises(ValueError, match="channels must be a positive integer"):
        factorize((8, 8), channels=0, measure=False)


# ---- the command: analytic-only measures nothing, noisy latencies flagged, progress on stderr ----


class NoisyProfile:
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
    fake = NoisyProfile()
    monkeypatch.setattr("isaprof.profiling.profiler.profile", fake)
    assert main(["factorize", "--size", "97x97", "--metric", "latency", "--analytic-only"]) == 2
    assert "cannot go with analytic-only" in capsys.readouterr().err and fake.devices == []
    assert main(["factorize", "--size", "6x4", "--channels", "8", "--analytic-only"]) == 0
    out = capsys.readouterr().out
    assert fake.devices == [] and "None" not in out
    assert "best by macs: analytic 1x4, measured: not run (--analytic-only)" in out
    assert "12.48kMAC " in out and "KiB" in out  # readable: 12480 MAC for 1x1 at 6x4, C = 8 (formula)


def test_latency_noise_flagged_and_progress_on_stderr(capsys, monkeypatch):
    fake = NoisyProfile()
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
