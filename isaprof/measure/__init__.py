"""Counting, memory tracking and timing of a callable or module. Knows no block by name.

* :mod:`~isaprof.measure.flops`: FlopCounterMode (+ formulas it lacks) and fvcore counters.
* :mod:`~isaprof.measure.memory`: storage-lifetime peak (real CPU and fake tensors), CUDA allocator peak.
* :mod:`~isaprof.measure.latency`: warm-up + timer; median, IQR, noisy flag.
* :mod:`~isaprof.measure.env`: the environment a measurement ran in.
* :mod:`~isaprof.measure.protocol`: the inference / train step every measurement runs.
"""

from isaprof.measure.env import environment
from isaprof.measure.flops import FlopCount, FvcoreCount, count_flops, fvcore_count
from isaprof.measure.latency import Latency, measure_latency
from isaprof.measure.memory import MemoryPeak, cuda_peak, track_peak
from isaprof.measure.protocol import MODES, step

__all__ = [
    "MODES",
    "FlopCount",
    "FvcoreCount",
    "Latency",
    "MemoryPeak",
    "count_flops",
    "cuda_peak",
    "environment",
    "fvcore_count",
    "measure_latency",
    "step",
    "track_peak",
]
