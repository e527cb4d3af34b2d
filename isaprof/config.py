"""The one configuration type and the tidy row schema. Pure Python: imports no torch.

A :class:`Config` is everything that decides what is measured: the target, the input shape, the
block's options, the implementation, the numeric type, the device and the protocol mode. Everything
that runs configurations (``profile``, ``check``, ``sweep``, ``baseline``, ``factorize``,
``reproduce``) and every closed-form formula takes one. Run settings that are not part of a
configuration (the latency protocol, retries, shards) sit beside it, never inside it.

>>> cfg = Config.make("isa", size=(97, 97), channels=512, factor=(8, 8))
>>> cfg.key_channels, cfg.option("factor"), cfg.height
(256, (8, 8), 97)
>>> Config.make("isa", size=(97, 97), channels=512, mode="fast")
Traceback (most recent call last):
ValueError: unknown mode 'fast'; allowed: inference, train
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

# The checkout's data folder: the papers' settings, the devices catalogue, sweeps and the cost baseline.
REFERENCE = Path(__file__).resolve().parent.parent / "reference"

# The choices a configuration validates against (torch objects are mapped in ``isaprof.profiling.profiler``).
DEVICES = ("meta", "cpu", "cuda")  # "cuda:N" is accepted too and picks GPU N
DTYPES = ("float32", "float64", "float16", "bfloat16")
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
MODES = ("inference", "train")
BACKENDS = ("math", "flash", "efficient", "cudnn")  # sdpa kernels
CUDA_ONLY_BACKENDS = ("efficient", "cudnn")
# "reference": the block as the papers' code computes it; "fast": isaprof.targets.fast.fast_inference of it
# (same outputs, BN folded, GEMM layouts, sdpa core; inference only).
PATHS = ("reference", "fast")
LATENCY_PROTOCOLS = ("quick", "fixed")  # a run setting, not part of a Config; "none" or None skips

# The tidy row schema (docs/ARCHITECTURE.md), in order: configuration, metric, environment.
CONFIG_COLUMNS = (
    "block batch channels key_channels value_channels height width padded_height padded_width "
    "factor recurrence options impl backend path dtype device mode"
).split()
METRIC_COLUMNS = "metric measured analytic unit spread status error".split()
ENV_COLUMNS = "torch isaprof device_name threads host timestamp".split()
COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + ENV_COLUMNS
UNITS = {
    "params": "count",
    "macs": "MAC",
    "flops": "FLOP",
    "elementwise": "op",
    "peak_bytes": "byte",
    "bytes_moved": "byte",
    "latency_ms": "ms",
}
STATUSES = ("ok", "oom", "error", "skipped")

_DEVICE = re.compile(r"^(meta|cpu|cuda)(:\d+)?$")


@dataclass(frozen=True)
class Config:
    """One configuration, validated, every default resolved (build it with :meth:`make`).

    ``block``: the target (a registered name or an import path ``pkg.mod:Attr``); ``height``/``width``:
    the input map (the block may pad it, see the formula's ``padded``); ``key_channels`` /
    ``value_channels``: resolved widths; ``options``: every block option with defaults filled in, as
    sorted ``(name, value)`` pairs (hashable: two spellings of one configuration compare equal);
    ``backend``: the sdpa kernel (``None`` for ``naive``, or for ``sdpa`` until the device's default is
    chosen at run time); ``device``: ``meta``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    block: str
    batch: int
    channels: int
    key_channels: int
    value_channels: int
    height: int
    width: int
    dtype: str = "float32"
    impl: str = "naive"
    backend: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    path: str = "reference"
    device: str = "meta"
    mode: str = "inference"

    @classmethod
    def make(
        cls,
        block: str,
        size: tuple[int, int],
        channels: int | None = None,
        key_channels: int | None = None,
        value_channels: int | None = None,
        batch: int = 1,
        device: Any = "meta",
        dtype: Any = "float32",
        mode: str = "inference",
        impl: str = "naive",
        backend: str | None = None,
        path: str = "reference",
        **options: Any,
    ) -> Config:
        """Validate the keyword form users write and fill every default; ``ValueError`` on bad input.

        ``device`` and ``dtype`` may also be ``torch.device`` / ``torch.dtype`` objects; ``channels``
        may be omitted for a target with a default input width (a network: 3).
        """
        from isaprof.targets import registry  # torch-free: names, options and default widths

        s = registry.spec(block)
        channels = registry.default_channels(block, channels)
        ck, cv = registry.resolve_channels(block, channels, key_channels, value_channels)
        h, w = check_size(size)
        check_positive("batch", batch)
        device = normalize_device(device)
        dtype = normalize_dtype(dtype)
        check_choice("mode", mode, MODES)
        check_choice(f"impl of block {block!r}", impl, s.impls)
        check_choice("path", path, PATHS)
        if path == "fast" and mode != "inference":
            raise ValueError(
                "the fast path is inference-only (BatchNorm folded, no autograd); use path 'reference'"
            )
        unknown = sorted(set(options) - set(s.options)) if not registry.takes_any(s) else []
        if unknown:
            allowed = ", ".join(f"{k} (default {v!r})" for k, v in s.options.items()) or "none"
            raise ValueError(f"block {block!r} has no option(s) {', '.join(unknown)}; its options: {allowed}")
        missing = [k for k, v in s.options.items() if v is registry.REQUIRED and k not in options]
        if missing:
            raise ValueError(registry.needs_message(block, missing))
        check_backend(impl, backend, device)
        opts = {**{k: v for k, v in s.options.items() if v is not registry.REQUIRED}, **options}
        return cls(
            block,
            batch,
            channels,
            ck,
            cv,
            h,
            w,
            dtype,
            impl,
            backend,
            freeze_options(opts),
            path,
            device,
            mode,
        )

    # -- views ------------------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def device_type(self) -> str:
        """``cuda`` for ``cuda:N``; the device otherwise."""
        return self.device.split(":")[0]

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def replace(self, **changes: Any) -> Config:
        """A copy with ``changes`` (fields, or ``size``/block options by name), re-validated."""
        kwargs = self.kwargs()
        opts = {k: changes.pop(k) for k in list(changes) if k not in kwargs and k not in _FIELDS}
        for name in ("height", "width"):
            if name in changes:
                h, w = kwargs["size"]
                kwargs["size"] = (changes.pop(name), w) if name == "height" else (h, changes.pop(name))
        return Config.make(**{**kwargs, **changes, **opts})

    def kwargs(self) -> dict[str, Any]:
        """The keyword form: ``Config.make(**cfg.kwargs()) == cfg`` and ``profile(**cfg.kwargs())``."""
        return dict(
            block=self.block,
            size=self.size,
            channels=self.channels,
            key_channels=self.key_channels,
            value_channels=self.value_channels,
            batch=self.batch,
            device=self.device,
            dtype=self.dtype,
            mode=self.mode,
            impl=self.impl,
            backend=self.backend,
            path=self.path,
            **dict(self.options),
        )

    def label(self) -> str:
        """Short one-line description (progress bars, --dry-run)."""
        opts = " ".join(f"{k}={_fmt(v)}" for k, v in self.options)
        impl = self.impl if self.backend is None else f"{self.impl}/{self.backend}"
        impl += "" if self.path == "reference" else f" [{self.path}]"
        return (
            f"{self.block} {self.height}x{self.width} C={self.channels} B={self.batch} {impl} "
            f"{self.device} {self.dtype} {self.mode}{' ' + opts if opts else ''}"
        )

    def columns(self, padded: tuple[int, int] | None = None) -> dict[str, Any]:
        """The configuration columns of a tidy row (``padded`` None: unknown, left empty)."""
        factor = self.option("factor")
        recurrence = self.option("recurrence")
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
            "options": json.dumps(dict(self.options), sort_keys=True, default=str),
            "impl": self.impl,
            "backend": self.backend or "",
            "path": self.path,
            "dtype": self.dtype,
            "device": self.device,
            "mode": self.mode,
        }


_FIELDS = {f.name for f in fields(Config)}


def row(
    config: Config,
    metric: str,
    measured: Any,
    analytic: Any,
    *,
    env: Mapping[str, Any],
    padded: tuple[int, int] | None = None,
    spread: Any = None,
    status: str = "ok",
    error: str = "",
) -> dict[str, Any]:
    """One tidy row (:data:`COLUMNS`, in order): ``metric`` of ``config``, raw numbers, units from
    :data:`UNITS`, environment columns from ``env`` (missing ones empty)."""
    check_choice("status", status, STATUSES)
    values = {
        **config.columns(padded),
        "metric": metric,
        "measured": measured,
        "analytic": analytic,
        "unit": UNITS[metric],
        "spread": spread,
        "status": status,
        "error": " ".join(str(error).split()),
        **{k: env.get(k) for k in ENV_COLUMNS},
    }
    return {c: values[c] for c in COLUMNS}


# -- validation helpers (one-line ValueErrors naming what is allowed) ---------------------------------
def check_choice(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def check_positive(what: str, value: Any, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}{hint}")


def check_size(size: Any) -> tuple[int, int]:
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    if not (ok and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def normalize_device(device: Any) -> str:
    """``"meta"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` from a string or a ``torch.device``."""
    text = str(device)
    if not _DEVICE.match(text) or text.startswith(("meta:", "cpu:")):
        raise ValueError(f"unknown device {device!r}; allowed: meta, cpu, cuda, cuda:N")
    return text


def normalize_dtype(dtype: Any) -> str:
    """A dtype name from a string (``"float16"``, ``"torch.float16"``) or a ``torch.dtype``."""
    text = str(dtype).removeprefix("torch.")
    aliases = {"half": "float16", "float": "float32", "double": "float64", "fp32": "float32"}
    text = aliases.get(text, text)
    check_choice("dtype", text, DTYPES)
    return text


def normalize_latency(latency: str | None) -> str | None:
    """A latency protocol name, or None for "none" / None (skip timing)."""
    if latency is None or latency == "none":
        return None
    if latency not in LATENCY_PROTOCOLS:
        raise ValueError(
            f"unknown latency protocol {latency!r}; allowed: {', '.join(LATENCY_PROTOCOLS)}, none"
        )
    return latency


def check_backend(impl: str, backend: str | None, device: str) -> None:
    """A backend applies to ``sdpa`` only, and the CUDA-only kernels need cuda."""
    if backend is None:
        return
    if impl != "sdpa":
        raise ValueError(f"backend {backend!r} applies to impl 'sdpa' only (got impl {impl!r})")
    check_choice("sdpa backend", backend, BACKENDS)
    if not device.startswith("cuda") and backend in CUDA_ONLY_BACKENDS:
        raise ValueError(f"sdpa backend {backend!r} needs cuda; on {device} use: math, flash")


def freeze_options(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as sorted ``(name, value)`` pairs with lists turned into tuples (hashable, comparable)."""
    return tuple(sorted((k, _hashable(v)) for k, v in options.items()))


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _fmt(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


__all__ = [
    "BACKENDS",
    "COLUMNS",
    "Config",
    "DEVICES",
    "DTYPES",
    "DTYPE_BYTES",
    "MODES",
    "PATHS",
    "UNITS",
    "check_choice",
    "normalize_latency",
    "row",
]
