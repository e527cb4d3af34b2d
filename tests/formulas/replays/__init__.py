"""The allocation-event replay of every block: the independent reference the closed-form peak sets
(isaprof.formulas.peak, isaprof.formulas.train_sets) are cross-checked against on many shapes, torch-free
(tests/formulas/test_peak_sets.py). Not part of the package: ``Cost.peak_bytes`` comes from the peak sets.

A replay lists, as ``alloc`` / ``free`` events, the storages the real module allocates (read off its code
and the aten ops it runs), in order; the peak is the largest running sum. This mirrors
``isaprof.measure.memory.StorageTracker``: every op output with a fresh storage is one allocation, views and
in-place ops allocate nothing, a storage is freed when its last reference dies (Python locals, autograd's
saved tensors, gradient buffers), and the peak is sampled after each op's outputs exist. All sizes in
bytes; the layout rules (which reshapes copy) are isaprof.formulas.memory's. Conventions (torch 2.x CPU,
observed with a dispatch-mode logger): see that module's docstring.

One module per block (its ``*_peak`` function returns the `trace.Trace`, ``.peak`` in bytes); `trace` holds
the simulator and the gradient-sum rules; `dense` also the attention and stage replays that isa, axial,
non_local and sparse_nonlocal reuse. `INFERENCE` and `TRAIN` map a block name to its replay in each mode.
"""

from __future__ import annotations

from collections.abc import Callable

from isaprof.formulas.base import Config
from tests.formulas.replays.axial import axial_peak
from tests.formulas.replays.channelized_axial import caa_train_peak
from tests.formulas.replays.criss_cross import criss_cross_train_peak
from tests.formulas.replays.dense import dense_peak
from tests.formulas.replays.isa import isa_peak
from tests.formulas.replays.linear import linear_train_peak
from tests.formulas.replays.non_local import non_local_peak
from tests.formulas.replays.sparse_nonlocal import sparse_train_peak
from tests.formulas.replays.trace import Trace

Replay = Callable[[Config], Trace]

INFERENCE: dict[str, Replay] = {  # blocks whose inference peak has a replay
    "dense": lambda cfg: dense_peak(cfg, False),
    "isa": lambda cfg: isa_peak(cfg, False),
    "axial": lambda cfg: axial_peak(cfg, False),
    "non_local": lambda cfg: non_local_peak(cfg, False),
}
TRAIN: dict[str, Replay] = {
    "dense": lambda cfg: dense_peak(cfg, True),
    "isa": lambda cfg: isa_peak(cfg, True),
    "axial": lambda cfg: axial_peak(cfg, True),
    "non_local": lambda cfg: non_local_peak(cfg, True),
    "sparse_nonlocal": sparse_train_peak,
    "criss_cross": criss_cross_train_peak,
    "linear": linear_train_peak,
    "channelized_axial": caa_train_peak,
}
