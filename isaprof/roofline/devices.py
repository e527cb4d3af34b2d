"""The catalogue of GPUs (``reference/devices.toml``): datasheet figures per device, each turned into the
one :class:`~isaprof.roofline.schema.Roofs` type by :meth:`Device.roofs`. No torch.

Units: TFLOP/s, GB/s and GB as the catalogue stores them; :class:`Device` converts to FLOP/s and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from isaprof.config import REFERENCE
from isaprof.roofline.schema import Roofs

CATALOGUE = REFERENCE / "devices.toml"
REQUIRED = ("name", "fp32_tflops", "bandwidth_gbs", "memory_gb", "source", "url")
TENSOR = ("tf32_tflops", "bf16_tflops", "fp16_tflops")
OPTIONAL = (*TENSOR, "l2_kib", "l2_source")


@dataclass(frozen=True)
class Device:
    """One catalogued GPU. ``*_tflops`` in TFLOP/s (tensor figures dense; None: no such mode),
    ``bandwidth_gbs`` in GB/s, ``memory_gb`` in GB (10^9 bytes); ``source``/``url``: the datasheet;
    ``l2_kib``: the L2 cache in KiB (None: not catalogued) and ``l2_source`` where it is printed."""

    key: str
    name: str
    fp32_tflops: float
    tf32_tflops: float | None
    bf16_tflops: float | None
    fp16_tflops: float | None
    bandwidth_gbs: float
    memory_gb: float
    source: str
    url: str
    l2_kib: int | None = None
    l2_source: str | None = None

    def matrix_peak(self, dtype: str, tf32: bool = False) -> tuple[float, str]:
        """(FLOP/s, which peak) for matrix products in ``dtype``: tensor cores for float16/bfloat16, TF32
        tensor cores for float32 only if ``tf32``, else the FP32 CUDA-core peak. ``ValueError`` if none."""
        if dtype == "float32":
            if not tf32:
                return self.fp32_tflops * 1e12, "FP32 (CUDA cores)"
            choice = ("tf32_tflops", "TF32 tensor cores")
        elif dtype in ("float16", "bfloat16"):
            short = "fp16" if dtype == "float16" else "bf16"
            choice = (f"{short}_tflops", f"{short.upper()} tensor cores, dense")
        else:
            raise ValueError(
                f"the catalogue has no {dtype} peak for {self.key}; use float32, float16 or bfloat16"
            )
        value = getattr(self, choice[0])
        if value is None:
            raise ValueError(f"{self.key} has no {choice[1]} (its datasheet lists none)")
        return value * 1e12, choice[1]

    def roofs(self, dtype: str = "float32", tf32: bool = False) -> Roofs:
        """The device's :class:`Roofs` for matrix ops in ``dtype`` (``ValueError`` if it has no such peak).
        float32 without ``tf32``: matrix products on FP32 CUDA cores, convolutions on TF32 tensor cores
        where the GPU has them (PyTorch's defaults: ``torch.backends.cudnn.allow_tf32`` is True,
        ``torch.backends.cuda.matmul.allow_tf32`` False)."""
        if tf32 and dtype != "float32":
            raise ValueError(f"--tf32 applies to float32 only, not {dtype}")
        flops, which = self.matrix_peak(dtype, tf32)
        conv = None
        if dtype == "float32" and not tf32 and self.tf32_tflops:
            conv, _ = self.matrix_peak(dtype, True)
            which += "; convolutions on TF32 tensor cores (cuDNN's default)"
        return Roofs(self.key, flops, self.bandwidth, f"{which}, {self.source}", self.memory_bytes, conv)

    @property
    def bandwidth(self) -> float:
        """Memory bandwidth in bytes/s."""
        return self.bandwidth_gbs * 1e9

    @property
    def l2_bytes(self) -> int:
        """The L2 cache in bytes (0 when the catalogue has no figure)."""
        return (self.l2_kib or 0) * 1024

    @property
    def memory_bytes(self) -> int:
        """Memory size in bytes (GB x 10^9)."""
        return int(self.memory_gb * 1e9)


def load(path: Path | str = CATALOGUE) -> dict[str, Device]:
    """Every device of the catalogue at ``path``, keyed by lower-case name; ``ValueError`` on a bad entry."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        table = tomllib.load(f)
    out = {}
    for key, entry in table.items():
        missing = [k for k in REQUIRED if k not in entry]
        unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL))
        if missing or unknown:
            raise ValueError(f"{path}: device {key!r}: missing {missing}, unknown {unknown}")
        out[key.lower()] = Device(key.lower(), **{k: entry.get(k) for k in (*REQUIRED, *OPTIONAL)})
    return out


def get(name: str, path: Path | str = CATALOGUE) -> Device:
    """The device called ``name`` (case-insensitive); ``ValueError`` listing the known ones otherwise."""
    devices = load(path)
    found = devices.get(name.strip().lower())
    if found is None:
        raise ValueError(f"unknown GPU {name!r}; known: {', '.join(sorted(devices))} (or cpu)")
    return found
