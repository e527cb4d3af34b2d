"""A lower bound on latency from counted work and a device's roofs (pure arithmetic, no torch).

Roofline per op call: t = max(FLOPs / matrix peak, bytes moved / bandwidth). Ops with FLOPs (matrix
products, convolutions, attention kernels: the FLOP counter's registry) may be compute-bound; every other op
(softmax, BatchNorm, ReLU, copies) is bounded by its bytes alone. The bound is the sum over calls: a kernel
cannot beat its roofline, and the unfused execution runs the calls one after another. It is a BOUND, not a
measurement: it ignores launch overheads, caches (bytes are the compulsory traffic of each op: see
``isaprof.measure.traffic``), occupancy and achieved clocks, so real kernels are slower.

``compute_ms`` / ``memory_ms`` split ``bound_ms`` by which roof limits each call (their sum is ``bound_ms``);
``flops_ms`` / ``bytes_ms`` are the totals' own times (all FLOPs at peak, all bytes at bandwidth).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_A_MEASUREMENT = "a lower bound from datasheet/measured roofs, not a measurement"


@dataclass(frozen=True)
class OpCost:
    """Work of one op call (or of ``calls`` identical calls): FLOPs and bytes read + written."""

    op: str
    flops: int
    bytes: int
    calls: int = 1


@dataclass(frozen=True)
class Roofs:
    """A device's roofs: ``matrix_flops`` (FLOP/s of matrix ops in the dtype at hand, ``peak`` names which
    peak), ``bandwidth`` (bytes/s), ``memory_bytes`` (None: unknown)."""

    device: str
    matrix_flops: float
    bandwidth: float
    peak: str
    memory_bytes: int | None = None

    def __post_init__(self) -> None:
        if not (self.matrix_flops > 0 and self.bandwidth > 0):
            raise ValueError(
                f"roofs of {self.device} must be positive: {self.matrix_flops}, {self.bandwidth}"
            )


@dataclass(frozen=True)
class Bound:
    """Result of :func:`bound` (ms, FLOP, byte). ``by_op``: op -> {bound_ms, compute_ms, memory_ms, flops,
    bytes, calls}."""

    bound_ms: float
    compute_ms: float
    memory_ms: float
    flops_ms: float
    bytes_ms: float
    flops: int
    bytes_moved: int
    roofs: Roofs
    by_op: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    @property
    def ridge(self) -> float:
        """The device's ridge point in FLOP/byte (matrix peak / bandwidth)."""
        return self.roofs.matrix_flops / self.roofs.bandwidth

    def to_json(self, peak_bytes: int | None = None) -> dict[str, Any]:
        """The ``isaprof predict --json`` object; ``fits`` null when memory or the peak is unknown."""
        mem = self.roofs.memory_bytes
        return {
            "what": NOT_A_MEASUREMENT,
            "device": self.roofs.device,
            "peak_used": self.roofs.peak,
            "matrix_tflops": self.roofs.matrix_flops / 1e12,
            "bandwidth_gbs": self.roofs.bandwidth / 1e9,
            "bound_ms": self.bound_ms,
            "compute_ms": self.compute_ms,
            "memory_ms": self.memory_ms,
            "flops_ms": self.flops_ms,
            "bytes_ms": self.bytes_ms,
            "flops": self.flops,
            "bytes_moved": self.bytes_moved,
            "intensity_flop_per_byte": self.flops / self.bytes_moved if self.bytes_moved else None,
            "ridge_flop_per_byte": self.ridge,
            "peak_bytes": peak_bytes,
            "memory_bytes": mem,
            "fits": None if mem is None or peak_bytes is None else peak_bytes <= mem,
            "by_op": {k: dict(v) for k, v in self.by_op.items()},
        }


def bound(ops: Iterable[OpCost], roofs: Roofs) -> Bound:
    """Sum over op calls of max(FLOPs / matrix peak, bytes / bandwidth), split by the limiting roof."""
    compute = memory = 0.0
    flops = moved = 0
    by_op: dict[str, dict[str, float]] = {}
    for o in ops:
        t_flop = o.flops / roofs.matrix_flops  # s, per call
        t_byte = o.bytes / roofs.bandwidth
        t = max(t_flop, t_byte) * o.calls
        row = by_op.setdefault(
            o.op, {"bound_ms": 0.0, "compute_ms": 0.0, "memory_ms": 0.0, "flops": 0, "bytes": 0, "calls": 0}
        )
        key = "compute_ms" if t_flop > t_byte else "memory_ms"
        row[key] += 1e3 * t
        row["bound_ms"] += 1e3 * t
        row["flops"] += o.flops * o.calls
        row["bytes"] += o.bytes * o.calls
        row["calls"] += o.calls
        if t_flop > t_byte:
            compute += t
        else:
            memory += t
        flops += o.flops * o.calls
        moved += o.bytes * o.calls
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["bound_ms"]))
    return Bound(
        bound_ms=1e3 * (compute + memory),
        compute_ms=1e3 * compute,
        memory_ms=1e3 * memory,
        flops_ms=1e3 * flops / roofs.matrix_flops,
        bytes_ms=1e3 * moved / roofs.bandwidth,
        flops=flops,
        bytes_moved=moved,
        roofs=roofs,
        by_op=by_op,
    )
