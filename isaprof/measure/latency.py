"""Wall-clock latency of a callable: warm-up, then at least :data:`MIN_SAMPLES` timed samples.

A *sample* is ``number`` back-to-back calls timed together (the time per call is the sample's time
divided by ``number``), as ``torch.utils.benchmark`` times a block. The clock synchronises CUDA at
both ends of a sample, so the same code times CPU and CUDA. Protocols (:data:`PROTOCOLS`):

* ``"quick"``: 2 warm-up calls, then 7 samples; each sample holds as many calls as fit
  ``budget / samples`` (0.2 s / 7) at the call time the last warm-up call took. A time budget
  scales the calls per sample, never the number of samples: a 0.6 s call still gets 7 samples of
  one call each (4.2 s in all).
* ``"fixed"``: 10 warm-up calls, then 100 samples of one call each (the harness of openseg's
  ``isa_block.py``).

The result is the median over samples with the inter-quartile range (IQR) and the sample count;
it is flagged ``noisy`` when IQR / median > 0.1, the threshold at which
``torch.utils.benchmark.Measurement`` warns. A same-run *matmul probe* (a fixed product timed just
before and just after) that changed by more than :data:`CONTENDED_CHANGE` marks the measurement
``contended``: the machine was visibly busy with something else while it ran.

:func:`compare_latency` times several callables *interleaved* (A, B, A, B, ..., the order rotated each
round), so that load on a shared machine moves all of them alike, and gives each one's ratio to a
baseline per round, with the ratio's own median and IQR.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import timeit
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

Clock = Callable[[], float]  # seconds, monotonic

MIN_SAMPLES = 7  # the fewest samples any protocol reports
# name -> (warm-up calls, samples, time budget of the samples in s; None = one call per sample)
PROTOCOLS: dict[str, tuple[int, int, float | None]] = {"fixed": (10, 100, None), "quick": (2, 7, 0.2)}
NOISY_IQR_RATIO = 0.1  # torch.utils.benchmark.Measurement warns above this IQR / median
CONTENDED_CHANGE = 0.2  # the probe after vs before, relative to the smaller: above this = contended
PROBE_SIZE = 256  # the probe: (256, 256) x (256, 256) fp32 products
PROBE_CALLS = 4  # products per probe timing; the probe's figure is the median of PROBE_REPEATS timings
PROBE_REPEATS = 5
# The same-run peak a block's FLOP rate is set against: (1024, 1024) x (1024, 1024) fp32 products, timed
# interleaved with the block (:func:`measure_latency` with ``flops``), so that load moves both alike.
PEAK_GEMM = 1024


@dataclass(frozen=True)
class PeakFraction:
    """A callable's FLOP rate over the rate of the square sgemm (:data:`PEAK_GEMM`) timed interleaved with
    it, one per round: ``median`` and ``iqr`` over ``samples`` rounds (dimensionless), and the sgemm's
    median rate in the same run (``gemm_gflops``, GFLOP/s)."""

    median: float
    iqr: float
    samples: int
    gemm_gflops: float


@dataclass(frozen=True)
class Latency:
    """Latency of one callable. Times in milliseconds per call: ``median_ms`` and ``iqr_ms`` over the
    samples; ``runs`` = calls timed in all (``samples`` x ``number``); ``warmup`` = untimed calls before;
    ``samples`` = timed samples, ``number`` = calls per sample; ``probe_change`` = the matmul probe's
    relative change across the measurement (after / before - 1; None: not probed)."""

    median_ms: float
    iqr_ms: float
    runs: int
    warmup: int
    threads: int
    device: str
    protocol: str
    samples: int = 1
    number: int = 1
    probe_change: float | None = None
    peak_fraction: PeakFraction | None = None

    @property
    def noisy(self) -> bool:
        """IQR / median above :data:`NOISY_IQR_RATIO`."""
        return self.median_ms > 0 and self.iqr_ms / self.median_ms > NOISY_IQR_RATIO

    @property
    def contended(self) -> bool:
        """The matmul probe changed by more than :data:`CONTENDED_CHANGE` across the measurement."""
        return contended(self.probe_change)

    def flags(self) -> str:
        """``"noisy"``, ``"contended"``, both (space-separated) or ``""``: the tidy row's ``flags`` cell."""
        return " ".join(name for name, on in (("noisy", self.noisy), ("contended", self.contended)) if on)


@dataclass(frozen=True)
class Ratio:
    """The ratio of two interleaved latencies (numerator / baseline), one per round: ``median`` and
    ``iqr`` over ``samples`` rounds (dimensionless)."""

    median: float
    iqr: float
    samples: int

    @property
    def noisy(self) -> bool:
        """IQR / median above :data:`NOISY_IQR_RATIO`."""
        return self.median > 0 and self.iqr / self.median > NOISY_IQR_RATIO


@dataclass(frozen=True)
class Comparison:
    """Interleaved latencies (:func:`compare_latency`): each callable's :class:`Latency` and its
    :class:`Ratio` to ``baseline`` (the baseline's own ratio is 1 with IQR 0)."""

    baseline: str
    latencies: Mapping[str, Latency]
    ratios: Mapping[str, Ratio] = field(default_factory=dict)
    rounds: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # seconds per call, per round


def contended(change: float | None) -> bool:
    """Whether a probe change (after / before - 1) means a contended machine: ``max/min - 1`` above
    :data:`CONTENDED_CHANGE` (a probe that sped up by as much counts too: it was slowed before)."""
    if change is None:
        return False
    ratio = 1 + change
    return ratio > 0 and max(ratio, 1 / ratio) - 1 > CONTENDED_CHANGE


def device_clock(device: str = "cpu") -> Clock:
    """A clock (seconds) that first waits for ``device`` (``torch.cuda.synchronize`` on CUDA)."""
    if device.startswith("cuda"):

        def cuda_clock() -> float:
            torch.cuda.synchronize()
            return timeit.default_timer()

        return cuda_clock
    return timeit.default_timer


def matmul_probe(device: str = "cpu", clock: Clock | None = None) -> Callable[[], float]:
    """A probe: a callable returning the median seconds of :data:`PROBE_CALLS` fixed fp32 products of
    side :data:`PROBE_SIZE` on ``device`` (median of :data:`PROBE_REPEATS` timings)."""
    clock = clock or device_clock(device)
    a = torch.randn(PROBE_SIZE, PROBE_SIZE, device=device)
    b = torch.randn(PROBE_SIZE, PROBE_SIZE, device=device)
    torch.mm(a, b)  # first-call set-up outside the timing

    def probe() -> float:
        times = []
        for _ in range(PROBE_REPEATS):
            start = clock()
            for _ in range(PROBE_CALLS):
                torch.mm(a, b)
            times.append(clock() - start)
        return statistics.median(times)

    return probe


def calls_per_sample(call_s: float, budget_s: float | None, samples: int) -> int:
    """Calls per sample: as many calls of ``call_s`` seconds as fit ``budget_s / samples`` (at least 1);
    1 without a budget."""
    if budget_s is None or call_s <= 0:
        return 1
    return max(1, math.ceil(budget_s / samples / call_s))


def measure_latency(
    fn: Callable[[], Any],
    protocol: str = "quick",
    device: str = "cpu",
    *,
    budget_s: float | None = None,
    clock: Clock | None = None,
    probe: Callable[[], float] | None = None,
    flops: int | None = None,
    gemm: Callable[[], Any] | None = None,
) -> Latency:
    """Time ``fn()`` with ``protocol`` (``"fixed"`` or ``"quick"``) using all torch threads.

    ``clock``: seconds (default: :func:`device_clock`); ``probe``: seconds of a fixed workload, called
    before and after (default: :func:`matmul_probe` of ``device``; tests inject both); ``budget_s``: see
    :func:`compare_latency`. ``flops`` (FLOPs of one call, > 0): then, in a second run, time ``fn``
    interleaved with the square sgemm of side :data:`PEAK_GEMM` (``gemm``: tests inject another callable
    of the same FLOPs) and give the per-round ratio of their FLOP rates as ``peak_fraction``; the latency
    itself comes from the first run, ``fn`` alone.
    """
    comparison = compare_latency({"fn": fn}, protocol, device, budget_s=budget_s, clock=clock, probe=probe)
    lat = comparison.latencies["fn"]
    if not flops or flops <= 0 or device == "meta":
        return lat
    # a second, interleaved run for the fraction: the sgemm's samples evict the block's data from the
    # caches, so the latency above is timed alone
    fns = {"fn": fn, "gemm": gemm or _square_gemm(device)}
    comparison = compare_latency(fns, protocol, device, budget_s=budget_s, clock=clock, probe=lambda: 1.0)
    gemm_flops = 2 * PEAK_GEMM**3
    pairs = zip(comparison.rounds["fn"], comparison.rounds["gemm"], strict=True)
    per_round = [(flops / t) / (gemm_flops / g) for t, g in pairs if t > 0 and g > 0]
    if not per_round:
        return lat
    median, iqr = median_iqr(per_round)
    gemm_s = comparison.latencies["gemm"].median_ms / 1e3
    rate = gemm_flops / gemm_s / 1e9 if gemm_s > 0 else float("nan")
    return dataclasses.replace(lat, peak_fraction=PeakFraction(median, iqr, len(per_round), rate))


def _square_gemm(device: str) -> Callable[[], Any]:
    """``torch.mm`` of two fixed fp32 (:data:`PEAK_GEMM`, :data:`PEAK_GEMM`) matrices on ``device``."""
    a = torch.randn(PEAK_GEMM, PEAK_GEMM, device=device)
    b = torch.randn(PEAK_GEMM, PEAK_GEMM, device=device)
    return lambda: torch.mm(a, b)


def compare_latency(
    fns: Mapping[str, Callable[[], Any]],
    protocol: str = "quick",
    device: str = "cpu",
    *,
    baseline: str | None = None,
    budget_s: float | None = None,
    clock: Clock | None = None,
    probe: Callable[[], float] | None = None,
) -> Comparison:
    """Time the callables of ``fns`` interleaved: warm each up, size its samples (:func:`calls_per_sample`
    from its last warm-up call), then ``samples`` rounds, each timing one sample of every callable, the
    order rotated by one each round (A B C, B C A, C A B, ...). Each callable's ratio to ``baseline``
    (default: the first) is taken per round. The matmul probe runs before the first and after the last
    round; its change goes to every :class:`Latency`. ``budget_s``: replaces the protocol's time budget of
    the samples (more calls per sample, never more or fewer samples)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown latency protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    if not fns:
        raise ValueError("nothing to time")
    names = list(fns)
    baseline = names[0] if baseline is None else baseline
    if baseline not in fns:
        raise ValueError(f"baseline {baseline!r} is none of {', '.join(names)}")
    warmup, samples, budget = PROTOCOLS[protocol]
    budget = budget_s if budget_s is not None else budget
    clock = clock or device_clock(device)
    if probe is None and device != "meta":
        probe = matmul_probe(device, clock)
    before = probe() if probe is not None else None
    number = {}
    for name in names:
        fn, call_s = fns[name], 0.0
        for _ in range(warmup):
            start = clock()
            fn()
            call_s = clock() - start
        number[name] = calls_per_sample(call_s, budget, samples)
    times: dict[str, list[float]] = {name: [] for name in names}  # seconds per call, one per round
    for i in range(samples):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            fn, n = fns[name], number[name]
            start = clock()
            for _ in range(n):
                fn()
            times[name].append((clock() - start) / n)
    after = probe() if probe is not None else None
    change = after / before - 1 if before and after is not None else None
    threads = torch.get_num_threads()
    latencies = {}
    for name in names:
        median, iqr = median_iqr(times[name])
        latencies[name] = Latency(
            median * 1e3, iqr * 1e3, samples * number[name], warmup, threads, device, protocol,
            samples, number[name], change,
        )  # fmt: skip
    ratios = {}
    for name in names:
        per_round = [t / b for t, b in zip(times[name], times[baseline], strict=True) if b > 0]
        if per_round:
            median, iqr = median_iqr(per_round)
            ratios[name] = Ratio(median, iqr, len(per_round))
    return Comparison(baseline, latencies, ratios, {name: tuple(times[name]) for name in names})


def median_iqr(times: Sequence[float]) -> tuple[float, float]:
    """Median and inter-quartile range (75th - 25th percentile, linear interpolation) of ``times``."""
    if len(times) < 2:
        return times[0], 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return statistics.median(times), q3 - q1
