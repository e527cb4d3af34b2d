"""One configuration -> one :class:`Record`: the target, its closed-form costs and the measurements.

The one place where a :class:`~isaprof.config.Config` meets a block, its formula and the measurements;
everything that runs configurations (sweep, check, reproduce, baseline, benchmarks) goes through
:func:`profile`. Devices: ``meta`` (fake CPU tensors: the block is built on ``meta`` and moved with
``to_empty`` inside ``FakeTensorMode``; counts and peak bytes at any size in seconds, no latency), ``cpu``
(real tensors, latency too) and ``cuda``/``cuda:N`` (allocator peak). Fake *CUDA* tensors are not
offered: torch 2.13 runs their forward but a fake-CUDA backward aborts the process, and the CPU-fake peak
equals the CUDA figure up to the allocator's 512-byte rounding and kernel workspaces.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedOperatorException,
)
from torch.nn.attention import SDPBackend, sdpa_kernel

from isaprof import formulas
from isaprof import targets as blocks
from isaprof.config import Config, RunSettings, check_choice, row
from isaprof.measure import (
    FlopCount,
    Latency,
    MemoryPeak,
    count_flops,
    cuda_peak,
    environment,
    measure_latency,
    step,
    track_peak,
)
from isaprof.measure.cuda_memory import CudaAllocatorModel, module_to_order
from isaprof.measure.modules import ModuleRow, breakdown
from isaprof.measure.traffic import BytesMoved, TrafficCounter
from isaprof.measure.training import StepMemory, StepOptions, TrainingStep, measure_step, resolve

TORCH_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
SDP_BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}


@dataclass(frozen=True)
class Record:
    """Measured and analytic costs of one configuration (units: MACs, bytes, ms, counts).

    ``flop_count``: FlopCounterMode result (``by_op`` in FLOPs, ``uncounted`` ops without a formula);
    ``macs_by_term`` / ``elementwise``: the formula's terms (MACs of the measured mode; forward element-wise
    ops); ``peak_bytes_analytic`` None when the formula gives none for this mode; ``latency`` None on meta.
    """

    config: Config
    padded: tuple[int, int] | None  # None: the target has no formula to say what it computes on
    params: int
    params_analytic: int | None
    flop_count: FlopCount
    macs_by_term: Mapping[str, int]
    elementwise: Mapping[str, int]
    peak_bytes: int
    peak_bytes_analytic: int | None
    latency: Latency | None
    environment: Mapping[str, Any]
    notes: tuple[str, ...] = field(default_factory=tuple)
    by_module: tuple[ModuleRow, ...] | None = None  # per-submodule costs (profile(by_module=True))
    # traffic of an unfused execution (measure.traffic); the CUDA allocator's peak, predicted on meta
    bytes_moved: BytesMoved | None = None
    peak_bytes_cuda_predicted: int | None = None
    peak_tolerance: formulas.Tolerance | None = None  # the formula's named allowance on peak_bytes, if any
    # peak_bytes includes the modelled scratch of fused ops (measure.scratch); the tensors alone, the ops
    # whose scratch was modelled and those known to allocate inside without a rule ("aten.op" -> calls)
    peak_bytes_tensors: int | None = None
    scratch_ops: Mapping[str, int] = field(default_factory=dict)
    unmodelled_ops: Mapping[str, int] = field(default_factory=dict)
    # what the module was fed ((B, C, H, W) or (B, N, C)) and what came out (described, one line); the
    # notes that are warnings (a module that does not keep its input's layout), also among the notes
    input_shape: tuple[int, ...] | None = None
    output: str | None = None
    warnings: tuple[str, ...] = ()
    # mode "step": the step's memory in absolute bytes (peak_bytes is then the peak above its resident state
    # and peak_bytes_cuda_predicted the absolute max_memory_allocated)
    step_memory: StepMemory | None = None

    @property
    def macs(self) -> int:
        return self.flop_count.macs

    @property
    def has_formula(self) -> bool:
        """Whether a closed-form formula gave the analytic column (optional for a target)."""
        return self.params_analytic is not None

    @property
    def macs_analytic(self) -> int | None:
        return sum(self.macs_by_term.values()) if self.has_formula else None

    @property
    def flops_analytic(self) -> int | None:
        return 2 * self.macs_analytic if self.has_formula else None

    @property
    def elementwise_analytic(self) -> int | None:
        return sum(self.elementwise.values()) if self.has_formula else None

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows (:data:`isaprof.config.COLUMNS`): params, macs, flops, elementwise, peak_bytes and,
        off meta, latency_ms and peak_fraction (the FLOP rate over the same run's interleaved sgemm rate,
        :class:`isaprof.measure.latency.PeakFraction`)."""
        metrics: list[tuple[str, Any, Any, Any]] = [
            ("params", self.params, self.params_analytic, None),
            ("macs", self.macs, self.macs_analytic, None),
            ("flops", self.flop_count.flops, self.flops_analytic, None),
            ("elementwise", None, self.elementwise_analytic, None),
            ("peak_bytes", self.peak_bytes, self.peak_bytes_analytic, None),
        ]
        if self.bytes_moved is not None:
            metrics.append(("bytes_moved", self.bytes_moved.total, None, None))
        out = [
            row(self.config, m, meas, ana, env=self.environment, padded=self.padded, spread=spread)
            for m, meas, ana, spread in metrics
        ]
        lat = self.latency
        if lat is not None:
            out.append(
                row(self.config, "latency_ms", lat.median_ms, None, env=self.environment, padded=self.padded,
                    spread=lat.iqr_ms, samples=lat.samples, flags=lat.flags())
            )  # fmt: skip
            peak = lat.peak_fraction
            if peak is not None:
                out.append(
                    row(self.config, "peak_fraction", peak.median, None, env=self.environment,
                        padded=self.padded, spread=peak.iqr, samples=peak.samples, flags=lat.flags())
                )  # fmt: skip
        return out

    def module_rows(self) -> list[dict[str, Any]]:
        """Tidy rows of the per-module breakdown (empty without one): the configuration columns, then
        ``module`` (dotted, root ``""``), ``depth``, ``metric`` (params, macs, self_macs, peak_bytes),
        ``measured`` and ``unit``. See :mod:`isaprof.measure.modules` for the attribution rules."""
        units = {"params": "count", "macs": "MAC", "self_macs": "MAC", "peak_bytes": "byte"}
        base = self.config.to_row(self.padded)
        return [
            {**base, "module": r.module, "depth": r.depth, "metric": m, "measured": getattr(r, m), "unit": u}
            for r in self.by_module or ()
            for m, u in units.items()
        ]

    def to_json(self) -> dict[str, Any]:
        """The ``isaprof profile --json`` object (raw numbers; ``latency_ms`` null on meta)."""
        fc = self.flop_count
        peak = self.latency.peak_fraction if self.latency else None
        return {
            "config": self.config.to_row(self.padded),
            "params": {"measured": self.params, "analytic": self.params_analytic},
            "macs": {
                "measured": self.macs,
                "analytic": self.macs_analytic,
                "by_op": {op: f // 2 for op, f in fc.by_op.items()},
                "by_term": dict(self.macs_by_term),
            },
            "flops": {
                "measured": fc.flops,
                "analytic": self.flops_analytic,
                "by_op": dict(fc.by_op),
                "by_term": {k: 2 * v for k, v in self.macs_by_term.items()},
            },
            "uncounted_ops": dict(fc.uncounted),
            "peak_bytes": {
                "measured": self.peak_bytes,
                "tensors": self.peak_bytes_tensors,
                "scratch_ops": dict(self.scratch_ops),
                "unmodelled_ops": dict(self.unmodelled_ops),
                "analytic": self.peak_bytes_analytic,
                "cuda_predicted": self.peak_bytes_cuda_predicted,
                "tolerance": (
                    {
                        "bytes": self.peak_tolerance.bytes,
                        "name": self.peak_tolerance.name,
                        "reason": self.peak_tolerance.reason,
                    }
                    if self.peak_tolerance is not None
                    else None
                ),  # fmt: skip
            },
            "bytes_moved": {
                "measured": self.bytes_moved.total if self.bytes_moved else None,
                "reads": self.bytes_moved.reads if self.bytes_moved else None,
                "writes": self.bytes_moved.writes if self.bytes_moved else None,
                "by_op": dict(self.bytes_moved.by_op) if self.bytes_moved else {},
            },
            "latency_ms": self.latency.median_ms if self.latency else None,
            "latency_iqr_ms": self.latency.iqr_ms if self.latency else None,
            "latency_noisy": self.latency.noisy if self.latency else None,
            "latency_samples": self.latency.samples if self.latency else None,
            "latency_calls_per_sample": self.latency.number if self.latency else None,
            "latency_contended": self.latency.contended if self.latency else None,
            "peak_fraction": peak.median if peak else None,
            "peak_fraction_iqr": peak.iqr if peak else None,
            "peak_gemm_gflops": peak.gemm_gflops if peak else None,
            "elementwise": {"analytic": self.elementwise_analytic, "by_term": dict(self.elementwise)},
            "environment": dict(self.environment),
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "output": self.output,
            **self.step_json(),
            **({"by_module": [r.as_dict() for r in self.by_module]} if self.by_module is not None else {}),
        }

    def step_json(self) -> dict[str, Any]:
        """Mode "step"'s keys of the JSON object (none in other modes): ``peak_bytes_total`` (tensor bytes
        at the peak, resident state included), ``peak_bytes_parts``, ``peak_bytes_cuda_predicted``
        (absolute ``max_memory_allocated``) and ``peak_bytes_cuda_reserved_predicted``."""
        m = self.step_memory
        if m is None:
            return {}
        return {
            "peak_bytes_total": m.total,
            "peak_bytes_parts": m.parts(),
            "peak_bytes_cuda_predicted": m.cuda_allocated,
            "peak_bytes_cuda_reserved_predicted": m.cuda_reserved,
        }


def prepare(block: Any, /, **kwargs: Any) -> Config:
    """The configuration to run: a :class:`Config` (returned as is, with no other argument allowed) or the
    keyword form (resolved by :func:`isaprof.targets.configure`), with ``cuda`` refused without a CUDA
    device and the sdpa backend chosen (:func:`default_backend`). Nothing is built: the block's own
    constructor checks (a bad ``factor``) speak at the one build, before any formula (:func:`profile`)."""
    if isinstance(block, Config):
        if kwargs:
            raise ValueError(f"give a Config or keyword arguments, not both (got {', '.join(kwargs)})")
        config = block
    else:
        config = blocks.configure(block, **kwargs)
    if config.device_type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"CUDA requested but torch reports no CUDA device (torch {torch.__version__}); "
            "use --device meta or cpu"
        )
    return dataclasses.replace(config, backend=default_backend(config))


def analytic_cost(config: Config) -> formulas.Cost | None:
    """The closed-form costs of ``config`` by its target's formula, or None (formulas are optional)."""
    fn = formulas.find(blocks.spec(config.block).formula_name)
    return fn(config) if fn is not None else None


def default_backend(config: Config) -> str | None:
    """The sdpa kernel to force: None for ``naive``; for ``sdpa`` the configured one or a per-device default.

    Defaults mirror torch's own choice: on cpu/meta the fused CPU kernel (``"flash"``) when it applies
    (4-D inputs with Ck == Cv; blocks pass 4-D), else ``"math"``; on cuda ``"flash"`` if this build has it,
    else ``"efficient"``. If a defaulted ``"flash"`` still finds no kernel, :func:`profile` falls back
    to ``"math"`` and records that.
    """
    if config.impl != "sdpa" or config.backend is not None:
        return config.backend
    if config.device_type == "cuda":
        return "flash" if torch.backends.cuda.is_flash_attention_available() else "efficient"
    return "flash" if config.key_channels == config.value_channels else "math"


@contextlib.contextmanager
def _placement(config: Config) -> Iterator[tuple[nn.Module, torch.Tensor, int]]:
    """Build the block (on its path) and its input on the configured device, and count the reference
    block's parameters; on meta, inside a ``FakeTensorMode``."""
    dtype = TORCH_DTYPES[config.dtype]
    args = (config.block, config.channels, config.key_channels, config.value_channels)
    opts = dict(config.options)
    if config.device == "meta":
        with torch.device("meta"):
            block = blocks.build(*args, impl=config.impl, **opts).to(dtype)
        with FakeTensorMode(allow_non_fake_inputs=True):
            block = block.to_empty(device="cpu")
            params = _count_params(block)
            x = torch.empty(input_shape(config, block), dtype=dtype)  # (B, C_in, H, W) or (B, N, C_in)
            yield _on_path(block, config.path), x, params
        return
    block = blocks.build(*args, impl=config.impl, **opts).to(device=config.device, dtype=dtype)
    x = torch.randn(input_shape(config, block), dtype=dtype, device=config.device)
    yield _on_path(block, config.path), x, _count_params(block)


@contextlib.contextmanager
def protocol_step(config: Config) -> Iterator[Callable[[], Any]]:
    """The configuration's protocol step (what :func:`profile` times), built and placed once, as a
    callable: for timing several configurations interleaved (:func:`isaprof.measure.latency.compare_latency`).
    ``config``: a record's configuration (its sdpa backend as profile ran it); a real device only."""
    if config.device == "meta":
        raise ValueError("a protocol step to time needs a real device (cpu, cuda), not meta")
    with _placement(config) as (module, x, _):
        run = _with_backend(step(module, x, config.mode), config.backend)
        yield run if blocks.spec(config.block).standard_contract else _explained(run, config)


def input_shape(config: Config, block: nn.Module | None = None) -> tuple[int, ...]:
    """(B, C_in, H, W), or (B, H*W, C_in) for the ``tokens`` layout: ``C_in`` is the module's
    ``in_channels`` where it declares one (a head fed by a 2048-wide backbone), else the configuration's
    ``channels``."""
    c_in = getattr(block, "in_channels", None)
    c_in = c_in if isinstance(c_in, int) and not isinstance(c_in, bool) and c_in > 0 else config.channels
    if config.layout == "tokens":
        return (config.batch, config.height * config.width, c_in)
    return (config.batch, c_in, config.height, config.width)


LAYOUT_NAMES = {"map": "(B, C, H, W)", "tokens": "(B, N, C)"}


def describe(out: Any, depth: int = 0) -> str:
    """A module's output in one line: a tensor's shape and dtype, a dict's / tuple's entries (nested)."""
    if isinstance(out, torch.Tensor):
        return f"tensor {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')}"
    if depth >= 2:
        return type(out).__name__
    if isinstance(out, Mapping):
        items = [f"{k}: {describe(v, depth + 1)}" for k, v in list(out.items())[:8]]
        more = ", ..." if len(out) > 8 else ""
        return f"{type(out).__name__} {{{', '.join(items)}{more}}}"
    if isinstance(out, (tuple, list)):
        items = [describe(v, depth + 1) for v in out[:8]]
        more = ", ..." if len(out) > 8 else ""
        return f"{type(out).__name__} ({', '.join(items)}{more})"
    return "None" if out is None else type(out).__name__


def output_notes(
    config: Config, shape: tuple[int, ...], out: Any, output: str | None
) -> tuple[list[str], list[str]]:
    """(notes, warnings) about what the module returned for an input of ``shape``: the rule applied to
    a non-tensor output in train mode, and a warning where the output is not one tensor of the input's
    layout (``(B, C', H', W')`` for a map, ``(B, N', C')`` for tokens)."""
    notes: list[str] = []
    warns: list[str] = []
    layout = LAYOUT_NAMES[config.layout]
    picked = f" (its entry {output!r})" if output is not None else ""
    if config.mode == "train" and not isinstance(out, torch.Tensor):
        notes.append(
            "train: the output is not one tensor; back-propagated the sum of its floating tensor leaves "
            "(times the module's loss_weights where it has them); --output KEY picks one entry"
        )
    same = isinstance(out, torch.Tensor) and out.dim() == len(shape) and out.shape[0] == shape[0]
    if not same:
        warns.append(
            f"{config.block!r} maps its input {shape} {layout} to {describe(out)}{picked}, not to "
            f"the same layout {layout}"
        )
    elif tuple(out.shape) != shape:
        notes.append(f"output {describe(out)}{picked} for the input {shape} {layout}")
    return notes, warns


def _count_params(block: nn.Module) -> int:
    return sum(p.numel() for p in block.parameters())


def _on_path(block: nn.Module, path: str) -> nn.Module:
    """The reference block itself, or its inference fast path (same outputs; see isaprof.targets.fast)."""
    if path == "reference":
        return block
    from isaprof.targets.fast import fast_inference  # lazy: only the fast path needs it

    return fast_inference(block.eval())


def _with_backend(fn: Callable[[], Any], backend: str | None) -> Callable[[], Any]:
    if backend is None:
        return fn

    def run() -> Any:
        with sdpa_kernel(SDP_BACKENDS[backend]):
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


def _analytic(config: Config, options: Any) -> tuple[Any, list[str]]:
    """The configuration's closed-form cost (None without a formula) and the notes on it: no peak formula
    on the fast path (its peak is its first call's, workspace included) nor in step mode (the formulas
    cover the module's inference and train passes only)."""
    cost = analytic_cost(config)
    notes = list(cost.notes) if cost is not None else ["no closed-form formula for this target"]
    if config.path == "fast":
        notes.append(
            "fast path: no peak-memory formula; peak measured on the first call (workspace included)"
        )
    if options is not None:
        notes.append(f"step settings ({options.describe()})")
    if cost is not None and (config.path == "fast" or options is not None):
        cost = dataclasses.replace(cost, peak_bytes={}, peak_tolerance={})
    return cost, notes


def _raise_clear(error: RuntimeError, config: Config, defaulted: bool) -> None:
    """Re-raise a measuring run's ``error`` as one clear line where it is a known limit (fake tensors, a
    dtype the kernel lacks), or as it was; return only when a defaulted flash backend found no kernel (the
    caller then runs the math kernel)."""
    limit = fake_limit(error, config)
    if limit is not None:
        raise limit from None
    if not defaulted or config.backend != "flash" or "no available kernel" not in str(error).lower():
        clear = _unsupported_dtype(error, config)
        if clear is None:
            raise error
        raise clear from error


def profile(
    block: Any,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    key_channels: int | None = None,
    value_channels: int | None = None,
    *,
    latency: str | None = "quick",
    by_module: bool = False,
    output: str | None = None,
    **config: Any,
) -> Record:
    """Profile one configuration: MACs, peak bytes, params, latency, each beside its closed form.

    ``block``: the target with the keyword form of :func:`isaprof.targets.configure` (``size``, ``channels``,
    ``key_channels``, ``value_channels``, ``batch``, ``device``, ``dtype``, ``mode``, ``impl``, ``backend``,
    ``path`` and the target's options), or a :class:`Config` alone. A target is a registered name, an
    import path ``"pkg.module:Attr"`` (a class, or a function returning an ``nn.Module``; it receives
    ``channels``, ``key_channels``, ``value_channels`` and ``impl`` only where it accepts them), an
    ``nn.Module`` instance (measured on a deep copy, never mutated) or a callable returning one. A target
    without a formula gets an empty analytic column. ``by_module``: also break MACs and peak bytes down
    per submodule (:mod:`isaprof.measure.modules`). ``latency``: ``"quick"``,
    ``"fixed"``, ``"none"``/None (skip); never measured on meta. ``output``: the entry of a dict / tuple
    output that train mode back-propagates (a key, or an index); by default the sum of its floating
    tensor leaves (:func:`isaprof.measure.protocol.step`); the record's notes say which rule applied and
    what came out. ``layout="tokens"`` feeds ``(B, H*W, C)`` instead of ``(B, C, H, W)``.
    ``path="fast"``: the inference fast path (its MACs are checked against the reference formula; it has
    no peak-memory formula; its peak is that of its first call, workspace included). Bad input raises
    ``ValueError``; out-of-memory errors propagate as raised (see :func:`is_oom`).

    Builds: the configuration is resolved once (no build) and the block is built once, on its device (on
    ``meta`` inside fake tensors), before any formula, so its constructor's checks speak first; the
    per-module breakdown reuses that build, but on cuda, where it is a CPU replay on fake tensors (one more
    build, on meta). The CLI's memory guard, off meta, adds one build on meta to predict the peak: a real
    run's module cannot be that prediction's (it holds real weights; the fake one cannot be moved).

    >>> rec = profile("dense", size=(16, 16), channels=32, device="meta")
    >>> rec.macs == rec.macs_analytic
    True
    """
    step_kw = {k: config.pop(k) for k in list(config) if k in RunSettings.names()}
    settings = RunSettings(latency=latency, by_module=by_module, **step_kw)  # bad values refused
    given = dict(size=size, channels=channels, key_channels=key_channels, value_channels=value_channels)
    config = {**{k: v for k, v in given.items() if v is not None}, **config}
    if not isinstance(block, (str, Config)):  # an nn.Module instance, a class or a factory function
        with blocks.registry.adopted(block) as name:
            return profile(name, **settings.kwargs(), output=output, **config)
    cfg = prepare(block, **config)
    defaulted = (block.backend if isinstance(block, Config) else config.get("backend")) is None
    # the one build: the block's own checks (factor, recurrence, ...) speak before any formula
    with _placement(cfg) as (module, x, params):
        options = resolve(**settings.step_settings()) if cfg.mode == "step" else None
        cost, notes = _analytic(cfg, options)
        seen: list[Any] = []  # the first call's output
        try:
            measured = _measure(cfg, module, x, settings.latency, output, seen, options)
        except RuntimeError as e:
            _raise_clear(e, cfg, defaulted)
            cfg = dataclasses.replace(cfg, backend="math")  # defaulted flash found no kernel
            cost, _ = _analytic(cfg, options)
            notes.append("sdpa: the fused CPU kernel does not apply to these shapes; ran the math kernel")
            measured = _measure(cfg, module, x, settings.latency, output, seen, options)
        said, warned = output_notes(cfg, tuple(x.shape), seen[0] if seen else None, output)
        if blocks.spec(cfg.block).standard_contract:  # a registered target returns what it is known to
            said, warned = said + warned, []
        notes += said + warned
        shown_output = describe(seen[0]) if seen else None
        in_shape = tuple(x.shape)
        modules = None
        if settings.by_module:  # on cuda: a CPU replay on fake tensors (one more build, on meta)
            modules = (
                _by_module(cfg, output) if cfg.device_type == "cuda" else _breakdown(cfg, module, x, output)
            )
    flop_count, memory, lat, moved, cuda_predicted, step_memory = measured
    notes += memory_notes(memory.unmodelled, cuda_predicted is not None and _convolves(flop_count))
    return Record(
        config=cfg,
        padded=tuple(cost.padded) if cost is not None else None,
        params=params,
        params_analytic=cost.params if cost is not None else None,
        flop_count=flop_count,
        macs_by_term=dict(_macs_terms(cost, cfg.mode)),
        elementwise=dict(cost.elementwise) if cost is not None else {},
        peak_bytes=memory.peak,
        peak_bytes_analytic=cost.peak_bytes.get(cfg.mode) if cost is not None else None,
        latency=lat,
        environment=environment(cfg.device),
        notes=tuple(notes),
        by_module=modules,
        bytes_moved=moved,
        peak_bytes_cuda_predicted=cuda_predicted,
        peak_tolerance=cost.peak_tolerance.get(cfg.mode) if cost is not None else None,
        peak_bytes_tensors=memory.tensor_peak,
        scratch_ops=dict(memory.scratch_ops),
        unmodelled_ops=dict(memory.unmodelled),
        input_shape=in_shape,
        output=shown_output,
        warnings=tuple(warned),
        step_memory=step_memory,
    )


def _macs_terms(cost: formulas.Cost | None, mode: str) -> Mapping[str, int]:
    """The formula's MACs of the mode (none for mode "step": the loss and the update are not in it, and
    the batch has no gradient)."""
    if cost is None or mode == "step":
        return {}
    return cost.macs if mode == "inference" else cost.train_macs


def _breakdown(
    config: Config, block: nn.Module, x: torch.Tensor, output: str | None = None
) -> tuple[ModuleRow, ...]:
    return breakdown(block, _with_backend(step(block, x, config.mode, output), config.backend)).rows


def _by_module(config: Config, output: str | None = None) -> tuple[ModuleRow, ...]:
    """The per-module breakdown of the configuration's step, on fake tensors (a build of its own)."""
    config = dataclasses.replace(config, device="meta")
    with _placement(config) as (block, x, _):
        return _breakdown(config, block, x, output)


def meta_peak(block: Any, /, output: str | None = None, **config: Any) -> int:
    """Peak bytes of one protocol step on fake tensors (``profile(..., device="meta").peak_bytes``), without
    counting FLOPs or bytes moved: what the memory guard needs before a real run. ``block``: a
    :class:`Config` (its device replaced by ``meta``) or a target with the keyword form of :func:`profile`.
    One build, on meta."""
    cfg = block if isinstance(block, Config) else blocks.configure(block, **config)
    cfg = prepare(dataclasses.replace(cfg, device="meta"))
    with _placement(cfg) as (module, x, _):
        if cfg.mode == "step":  # the whole step: its resident state too
            return measure_step(TrainingStep(module, x, resolve()), cuda=False).total
        run = _with_backend(step(module, x, cfg.mode, output), cfg.backend)
        try:
            return track_peak(run).peak
        except RuntimeError as e:
            limit = fake_limit(e, cfg)
            if limit is None:
                raise
            raise limit from None


def step_memory(block: Any, /, options: StepOptions | None = None, **config: Any) -> StepMemory:
    """The memory of one training step on fake tensors (``profile(..., mode="step").step_memory``) without
    counting FLOPs: what a batch search needs. ``block``: a :class:`Config` (device and mode replaced by
    ``meta`` and ``step``) with mode-"step" settings as keywords (``recipe``, ``optimizer``, ...), or a
    target with the keyword form of :func:`profile`; ``options``: resolved settings instead. One build, on
    meta."""
    step_kw = {k: config.pop(k) for k in list(config) if k in RunSettings.names()}
    settings = RunSettings(latency=None, **step_kw)
    cfg = block if isinstance(block, Config) else blocks.configure(block, **config)
    if isinstance(block, Config) and config:
        raise ValueError(f"give a Config or keyword arguments, not both (got {', '.join(config)})")
    cfg = prepare(dataclasses.replace(cfg, device="meta", mode="step"))
    with _placement(cfg) as (module, x, _):
        train = TrainingStep(module, x, options or resolve(**settings.step_settings()))
        return measure_step(train, _with_backend(train, cfg.backend), cuda=True)


def _measure(
    config: Config,
    block: nn.Module,
    x: torch.Tensor,
    latency: str | None,
    output: str | None = None,
    seen: list[Any] | None = None,
    options: StepOptions | None = None,
) -> tuple[FlopCount, MemoryPeak, Latency | None, BytesMoved, int | None, StepMemory | None]:
    """(FLOP count, memory peak, latency, bytes moved, predicted CUDA peak, step memory) of the
    configuration on its placed block and input, following measure.step's protocol (on cuda the
    allocator's peak, with no tensor/scratch split). ``seen``: receives the first call's output."""
    if config.mode == "step":
        return _measure_step(config, block, x, latency, options or resolve(), seen)
    cuda_predicted = None
    run = _with_backend(step(block, x, config.mode, output), config.backend)
    if not blocks.spec(config.block).standard_contract:
        run = _explained(run, config, tuple(x.shape))
    if seen is not None:
        run = _first_output(run, seen)
    # peak first: a fast-path module allocates its reusable workspace on its first call
    if config.device_type == "cuda":
        peak = cuda_peak(run, config.device)
        memory = MemoryPeak(peak, 0, 0, 0, 512, tensor_peak=peak)
    elif config.device == "meta":  # the CUDA caching allocator's figure, predicted in the same pass
        model = CudaAllocatorModel(resident=[*module_to_order(block), x])
        with model:
            memory = track_peak(run)
        cuda_predicted = model.result().peak
    else:
        memory = track_peak(run)
    traffic = TrafficCounter()  # bytes moved, in the FLOP-counting pass
    with traffic:
        flop_count = count_flops(run)
    lat = None
    if latency is not None and config.device != "meta":
        lat = measure_latency(run, latency, config.device_type, flops=flop_count.flops)
    return flop_count, memory, lat, traffic.result(), cuda_predicted, None


def _measure_step(
    config: Config,
    block: nn.Module,
    x: torch.Tensor,
    latency: str | None,
    options: StepOptions,
    seen: list[Any] | None = None,
) -> tuple[FlopCount, MemoryPeak, Latency | None, BytesMoved, int | None, StepMemory]:
    """Mode "step" (:mod:`isaprof.measure.training`): on meta and cpu the CUDA allocator replayed over two
    steps, then one step tracked exactly; on cuda the device's ``max_memory_allocated`` of a third step
    (absolute); then FLOPs and bytes moved of one more step, and latency off meta."""
    train = TrainingStep(block, x, options)
    run = _with_backend(train, config.backend)
    if not blocks.spec(config.block).standard_contract:
        run = _explained(run, config, tuple(x.shape))
    if seen is not None:
        run = _first_output(run, seen)
    if config.device_type == "cuda":
        step_memory = measure_step(train, run, cuda=False)
        torch.cuda.synchronize(config.device)
        torch.cuda.reset_peak_memory_stats(config.device)
        run()
        torch.cuda.synchronize(config.device)
        step_memory = dataclasses.replace(
            step_memory,
            cuda_allocated=torch.cuda.max_memory_allocated(config.device),
            cuda_reserved=torch.cuda.max_memory_reserved(config.device),
        )
    else:
        step_memory = measure_step(train, run, cuda=True)
    m = step_memory
    memory = MemoryPeak(m.peak, 0, 0, 0, 1, m.tensor_peak, m.scratch, m.scratch_ops, m.unmodelled)
    traffic = TrafficCounter()
    with traffic:
        flop_count = count_flops(run)
    lat = None
    if latency is not None and config.device != "meta":
        lat = measure_latency(run, latency, config.device_type, flops=flop_count.flops)
    return flop_count, memory, lat, traffic.result(), m.cuda_allocated, step_memory


def memory_notes(unmodelled: Mapping[str, int], cuda_convolutions: bool) -> list[str]:
    """The notes on memory allocated inside ops that no scratch rule models (:mod:`isaprof.measure.scratch`):
    CPU convolutions ATen hands to oneDNN (its reorder buffers depend on the implementation oneDNN picks
    at run time), any other op (``convolution_backward`` included), and, where a CUDA peak was predicted
    for a block with convolutions, cuDNN's workspace (chosen by its algorithm search on the GPU)."""
    notes = []
    conv = {op: n for op, n in unmodelled.items() if op == "aten.convolution"}  # the forward: oneDNN's
    other = {op: n for op, n in unmodelled.items() if op != "aten.convolution"}
    if conv:
        ops = ", ".join(f"{op} x{n}" for op, n in conv.items())
        notes.append(f"oneDNN convolution reorders (CPU) not modelled (peak may be low): {ops}")
    if other:
        ops = ", ".join(f"{op} x{n}" for op, n in other.items())
        notes.append(f"memory allocated inside these ops is not modelled (peak may be low): {ops}")
    if cuda_convolutions:
        notes.append("predicted CUDA peak: cuDNN convolution workspace (CUDA only) not modelled")
    return notes


def _convolves(flops: FlopCount) -> bool:
    return any(op.startswith("convolution") for op in flops.by_op)


def _first_output(run: Callable[[], Any], seen: list[Any]) -> Callable[[], Any]:
    def keep() -> Any:
        out = run()
        if not seen:
            seen.append(out)
        return out

    return keep


def _explained(run: Callable[[], Any], config: Config, shape: tuple[int, ...]) -> Callable[[], Any]:
    """A user's module whose forward fails on its input: one line saying which and why, with the other
    layout as a hint (an out-of-memory error still propagates as raised, so sweeps record it as ``oom``;
    a fake-tensor limit as :func:`fake_limit`'s line)."""

    def checked() -> Any:
        try:
            return run()
        except Exception as e:
            if is_oom(e):
                raise
            limit = fake_limit(e, config)
            if limit is not None:
                raise limit from None
            if isinstance(e, ValueError) and str(e).startswith(("output ", "train mode")):
                raise  # the protocol's own one line (--output, nothing to back-propagate)
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            other = "tokens" if config.layout == "map" else "map"
            raise ValueError(
                f"forward of {config.block!r} on an input of shape {LAYOUT_NAMES[config.layout]} = "
                f"{shape} failed: {type(e).__name__}: {text} (if it takes {LAYOUT_NAMES[other]}, use "
                f"--layout {other})"
            ) from None

    return checked


class FakeTensorLimit(ValueError):
    """The module cannot run on fake tensors (``meta``): an output shape or value that depends on the data.
    ``reason``: what it does, e.g. ``"has a data-dependent output shape (aten.nonzero.default)"``."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


def fake_limit(e: BaseException, config: Config) -> FakeTensorLimit | None:
    """The one line for a module that fake tensors cannot run (a data-dependent output shape such as
    ``nonzero``'s, a value read with ``.item()``, an operator without a fake kernel); None otherwise."""
    kinds = {
        DynamicOutputShapeException: "has a data-dependent output shape",
        DataDependentOutputException: "reads a tensor's value",
        UnsupportedOperatorException: "uses an operator fake tensors do not support",
    }
    for kind, what in kinds.items():
        if isinstance(e, kind):
            op = str(e).strip().splitlines()[0] if str(e).strip() else kind.__name__
            return FakeTensorLimit(
                f"{config.block!r} {what} ({op}): fake tensors (--device meta) cannot run it; "
                "measure it on real tensors with --device cpu",
                f"{what} ({op})",
            )
    return None


def _unsupported_dtype(e: RuntimeError, config: Config) -> ValueError | None:
    """A one-line ValueError for a kernel that lacks the configuration's half dtype; None otherwise."""
    text = str(e)
    if "not implemented for" in text and config.dtype in ("float16", "bfloat16"):
        first = text.strip().splitlines()[0]
        return ValueError(f"dtype {config.dtype} is not supported on {config.device} by torch here ({first})")
    return None


def error_rows(config: Config, status: str, message: str) -> list[dict[str, Any]]:
    """Tidy rows for a configuration that failed: ``status`` (``"oom"``, ``"error"`` or ``"skipped"``),
    the one-line ``message``, ``measured`` empty; ``analytic`` filled where the formula can still give it."""
    check_choice("status", status, ("oom", "error", "skipped"))
    try:
        cost = analytic_cost(config)
        if cost is None:
            raise LookupError("no formula")
        train = config.mode == "train"
        macs = sum((cost.train_macs if train else cost.macs).values())
        analytic: dict[str, Any] = {
            "params": cost.params,
            "macs": macs,
            "flops": 2 * macs,
            "elementwise": sum(cost.elementwise.values()),
            "peak_bytes": cost.peak_bytes.get(config.mode),
        }
        padded: tuple[int, int] | None = tuple(cost.padded)
    except Exception:  # noqa: BLE001 - a broken formula must not hide the original failure
        analytic, padded = {}, None
    metrics = ["params", "macs", "flops", "elementwise", "peak_bytes", "bytes_moved"]
    if config.device != "meta":
        metrics.append("latency_ms")
    env = environment(config.device)
    return [
        row(config, m, None, analytic.get(m), env=env, padded=padded, status=status, error=message)
        for m in metrics
    ]
