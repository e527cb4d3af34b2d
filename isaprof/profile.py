"""One configuration -> one :class:`Record`: the block, its closed-form costs and the measurements.

Everything that runs configurations (sweep, check, reproduce, benchmarks) goes through :func:`profile`.
Devices: ``meta`` (fake CPU tensors: the block is built on ``meta`` and moved with ``to_empty`` inside
``FakeTensorMode``; counts and peak bytes at any size in seconds, no latency), ``cpu`` (real tensors,
latency too) and ``cuda`` (allocator peak). Fake *CUDA* tensors are not offered: torch 2.13 runs their
forward but a fake-CUDA backward aborts the process, and the CPU-fake peak equals the CUDA figure up to
the allocator's 512-byte rounding and kernel workspaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel

from isaprof import blocks, formulas
from isaprof.measure import (
    MODES,
    FlopCount,
    Latency,
    count_flops,
    cuda_peak,
    environment,
    measure_latency,
    step,
    track_peak,
)
from isaprof.measure.latency import PROTOCOLS

DEVICES = ("meta", "cpu", "cuda")
# "reference": the block as the papers' code computes it; "fast": isaprof.blocks.fast.fast_inference of it
# (same outputs, BN folded, GEMM layouts, sdpa core; inference only).
PATHS = ("reference", "fast")
DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
CUDA_ONLY_BACKENDS = ("efficient", "cudnn")

# The tidy row schema of docs/ARCHITECTURE.md, in order.
COLUMNS = (
    "block batch channels key_channels value_channels height width padded_height padded_width "
    "factor recurrence options impl backend path dtype device mode "
    "metric measured analytic unit spread status error "
    "torch device_name threads host timestamp"
).split()
UNITS = {
    "params": "count",
    "macs": "MAC",
    "flops": "FLOP",
    "elementwise": "op",
    "peak_bytes": "byte",
    "latency_ms": "ms",
}
ENV_FIELDS = ("torch", "device_name", "threads", "host", "timestamp")


@dataclass(frozen=True)
class Setup:
    """A validated configuration: the arguments of :func:`profile` with every default resolved."""

    block: str
    batch: int
    channels: int
    key_channels: int
    value_channels: int
    height: int
    width: int
    options: dict[str, Any]  # every block option, defaults included
    impl: str
    backend: str | None
    dtype: str
    device: str
    mode: str
    path: str = "reference"

    def config(self) -> formulas.Config:
        """The :class:`isaprof.formulas.Config` of this setup."""
        opts = tuple(sorted((k, _hashable(v)) for k, v in self.options.items()))
        fields = ("block", "batch", "channels", "key_channels", "value_channels", "height", "width")
        return formulas.Config(
            **{f: getattr(self, f) for f in fields},
            dtype=self.dtype,
            impl=self.impl,
            backend=self.backend,
            options=opts,
        )

    def config_fields(self, padded: tuple[int, int] | None) -> dict[str, Any]:
        """The configuration columns of a tidy row (``padded`` None: unknown, left empty)."""
        factor = self.options.get("factor")
        recurrence = self.options.get("recurrence")
        return {
            "block": self.block,
            "batch": self.batch,
            "channels": self.channels,
            "key_channels": self.key_channels,
            "value_channels": self.value_channels,
            "height": self.height,
            "width": self.width,
            "padded_height": padded[0] if padded else None,
            "padded_width": padded[1] if padded else None,
            "factor": f"{factor[0]}x{factor[1]}" if isinstance(factor, (tuple, list)) else "",
            "recurrence": recurrence if recurrence is not None else "",
            "options": json.dumps(self.options, sort_keys=True, default=str),
            "impl": self.impl,
            "backend": self.backend or "",
            "path": self.path,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
        }


@dataclass(frozen=True)
class Record:
    """Measured and analytic costs of one configuration (units: MACs, bytes, ms, counts).

    ``flop_count``: FlopCounterMode result (``by_op`` in FLOPs, ``uncounted`` ops without a formula);
    ``macs_by_term`` / ``elementwise``: the formula's terms (MACs of the measured mode; forward element-wise
    ops); ``peak_bytes_analytic`` None when the formula gives none for this mode; ``latency`` None on meta.
    """

    setup: Setup
    padded: tuple[int, int]
    params: int
    params_analytic: int
    flop_count: FlopCount
    macs_by_term: Mapping[str, int]
    elementwise: Mapping[str, int]
    peak_bytes: int
    peak_bytes_analytic: int | None
    latency: Latency | None
    environment: Mapping[str, Any]
    notes: tuple[str, ...] = field(default_factory=tuple)
    peak_tolerance: formulas.Tolerance | None = None  # the formula's named allowance on peak_bytes, if any

    @property
    def macs(self) -> int:
        return self.flop_count.macs

    @property
    def macs_analytic(self) -> int:
        return sum(self.macs_by_term.values())

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows (:data:`COLUMNS`, docs/ARCHITECTURE.md): params, macs, flops, elementwise,
        peak_bytes and, off meta, latency_ms."""
        metrics: list[tuple[str, Any, Any, Any]] = [
            ("params", self.params, self.params_analytic, None),
            ("macs", self.macs, self.macs_analytic, None),
            ("flops", self.flop_count.flops, 2 * self.macs_analytic, None),
            ("elementwise", None, sum(self.elementwise.values()), None),
            ("peak_bytes", self.peak_bytes, self.peak_bytes_analytic, None),
        ]
        if self.latency is not None:
            metrics.append(("latency_ms", self.latency.median_ms, None, self.latency.iqr_ms))
        base = self.setup.config_fields(self.padded)
        return [
            _row(base, m, meas, ana, spread, "ok", "", self.environment) for m, meas, ana, spread in metrics
        ]

    def to_json(self) -> dict[str, Any]:
        """The ``isaprof profile --json`` object (raw numbers; ``latency_ms`` null on meta)."""
        fc = self.flop_count
        return {
            "config": self.setup.config_fields(self.padded),
            "params": {"measured": self.params, "analytic": self.params_analytic},
            "macs": {
                "measured": self.macs,
                "analytic": self.macs_analytic,
                "by_op": {op: f // 2 for op, f in fc.by_op.items()},
                "by_term": dict(self.macs_by_term),
            },
            "flops": {
                "measured": fc.flops,
                "analytic": 2 * self.macs_analytic,
                "by_op": dict(fc.by_op),
                "by_term": {k: 2 * v for k, v in self.macs_by_term.items()},
            },
            "uncounted_ops": list(fc.uncounted),
            "peak_bytes": {"measured": self.peak_bytes, "analytic": self.peak_bytes_analytic},
            "latency_ms": self.latency.median_ms if self.latency else None,
            "latency_iqr_ms": self.latency.iqr_ms if self.latency else None,
            "latency_noisy": self.latency.noisy if self.latency else None,
            "elementwise": {"analytic": sum(self.elementwise.values()), "by_term": dict(self.elementwise)},
            "environment": dict(self.environment),
            "notes": list(self.notes),
        }


def _row(
    base: dict[str, Any],
    metric: str,
    measured: Any,
    analytic: Any,
    spread: Any,
    status: str,
    error: str,
    env: Mapping[str, Any],
) -> dict[str, Any]:
    row = {
        **base,
        "metric": metric,
        "measured": measured,
        "analytic": analytic,
        "unit": UNITS[metric],
        "spread": spread,
        "status": status,
        "error": error,
        **{k: env[k] for k in ENV_FIELDS},
    }
    return {c: row[c] for c in COLUMNS}


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def resolve(
    name: str,
    size: tuple[int, int],
    channels: int,
    key_channels: int | None = None,
    value_channels: int | None = None,
    batch: int = 1,
    device: str = "meta",
    dtype: str = "float32",
    mode: str = "inference",
    impl: str = "naive",
    backend: str | None = None,
    path: str = "reference",
    **block_options: Any,
) -> Setup:
    """Validate the arguments of :func:`profile` and fill every default; ``ValueError`` on bad input."""
    s = blocks.spec(name)  # ValueError listing known blocks
    ck, cv = blocks.resolve_channels(name, channels, key_channels, value_channels)
    size_ok = isinstance(size, (tuple, list)) and len(size) == 2
    if not (size_ok and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch <= 0:
        raise ValueError(f"batch must be a positive integer, got {batch!r}")
    _check_choice("device", device, DEVICES)
    _check_choice("dtype", dtype, tuple(DTYPES))
    _check_choice("mode", mode, MODES)
    _check_choice(f"impl of block {name!r}", impl, s.impls)
    _check_choice("path", path, PATHS)
    if path == "fast" and mode != "inference":
        raise ValueError(
            "the fast path is inference-only (BatchNorm folded, no autograd); use path 'reference'"
        )
    unknown = sorted(set(block_options) - set(s.options))
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in s.options.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; its options: {allowed}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"CUDA requested but torch reports no CUDA device (torch {torch.__version__}); "
            "use --device meta or cpu"
        )
    backend = resolve_backend(impl, backend, device, ck, cv)
    with torch.device("meta"):  # the block's own checks (factor, recurrence, ...) speak before any formula
        blocks.build(name, channels, ck, cv, impl=impl, **block_options)
    options = {**s.options, **block_options}
    return Setup(
        name, batch, channels, ck, cv, size[0], size[1], options, impl, backend, dtype, device, mode, path
    )


def _check_choice(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def resolve_backend(
    impl: str, backend: str | None, device: str, key_channels: int, value_channels: int
) -> str | None:
    """The sdpa kernel to force: None for ``naive``; for ``sdpa`` the given one or a per-device default.

    Defaults mirror torch's own choice: on cpu/meta the fused CPU kernel (``"flash"``) when it applies
    (4-D inputs with Ck == Cv; blocks pass 4-D), else ``"math"``; on cuda ``"flash"`` if this build has it,
    else ``"efficient"``. If a defaulted ``"flash"`` still finds no kernel, :func:`profile` falls back
    to ``"math"`` and records that.
    """
    if impl != "sdpa":
        if backend is not None:
            raise ValueError(f"backend {backend!r} applies to impl 'sdpa' only (got impl {impl!r})")
        return None
    if backend is not None:
        _check_choice("sdpa backend", backend, tuple(BACKENDS))
        if device != "cuda" and backend in CUDA_ONLY_BACKENDS:
            raise ValueError(f"sdpa backend {backend!r} needs cuda; on {device} use: math, flash")
        return backend
    if device == "cuda":
        return "flash" if torch.backends.cuda.is_flash_attention_available() else "efficient"
    return "flash" if key_channels == value_channels else "math"


@contextlib.contextmanager
def _placement(setup: Setup) -> Iterator[tuple[nn.Module, torch.Tensor, int]]:
    """Build the block (on its path) and its input on the setup's device, and count the reference
    block's parameters; on meta, inside a ``FakeTensorMode``."""
    dtype = DTYPES[setup.dtype]
    args = (setup.block, setup.channels, setup.key_channels, setup.value_channels)
    shape = (setup.batch, setup.channels, setup.height, setup.width)
    opts = dict(setup.options)
    if setup.device == "meta":
        with torch.device("meta"):
            block = blocks.build(*args, impl=setup.impl, **opts).to(dtype)
        with FakeTensorMode(allow_non_fake_inputs=True):
            block = block.to_empty(device="cpu")
            params = _count_params(block)
            yield _on_path(block, setup.path), torch.empty(shape, dtype=dtype), params  # (B, C, H, W), fake
        return
    block = blocks.build(*args, impl=setup.impl, **opts).to(device=setup.device, dtype=dtype)
    x = torch.randn(shape, dtype=dtype, device=setup.device)  # (B, C, H, W)
    yield _on_path(block, setup.path), x, _count_params(block)


def _count_params(block: nn.Module) -> int:
    return sum(p.numel() for p in block.parameters())


def _on_path(block: nn.Module, path: str) -> nn.Module:
    """The reference block itself, or its inference fast path (same outputs; see isaprof.blocks.fast)."""
    if path == "reference":
        return block
    from isaprof.blocks.fast import fast_inference  # lazy: only the fast path needs it

    return fast_inference(block.eval())


def _with_backend(fn: Callable[[], Any], backend: str | None) -> Callable[[], Any]:
    if backend is None:
        return fn

    def run() -> Any:
        with sdpa_kernel(BACKENDS[backend]):
            return fn()

    return run


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-memory failure (torch.OutOfMemoryError or an allocator RuntimeError)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, (RuntimeError, MemoryError)) and (
        isinstance(exc, MemoryError) or "out of memory" in text or "can't allocate" in text
    )


def profile(
    name: str,
    size: tuple[int, int],
    channels: int,
    key_channels: int | None = None,
    value_channels: int | None = None,
    batch: int = 1,
    device: str = "meta",
    dtype: str = "float32",
    mode: str = "inference",
    impl: str = "naive",
    backend: str | None = None,
    latency: str | None = "quick",
    path: str = "reference",
    **block_options: Any,
) -> Record:
    """Profile block ``name`` on a (batch, channels, *size) input: MACs, peak bytes, params, latency.

    ``latency``: ``"quick"``, ``"fixed"`` or None (skip); never measured on meta. ``path``:
    ``"reference"`` (default) or ``"fast"`` (inference fast path: its MACs are checked against the
    reference formula; it has no peak-memory formula; its peak is that of its first call, workspace included).
    Bad input raises ``ValueError``; out-of-memory errors propagate as raised (see :func:`is_oom`).

    >>> rec = profile("dense", size=(16, 16), channels=32, device="meta")
    >>> rec.macs == rec.macs_analytic
    True
    """
    if latency is not None:
        _check_choice("latency protocol", latency, tuple(PROTOCOLS))
    setup = resolve(
        name,
        size,
        channels,
        key_channels,
        value_channels,
        batch,
        device,
        dtype,
        mode,
        impl,
        backend,
        path,
        **block_options,
    )
    cost = formulas.cost(setup.config())
    notes = list(cost.notes)
    if setup.path == "fast":
        cost = dataclasses.replace(cost, peak_bytes={}, peak_tolerance={})
        notes.append(
            "fast path: no peak-memory formula; peak measured on the first call (workspace included)"
        )
    try:
        measured = _measure(setup, latency)
    except RuntimeError as e:
        if backend is not None or setup.backend != "flash" or "no available kernel" not in str(e).lower():
            clear = _unsupported_dtype(e, setup)
            if clear is None:
                raise
            raise clear from e
        setup = dataclasses.replace(setup, backend="math")  # defaulted flash found no kernel
        cost = formulas.cost(setup.config())
        notes.append("sdpa: the fused CPU kernel does not apply to these shapes; ran the math kernel")
        measured = _measure(setup, latency)
    params, flop_count, peak, lat = measured
    return Record(
        setup=setup,
        padded=tuple(cost.padded),
        params=params,
        params_analytic=cost.params,
        flop_count=flop_count,
        macs_by_term=dict(cost.macs if setup.mode == "inference" else cost.train_macs),
        elementwise=dict(cost.elementwise),
        peak_bytes=peak,
        peak_bytes_analytic=cost.peak_bytes.get(setup.mode),
        latency=lat,
        environment=environment(setup.device),
        notes=tuple(notes),
        peak_tolerance=cost.peak_tolerance.get(setup.mode),
    )


def _measure(setup: Setup, latency: str | None) -> tuple[int, FlopCount, int, Latency | None]:
    """(params, FLOP count, peak bytes, latency) of the setup, following the protocol of measure.step."""
    with _placement(setup) as (block, x, params):
        run = _with_backend(step(block, x, setup.mode), setup.backend)
        # peak first: a fast-path module allocates its reusable workspace on its first call
        if setup.device == "cuda":
            peak = cuda_peak(run)
        else:
            peak = track_peak(run).peak
        flop_count = count_flops(run)
        lat = None
        if latency is not None and setup.device != "meta":
            lat = measure_latency(run, latency, setup.device)
    return params, flop_count, peak, lat


def _unsupported_dtype(e: RuntimeError, setup: Setup) -> ValueError | None:
    """A one-line ValueError for a kernel that lacks the setup's half dtype; None for other errors."""
    text = str(e)
    if "not implemented for" in text and setup.dtype in ("float16", "bfloat16"):
        first = text.strip().splitlines()[0]
        return ValueError(f"dtype {setup.dtype} is not supported on {setup.device} by torch here ({first})")
    return None


def error_rows(
    name: str,
    size: tuple[int, int],
    channels: int,
    status: str,
    message: str,
    **config: Any,
) -> list[dict[str, Any]]:
    """Tidy rows for a configuration that failed: ``status`` (``"oom"`` or ``"error"``), the one-line
    ``message``, ``measured`` empty. ``analytic`` is filled where the formula can still give it.
    ``config``: the other keyword arguments of :func:`profile` but ``latency`` (key/value channels, batch,
    device, dtype, mode, impl, backend, path, block options). The configuration itself must be valid
    (``ValueError`` otherwise, as :func:`profile`)."""
    _check_choice("status", status, ("oom", "error"))
    setup = resolve(name, size, channels, **config)
    try:
        cost = formulas.cost(setup.config())
        train = setup.mode == "train"
        macs = sum((cost.train_macs if train else cost.macs).values())
        analytic: dict[str, Any] = {
            "params": cost.params,
            "macs": macs,
            "flops": 2 * macs,
            "elementwise": sum(cost.elementwise.values()),
            "peak_bytes": cost.peak_bytes.get(setup.mode),
        }
        padded: tuple[int, int] | None = tuple(cost.padded)
    except Exception:  # noqa: BLE001 - a broken formula must not hide the original failure
        analytic, padded = {}, None
    metrics = ["params", "macs", "flops", "elementwise", "peak_bytes"]
    if setup.device != "meta":
        metrics.append("latency_ms")
    one_line = " ".join(str(message).split())
    base = setup.config_fields(padded)
    env = environment(setup.device)
    return [_row(base, m, None, analytic.get(m), None, status, one_line, env) for m in metrics]
