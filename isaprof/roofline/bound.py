"""A lower bound on latency from counted work and a device's roofs (pure arithmetic, no torch).

Roofline per op call: t = max(FLOPs / matrix peak, bytes moved / bandwidth). Ops with FLOPs (matrix
products, convolutions, attention kernels: the FLOP counter's registry) may be compute-bound; every other op
(softmax, BatchNorm, ReLU, copies) is bounded by its bytes alone. The bound is the sum over calls: a kernel
cannot beat its roofline, and the unfused execution runs the calls one after another. It is a BOUND, not a
measurement: it ignores launch overheads, caches (bytes are the compulsory traffic of each op: see
``isaprof.measure.traffic``), occupancy and achieved clocks, so real kernels are slower.

``compute_ms`` / ``memory_ms`` split ``bound_ms`` by which roof limits each call (their sum is ``bound_ms``);
``flops_ms`` / ``bytes_ms`` are the totals' own times (all FLOPs at peak, all bytes at bandwidth).

Convolutions may have their own peak (``Roofs.conv_flops``; :class:`Roofs` and the ``machine.json`` schema
live in :mod:`isaprof.roofline.schema`): in float32 PyTorch runs matrix products on
FP32 CUDA cores (``torch.backends.cuda.matmul.allow_tf32`` is False by default) but cuDNN convolutions on
TF32 tensor cores (``torch.backends.cudnn.allow_tf32`` is True by default), so a float32 GPU bound divides
convolution FLOPs by the TF32 peak: with the FP32 peak it would not be a bound.

:func:`predict` and :func:`count` are the entry points that count a target (fake tensors; they import
torch inside, so this module stays torch-free); :func:`roofs_for` resolves ``--gpu NAME`` (or ``cpu``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from isaprof.roofline.schema import Roofs

NOT_A_MEASUREMENT = "a lower bound from datasheet/measured roofs, not a measurement"


@dataclass(frozen=True)
class OpCost:
    """Work of one op call (or of ``calls`` identical calls): FLOPs and bytes read + written."""

    op: str
    flops: int
    bytes: int
    calls: int = 1


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
        """The device's ridge point for matrix products in FLOP/byte (matrix peak / bandwidth)."""
        return self.roofs.ridge

    def to_json(self, peak_bytes: int | None = None) -> dict[str, Any]:
        """The ``isaprof predict --json`` object; ``fits`` null when memory or the peak is unknown."""
        mem = self.roofs.memory_bytes
        return {
            "what": NOT_A_MEASUREMENT,
            "device": self.roofs.device,
            **self.roofs.columns(),
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
    compute = memory = flop_time = 0.0
    flops = moved = 0
    by_op: dict[str, dict[str, float]] = {}
    for o in ops:
        t_flop = o.flops / roofs.flops_of(o.op)  # s, per call
        t_byte = o.bytes / roofs.bandwidth
        t = max(t_flop, t_byte) * o.calls
        flop_time += t_flop * o.calls
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
        flops_ms=1e3 * flop_time,
        bytes_ms=1e3 * moved / roofs.bandwidth,
        flops=flops,
        bytes_moved=moved,
        roofs=roofs,
        by_op=by_op,
    )


def cpu_roofs(dtype: str = "float32", machine: Mapping[str, Any] | None = None) -> Roofs:
    """This machine's roofs (fp32 matmul FLOP/s, bytes/s): ``machine`` (a ``{"matmul_gflops": ...,
    "bandwidth_gbs": ...}`` mapping, e.g. a results folder's ``machine.json["cpu"]``), else the host cache of
    ``isaprof.roofline.roofs.machine_roofs()`` (measured there if absent). ``ValueError`` for other dtypes."""
    if dtype != "float32":
        raise ValueError(f"--gpu cpu has a measured float32 matmul peak only, not {dtype}")
    if machine is None:
        from isaprof.roofline.roofs import machine_roofs

        machine = machine_roofs().get("cpu", {})
    try:
        memory: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return Roofs.measured(machine, "cpu (measured)", "measured fp32 matmul peak (isaprof machine)", memory)


def gpu_roofs(name: str, dtype: str = "float32", tf32: bool = False) -> Roofs:
    """Roofs of catalogued GPU ``name`` for matrix ops in ``dtype`` (``ValueError`` if unknown / no peak).
    float32 without ``tf32``: matrix products on FP32 CUDA cores, convolutions on TF32 tensor cores where
    the GPU has them (PyTorch's defaults, see the module docstring)."""
    from isaprof.roofline import devices

    return devices.get(name).roofs(dtype, tf32)


def roofs_for(device: str, dtype: str = "float32", tf32: bool = False) -> Roofs:
    """``cpu`` (this machine's measured roofs) or a catalogued GPU (case-insensitive)."""
    if device.strip().lower() == "cpu":
        if tf32:
            raise ValueError("--tf32 applies to GPUs only")
        return cpu_roofs(dtype)
    return gpu_roofs(device, dtype, tf32)


@dataclass(frozen=True)
class Counted:
    """The work of one configuration, counted on fake tensors: ``ops`` (one :class:`OpCost` per call),
    ``config`` (its tidy columns), ``resident_bytes`` (parameters + input), ``peak_bytes`` (exact tensor
    storage of the call), ``peak_bytes_cuda`` (the CUDA caching allocator's count, predicted),
    ``flop_counter_flops`` (FlopCounterMode's total, a cross-check) and ``uncounted`` matrix ops."""

    ops: tuple[OpCost, ...]
    config: Mapping[str, Any]
    resident_bytes: int
    peak_bytes: int
    peak_bytes_cuda: int | None
    flop_counter_flops: int
    uncounted: tuple[str, ...]

    def predict(self, roofs: Roofs) -> dict[str, Any]:
        """The ``isaprof predict --json`` object on ``roofs``: bound, whether the peak fits, config."""
        call_peak = self.peak_bytes if roofs.device.startswith("cpu") else self.peak_bytes_cuda
        peak = None if call_peak is None else self.resident_bytes + call_peak
        out = bound(self.ops, roofs).to_json(peak_bytes=peak)
        out["config"] = dict(self.config)
        out["flop_counter_flops"] = self.flop_counter_flops
        out["uncounted_ops"] = list(self.uncounted)
        return out


def count(target: Any, **config: Any) -> Counted:
    """Count ``target``'s work per op call on fake tensors (``device="meta"``, forced): ``config`` is what
    ``isaprof.profile`` takes (``size``, ``channels``, ``key_channels``, ``value_channels``, ``batch``,
    ``dtype``, ``mode``, ``impl``, ``backend``, ``path`` and the target's options; None values dropped)."""
    from isaprof.config import DTYPE_BYTES
    from isaprof.profiling.profiler import profile

    kwargs = {k: v for k, v in config.items() if v is not None and k != "device"}
    rec = profile(target, device="meta", latency=None, **kwargs)
    c = rec.config
    # resident: parameters and the input (buffers, a few per BatchNorm, left out)
    resident = (rec.params + c.batch * c.channels * c.height * c.width) * DTYPE_BYTES[c.dtype]
    return Counted(
        ops=tuple(OpCost(o.op, o.flops, o.bytes) for o in rec.bytes_moved.calls),
        config=c.columns(rec.padded),
        resident_bytes=resident,
        peak_bytes=rec.peak_bytes,
        peak_bytes_cuda=rec.peak_bytes_cuda_predicted,
        flop_counter_flops=rec.flop_count.flops,
        uncounted=tuple(rec.flop_count.uncounted),
    )


def predict(target: Any, gpu: str | Roofs, **config: Any) -> dict[str, Any]:
    """The latency lower bound of ``target`` on ``gpu`` (a catalogue key, ``cpu``, or :class:`Roofs`) as
    ``isaprof predict --json`` prints it (``bound_ms``, ``compute_ms``, ``memory_ms``, ...). ``config``: as
    :func:`count` takes it, plus ``tf32`` (GPUs, float32). A bound, not a measurement.

    >>> predict("dense", "h100-sxm", size=(8, 8), channels=16)["bound_ms"] > 0
    True
    """
    tf32 = bool(config.pop("tf32", False))
    dtype = config.get("dtype") or "float32"
    roofs = gpu if isinstance(gpu, Roofs) else roofs_for(gpu, dtype, tf32)
    return count(target, **config).predict(roofs)
