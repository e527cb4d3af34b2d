"""measure.latency and measure.env: result fields are sane (never a latency value assertion)."""

import dataclasses
import math

import pytest
import torch

from isaprof.measure import environment, measure_latency
from isaprof.measure.latency import (
    MIN_SAMPLES,
    NOISY_IQR_RATIO,
    Latency,
    Ratio,
    compare_latency,
    contended,
    median_iqr,
)


def test_quick_latency_fields():
    x = torch.randn(16, 16)
    calls = []
    lat = measure_latency(lambda: calls.append(x @ x), protocol="quick")
    assert lat.runs >= 1 and lat.warmup == 2 and len(calls) >= lat.runs + lat.warmup
    assert lat.median_ms > 0 and lat.iqr_ms >= 0
    assert lat.threads == torch.get_num_threads() and lat.device == "cpu" and lat.protocol == "quick"
    assert isinstance(lat.noisy, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lat.median_ms = 0.0


def test_fixed_protocol_runs_exactly():
    calls = []
    lat = measure_latency(lambda: calls.append(1), protocol="fixed")
    assert (lat.warmup, lat.runs, len(calls)) == (10, 100, 110)


def test_median_iqr_and_noisy_flag():
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)
    assert median_iqr([2.0]) == (2.0, 0.0)
    assert Latency(10.0, 2.0, 5, 1, 1, "cpu", "quick").noisy
    assert not Latency(10.0, 0.5, 5, 1, 1, "cpu", "quick").noisy


def test_bad_protocol():
    with pytest.raises(ValueError, match="allowed: fixed, quick"):
        measure_latency(lambda: None, protocol="slow")


def test_environment_keys():
    env = environment("cpu")
    assert list(env)[:6] == ["torch", "isaprof", "device_name", "threads", "host", "machine"]
    assert env["torch"] == torch.__version__ and env["device_name"]
    assert environment("meta")["device_name"] == "meta"


# -- the protocol with an injected clock (seconds of a fake time line) and probe; no real latency ----------
class FakeClock:
    """A clock that only moves when a fake callable "runs": ``work(s)`` advances it by ``s`` x the current
    slowdown (a load that hits whatever runs at the time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slowdown = 1.0

    def __call__(self) -> float:
        return self.now

    def work(self, seconds: float):
        def fn() -> None:
            self.now += seconds * self.slowdown

        return fn


@pytest.mark.parametrize("call_s", [1e-6, 0.01, 0.5, 30.0])
@pytest.mark.parametrize("protocol", ["quick", "fixed"])
def test_never_fewer_than_seven_samples(call_s, protocol):
    clock = FakeClock()
    lat = measure_latency(clock.work(call_s), protocol, clock=clock, probe=lambda: 1.0)
    assert lat.samples >= MIN_SAMPLES and lat.runs == lat.samples * lat.number
    assert lat.median_ms == pytest.approx(call_s * 1e3) and lat.iqr_ms == pytest.approx(0, abs=1e-9)
    assert not lat.noisy and not lat.contended and lat.flags() == ""
    if protocol == "quick":  # the budget (0.2 s / 7 a sample) scales calls per sample, not samples
        assert lat.samples == 7 and lat.number == max(1, math.ceil(0.2 / 7 / call_s))


def test_quick_budget_scales_calls_not_samples():
    fast, slow = FakeClock(), FakeClock()
    a = measure_latency(fast.work(1e-4), clock=fast, probe=lambda: 1.0)
    b = measure_latency(slow.work(1.0), clock=slow, probe=lambda: 1.0)
    assert a.samples == b.samples == 7
    assert (a.number, b.number) == (286, 1)  # ceil(0.2 / 7 / 1e-4) = 286 calls per sample; one for 1 s


def test_noisy_timer_is_flagged():
    clock = FakeClock()
    durations = iter([0.01, 0.01] + [0.01, 0.02, 0.01, 0.03, 0.01, 0.02, 0.04] * 5)

    def fn() -> None:
        clock.now += next(durations)

    lat = measure_latency(fn, clock=clock, probe=lambda: 1.0)
    assert lat.noisy and lat.iqr_ms / lat.median_ms > NOISY_IQR_RATIO and "noisy" in lat.flags()


def test_contended_probe_marks_the_measurement():
    probes = iter([1.0, 1.3])  # before, after: 30% slower
    clock = FakeClock()
    lat = measure_latency(clock.work(0.1), clock=clock, probe=lambda: next(probes))
    assert lat.contended and lat.probe_change == pytest.approx(0.3) and lat.flags() == "contended"
    assert not contended(0.15) and contended(-0.2) and not contended(None)  # 1/0.8 - 1 = 25% faster


def test_interleaved_ratio_stable_under_a_slowdown_of_both_sides():
    clock = FakeClock()
    rounds = []
    a, b = clock.work(0.01), clock.work(0.03)

    def dense() -> None:  # the load triples from round 5 on (dense's calls 15..: 2 warm-up + 3 a sample;
        rounds.append(1)  # dense runs first in even rounds): each side's own latency is noisy
        clock.slowdown = 3.0 if len(rounds) > 2 + 4 * 3 else 1.0
        a()

    cmp = compare_latency({"dense": dense, "isa": b}, clock=clock, probe=lambda: 1.0)
    assert cmp.baseline == "dense" and cmp.ratios["dense"] == Ratio(1.0, 0.0, 7)
    assert cmp.latencies["isa"].noisy and cmp.latencies["dense"].noisy  # IQR/median > 10% on each side
    ratio = cmp.ratios["isa"]
    assert ratio.median == pytest.approx(3.0) and ratio.iqr == pytest.approx(0, abs=1e-9)
    assert ratio.samples == 7 and not ratio.noisy


def test_interleaving_alternates_and_rotates():
    clock, order = FakeClock(), []
    fns = {n: (lambda n=n: (order.append(n), clock.work(0.05)())) for n in "ABC"}
    cmp = compare_latency(fns, clock=clock, probe=lambda: 1.0)
    timed = order[2 * 3 :]  # after 2 warm-up calls each: one call a sample (0.05 s > 0.2 / 7 s)
    assert timed[:9] == list("ABCBCACAB") and len(timed) == 7 * 3
    assert set(cmp.latencies) == set("ABC") and all(lat.samples == 7 for lat in cmp.latencies.values())
    with pytest.raises(ValueError, match="baseline 'D'"):
        compare_latency(fns, baseline="D", clock=clock, probe=lambda: 1.0)


def test_peak_fraction_interleaved_with_the_sgemm_is_stable_under_a_slowdown_of_both() -> None:
    """The block's FLOP rate over the sgemm's, per round: a load that triples both from the middle of the
    run on leaves it exact (the block's own latency turns noisy); no FLOPs, no sgemm, no fraction."""
    from isaprof.measure.latency import PEAK_GEMM

    clock, calls = FakeClock(), []
    block_s, gemm_s, flops = 0.02, 0.01, 10**9
    gemm = clock.work(gemm_s)

    def block() -> None:
        calls.append(1)
        clock.slowdown = 3.0 if len(calls) > 2 + 2 * 3 else 1.0
        clock.now += block_s * clock.slowdown

    lat = measure_latency(block, clock=clock, probe=lambda: 1.0, flops=flops, gemm=gemm)
    peak = lat.peak_fraction
    expected = (flops / block_s) / (2 * PEAK_GEMM**3 / gemm_s)
    assert lat.noisy and peak is not None and peak.samples == 7
    assert peak.median == pytest.approx(expected) and peak.iqr == pytest.approx(0, abs=1e-12)
    assert peak.gemm_gflops > 0
    assert measure_latency(clock.work(0.01), clock=clock, probe=lambda: 1.0, flops=0).peak_fraction is None
