"""A lower bound on latency from counted work and a device's roofs (pure arithmetic, no torch).

Roofline per op call: t = max(FLOPs / matrix peak, bytes moved / bandwidth). Ops with FLOPs (matrix
products, convolutions, attention kernels: the FLOP counter's registry) may be compute-bound; every other op
(softmax, BatchNorm, ReLU, copies) is bounded by its bytes alone. The bound is the sum over calls: a kernel
cannot beat its roofline, and the unfused execution runs the calls one after another. It is a BOUND, not a
measurement: it ignores launch overheads, caches (bytes are the compulsory traffic of each op: see
``isaprof.measure.traffic``), occupancy and achieved clocks, so real kernels are slower.

``compute_ms`` / ``memory_ms`` split ``bound_ms`` by which roof limits each call (their sum is ``bound_ms``);
``flops_ms`` / ``bytes_ms`` are the totals' own times (all FLOPs at peak, all bytes at bandwidth).

Sound by construction: each op call is bounded under the cheapest algorithm its library may pick
(:data:`RULES`, one per op class, each with its source), and the bound names the rule that holds each class
(``by_class`` in the JSON). On a GPU (cuDNN) a convolution's FLOPs are those of the cheapest of: implicit GEMM
(every MAC), Winograd F(4x4, r x r) where cuDNN documents Winograd (3x3 / 5x5, stride 1, dilation 1), and an
FFT floor where cuDNN documents FFT (stride 1, dilation 1, filter larger than its padding): 3 real
multiplications per complex product (Gauss), over the Hermitian half of a transform as large as the padded
map, transforms themselves free. Matrix products keep every FLOP (classical GEMM). Bytes are compulsory
traffic from DRAM (the ``memory`` rule: no operand resident in L2 from the previous op); ``l2_bound_ms`` drops
that assumption too, deducting what the device's L2 may hold at each op's start and end (2 x L2 per call,
``cache_bytes``). On the CPU the rule set is ``direct`` (PyTorch asks oneDNN for its direct algorithm): there
the bound is unchanged.

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
from typing import TYPE_CHECKING, Any

from isaprof.roofline.schema import CONV_OPS, Roofs

if TYPE_CHECKING:
    from isaprof.measure.traffic import ConvShape

NOT_A_MEASUREMENT = "a lower bound from datasheet/measured roofs, not a measurement"
CUDNN, DIRECT = "cudnn", "direct"  # the rule sets: a GPU's libraries, or every FLOP as counted
WINOGRAD_TILE = 4  # output tile m of F(m x m, r x r): the largest in the libraries' FP32 kernels
WINOGRAD_KERNELS = ((3, 3), (5, 5))  # cuDNN: WINOGRAD 3x3, WINOGRAD_NONFUSED 3x3 and 5x5
GAUSS_MULTIPLIES = 3  # real multiplications per complex product (Gauss's trick), each one FMA
MATMUL_OPS = frozenset(("aten.mm", "aten.bmm", "aten.addmm", "aten.baddbmm", "aten.matmul", "aten.linear"))
CUDNN_DOC = (
    "cuDNN API reference, cudnnConvolutionForward, its table of supported configurations per "
    "algorithm (https://docs.nvidia.com/deeplearning/cudnn/latest/api/cudnn-cnn-library.html)"
)


@dataclass(frozen=True)
class Rule:
    """How one op class is bounded: ``assumption`` (the cheapest algorithm assumed) and its ``source``."""

    assumption: str
    source: str


RULES: dict[str, Rule] = {
    "conv_direct": Rule(
        "implicit GEMM, every MAC (C_in/groups x kh x kw per output, padding taps included) at the peak; "
        "no cheaper algorithm is eligible (1x1, strided or dilated, or the rule set is direct)",
        f"{CUDNN_DOC}: WINOGRAD, WINOGRAD_NONFUSED, FFT and FFT_TILING require dilation 1 and stride 1; "
        "CPU: PyTorch's oneDNN convolution requests algorithm::convolution_direct "
        "(aten/src/ATen/native/mkldnn/Conv.cpp)",
    ),
    "conv_winograd": Rule(
        f"Winograd F({WINOGRAD_TILE}x{WINOGRAD_TILE}, r x r): (m+kh-1)(m+kw-1) multiplications per m^2 "
        "outputs per channel pair (3x3: 36 per 16 outputs, 4x fewer than direct), transforms free",
        f"{CUDNN_DOC}: WINOGRAD (3x3) and WINOGRAD_NONFUSED (3x3, 5x5), stride 1, dilation 1; the "
        "reduction: Lavin & Gray, Fast Algorithms for Convolutional Neural Networks, CVPR 2016 "
        "(arXiv:1509.09308), F(4x4, 3x3) = 4x, the largest tile used in FP32 there",
    ),
    "conv_fft": Rule(
        f"FFT floor: {GAUSS_MULTIPLIES} real FMAs per complex product (Gauss) for each channel pair over "
        "the Hermitian half of one transform as large as the padded map (tiling only adds bins), "
        "transforms free",
        f"{CUDNN_DOC}: FFT and FFT_TILING, stride 1, dilation 1, filter larger than its zero padding; "
        "Hermitian half: cuFFT R2C output N1 x (N2/2 + 1); 3 multiplications: cuBLAS cgemm3m (Gauss "
        "complexity reduction)",
    ),
    "matmul": Rule(
        "classical GEMM: every counted FLOP at the matrix peak (no Strassen-type algorithm)",
        "cuBLAS GEMM routines (and the FLOP counter's 2 x M x N x K); PyTorch runs float32 matmul on FP32 "
        "CUDA cores (torch.backends.cuda.matmul.allow_tf32 is False)",
    ),
    "memory": Rule(
        "no FLOP formula: compulsory bytes (each tensor read and written once) at the DRAM bandwidth, no "
        "operand resident in L2 from the previous op (l2_bound_ms drops this: 2 x L2 less per call)",
        "isaprof.measure.traffic (the byte model); L2 sizes: reference/devices.toml",
    ),
}


@dataclass(frozen=True)
class OpCost:
    """Work of one op call (or of ``calls`` identical calls): FLOPs and bytes read + written; ``conv``: the
    call's geometry when it is a convolution (decides the algorithms eligible, :func:`cheapest`)."""

    op: str
    flops: int
    bytes: int
    calls: int = 1
    conv: ConvShape | None = None


def fft_flops(c: ConvShape) -> int:
    """The FFT floor of a convolution in FLOPs: 2 x 3 x batch x (C_in x C_out / groups) x bins, bins = the
    Hermitian half of a transform of the padded map, ``(Ho+kh-1) x ((Wo+kw-1)//2 + 1)`` (the smaller of
    the two axes' halvings)."""
    hp, wp = c.out_height + c.kernel[0] - 1, c.out_width + c.kernel[1] - 1
    bins = min(hp * (wp // 2 + 1), wp * (hp // 2 + 1))
    pairs = c.in_channels * c.out_channels // c.groups
    return 2 * GAUSS_MULTIPLIES * c.batch * pairs * bins


def winograd_flops(flops: int, c: ConvShape) -> int:
    """``flops`` (direct) scaled to Winograd F(m x m, kh x kw): (m+kh-1)(m+kw-1) / (m^2 kh kw)."""
    m, (kh, kw) = WINOGRAD_TILE, c.kernel
    return flops * (m + kh - 1) * (m + kw - 1) // (m * m * kh * kw)


def cheapest(o: OpCost, library: str = CUDNN) -> tuple[int, str]:
    """(FLOPs under the cheapest eligible algorithm, its op class, a key of :data:`RULES`) for one call."""
    if o.op not in CONV_OPS:
        return o.flops, ("matmul" if o.flops else "memory")
    best, rule = o.flops, "conv_direct"
    c = o.conv  # None for convolution_backward: its geometry is not recorded (counted FLOPs)
    if c is None or library != CUDNN or c.stride != (1, 1) or c.dilation != (1, 1):
        return best, rule
    if c.kernel in WINOGRAD_KERNELS and winograd_flops(o.flops, c) < best:
        best, rule = winograd_flops(o.flops, c), "conv_winograd"
    if c.kernel[0] > c.padding[0] and c.kernel[1] > c.padding[1] and fft_flops(c) < best:
        best, rule = fft_flops(c), "conv_fft"
    return best, rule


@dataclass(frozen=True)
class Bound:
    """Result of :func:`bound` (ms, FLOP, byte). ``by_op``: op -> {bound_ms, compute_ms, memory_ms, flops,
    bytes, calls}; ``by_class``: op class (a key of :data:`RULES`) -> the same plus ``effective_flops``
    (under the class's algorithm), ``assumption`` and ``source``; ``effective_flops``: the total under the
    cheapest algorithms; ``library``: the rule set; ``l2_bound_ms``: the bound with ``2 x cache_bytes`` (the
    L2) deducted from each call's bytes, sound even where operands stay in L2 between ops."""

    bound_ms: float
    compute_ms: float
    memory_ms: float
    flops_ms: float
    bytes_ms: float
    flops: int
    bytes_moved: int
    roofs: Roofs
    by_op: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    by_class: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    effective_flops: int = 0
    effective_flops_ms: float = 0.0
    library: str = CUDNN
    cache_bytes: int = 0
    l2_bound_ms: float = 0.0

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
            "effective_flops": self.effective_flops,
            "effective_flops_ms": self.effective_flops_ms,
            "algorithms": self.library,
            "cache_bytes": self.cache_bytes,
            "l2_bound_ms": self.l2_bound_ms,
            "by_class": {k: dict(v) for k, v in self.by_class.items()},
        }


def _row(table: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    return table.setdefault(
        key, {"bound_ms": 0.0, "compute_ms": 0.0, "memory_ms": 0.0, "flops": 0, "bytes": 0, "calls": 0}
    )


def bound(ops: Iterable[OpCost], roofs: Roofs, library: str | None = None, cache_bytes: int = 0) -> Bound:
    """Sum over op calls of max(FLOPs / peak, bytes / bandwidth), split by the limiting roof. FLOPs are those
    of the cheapest algorithm ``library`` may run the call with (:func:`cheapest`; default: ``direct`` on a
    CPU's roofs, else ``cudnn``); ``l2_bound_ms``: with bytes less ``2 x cache_bytes`` per call (>= 0)."""
    if library is None:
        library = DIRECT if roofs.device.startswith("cpu") else CUDNN
    compute = memory = flop_time = eff_time = l2_time = 0.0
    flops = moved = eff_total = 0
    by_op: dict[str, dict[str, Any]] = {}
    by_class: dict[str, dict[str, Any]] = {}
    for o in ops:
        eff, cls = cheapest(o, library)
        peak = roofs.flops_of(o.op)
        t_flop = eff / peak  # s, per call
        t_byte = o.bytes / roofs.bandwidth
        t = max(t_flop, t_byte) * o.calls
        l2_time += max(t_flop, max(0, o.bytes - 2 * cache_bytes) / roofs.bandwidth) * o.calls
        flop_time += o.flops / peak * o.calls
        eff_time += t_flop * o.calls
        key = "compute_ms" if t_flop > t_byte else "memory_ms"
        for row in (_row(by_op, o.op), _row(by_class, cls)):
            row[key] += 1e3 * t
            row["bound_ms"] += 1e3 * t
            row["flops"] += o.flops * o.calls
            row["bytes"] += o.bytes * o.calls
            row["calls"] += o.calls
        by_class[cls]["effective_flops"] = by_class[cls].get("effective_flops", 0) + eff * o.calls
        if t_flop > t_byte:
            compute += t
        else:
            memory += t
        flops += o.flops * o.calls
        eff_total += eff * o.calls
        moved += o.bytes * o.calls
    by_op = dict(sorted(by_op.items(), key=lambda kv: -kv[1]["bound_ms"]))
    for cls, row in by_class.items():
        row.update(assumption=RULES[cls].assumption, source=RULES[cls].source)
    by_class = dict(sorted(by_class.items(), key=lambda kv: -kv[1]["bound_ms"]))
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
        by_class=by_class,
        effective_flops=eff_total,
        effective_flops_ms=1e3 * eff_time,
        library=library,
        cache_bytes=cache_bytes,
        l2_bound_ms=1e3 * l2_time,
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


def cache_of(roofs: Roofs) -> int:
    """The L2 size in bytes of the catalogued GPU ``roofs`` describes (0: a CPU, an uncatalogued device, or
    no L2 figure in the catalogue)."""
    from isaprof.roofline import devices

    found = devices.load().get(roofs.device)
    return 0 if found is None else found.l2_bytes


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
        out = bound(self.ops, roofs, cache_bytes=cache_of(roofs)).to_json(peak_bytes=peak)
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
        ops=tuple(OpCost(o.op, o.flops, o.bytes, conv=o.conv) for o in rec.bytes_moved.calls),
        config=c.to_row(rec.padded),
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
