"""Wall-clock latency of a callable: warm-up, then ``torch.utils.benchmark.Timer``.

``Timer`` and its clock synchronise CUDA around each timed block, so the same code times CPU and
CUDA. Protocols: ``"fixed"`` = 10 warm-up calls then 100 individually timed calls with Timer's clock
(the harness of openseg's ``isa_block.py``; ``Timer.timeit`` would add its own warm-up to each
call); ``"quick"`` = 2 warm-up calls then ``blocked_autorange`` for about 0.2 s.
A result is flagged ``noisy`` when IQR / median > 0.1, the threshold at which
``torch.utils.benchmark.Measurement`` warns.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import benchmark
from torch.utils.benchmark.utils.timer import timer as benchmark_timer

# name -> (warm-up calls, timed calls; None = blocked_autorange)
PROTOCOLS = {"fixed": (10, 100), "quick": (2, None)}
NOISY_IQR_RATIO = 0.1  # torch.utils.benchmark.Measurement warns above this IQR / median


@dataclass(frozen=True)
class Latency:
    """Latency of one callable. Times in milliseconds per call; ``runs`` = calls timed."""

    median_ms: float
    iqr_ms: float
    runs: int
    warmup: int
    threads: int
    device: str
    protocol: str

    @property
    def noisy(self) -> bool:
        """IQR / median above :data:`NOISY_IQR_RATIO`."""
        return self.median_ms > 0 and self.iqr_ms / self.median_ms > NOISY_IQR_RATIO


def measure_latency(fn: Callable[[], Any], protocol: str = "quick", device: str = "cpu") -> Latency:
    """Time ``fn()`` with ``protocol`` (``"fixed"`` or ``"quick"``) using all torch threads."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown latency protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    warmup, runs = PROTOCOLS[protocol]
    for _ in range(warmup):
        fn()
    threads = torch.get_num_threads()
    if runs is None:
        timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads)
        m = timer.blocked_autorange(min_run_time=0.2)
        times = list(m.times)
        calls = len(times) * m.number_per_run
    else:
        times = []  # seconds, one call each, with Timer's clock (synchronises an accelerator)
        for _ in range(runs):
            start = benchmark_timer()
            fn()
            times.append(benchmark_timer() - start)
        calls = runs
    median, iqr = median_iqr(times)
    return Latency(median * 1e3, iqr * 1e3, calls, warmup, threads, device, protocol)


def median_iqr(times: list[float]) -> tuple[float, float]:
    """Median and inter-quartile range (75th - 25th percentile, linear interpolation) of ``times``."""
    if len(times) < 2:
        return times[0], 0.0
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return statistics.median(times), q3 - q1
