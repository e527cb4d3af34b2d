"""A device's roofs (:class:`Roofs`) and the ``machine.json`` file that records measured ones. No torch.

:class:`Roofs` is the one roofs type: the catalogue (:mod:`isaprof.roofline.devices`) and a measured
``machine.json`` entry both become one, and :mod:`isaprof.roofline.bound` divides counted work by it.

``machine.json`` (beside a results folder; written by :func:`isaprof.roofline.machine.record_machine`,
read here by the bounds study and the report)::

    {"cpu": {"matmul_gflops": ..., "bandwidth_gbs": ..., ...},  # the first host that recorded the device
     "machines": [{"host": ..., "device": "cpu", "device_name": ..., "matmul_gflops": ...,
                   "bandwidth_gbs": ..., "samples": [...], "env": {...}}, ...]}

Units: ``matmul_gflops`` / ``matmul_bf16_gflops`` in GFLOP/s (1e9 FLOP/s), ``bandwidth_gbs`` in GB/s
(1e9 byte/s), each beside its IQR (``*_iqr``).

Deprecated layouts, read by :func:`roof` only (files written before the bandwidth was measured; no longer
written, to be dropped): ``{device: {"matmul_peak_gflops": x}}``, ``{"peak_gflops": {device: x}}``, a
``"machines"`` entry ``{"device": ..., "peak_gflops": x}`` and a top-level ``"environment"``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MACHINE = "machine.json"
# The roofs of one device entry (copied to the top-level entry of the device).
ROOF_KEYS = ("matmul_gflops", "matmul_gflops_iqr", "matmul_shape", "bandwidth_gbs", "bandwidth_gbs_iqr")
# The figures a device entry may hold, with the deprecated keys read in their place.
LEGACY_KEYS = {"matmul_gflops": ("matmul_peak_gflops", "peak_gflops"), "matmul_bf16_gflops": (),
               "bandwidth_gbs": ()}  # fmt: skip
# The ops cuDNN runs (forward and backward): in float32 on TF32 tensor cores by PyTorch's default.
CONV_OPS = frozenset(
    ("aten.convolution", "aten._convolution", "aten.cudnn_convolution", "aten.convolution_backward")
)


@dataclass(frozen=True)
class Roofs:
    """A device's roofs: ``matrix_flops`` (FLOP/s of matrix ops in the dtype at hand, ``peak`` names which
    peak), ``bandwidth`` (bytes/s), ``memory_bytes`` (None: unknown), ``conv_flops`` (FLOP/s of
    :data:`CONV_OPS` where it differs from ``matrix_flops``, else None)."""

    device: str
    matrix_flops: float
    bandwidth: float
    peak: str
    memory_bytes: int | None = None
    conv_flops: float | None = None

    def __post_init__(self) -> None:
        if not (self.matrix_flops > 0 and self.bandwidth > 0):
            raise ValueError(
                f"roofs of {self.device} must be positive: {self.matrix_flops}, {self.bandwidth}"
            )

    def flops_of(self, op: str) -> float:
        """The FLOP/s roof of ``op`` (``"aten.mm"``): ``conv_flops`` for convolutions if set."""
        return self.conv_flops if self.conv_flops and op in CONV_OPS else self.matrix_flops

    @property
    def ridge(self) -> float:
        """The ridge point of matrix products in FLOP/byte (matrix peak / bandwidth)."""
        return self.matrix_flops / self.bandwidth

    def columns(self) -> dict[str, Any]:
        """The roofs as the columns of a bound (``isaprof predict --json``, ``bounds.csv``): ``peak_used``,
        ``matrix_tflops``, ``conv_tflops`` (TFLOP/s), ``bandwidth_gbs`` (GB/s)."""
        return {
            "peak_used": self.peak,
            "matrix_tflops": self.matrix_flops / 1e12,
            "conv_tflops": (self.conv_flops or self.matrix_flops) / 1e12,
            "bandwidth_gbs": self.bandwidth / 1e9,
        }

    @classmethod
    def measured(
        cls, entry: Mapping[str, Any], device: str, peak: str, memory_bytes: int | None = None
    ) -> Roofs:
        """Roofs of a measured ``machine.json`` (or host cache) entry with ``matmul_gflops`` and
        ``bandwidth_gbs``; ``ValueError`` naming the entry when either is missing."""
        try:
            flops, bandwidth = float(entry["matmul_gflops"]) * 1e9, float(entry["bandwidth_gbs"]) * 1e9
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"machine roofs lack matmul_gflops / bandwidth_gbs: {dict(entry)!r}") from None
        return cls(device, flops, bandwidth, peak, memory_bytes)


def read_machine(path: str | Path) -> dict[str, Any]:
    """``path`` (a ``machine.json``) as a dict with a ``"machines"`` list; ``{"machines": []}`` if absent;
    ``ValueError`` naming the file and line when it is not the JSON :data:`MACHINE` holds."""
    path = Path(path)
    if not path.is_file():
        return {"machines": []}
    try:
        data = json.loads(path.read_bytes().decode("utf-8", errors="replace"))
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}:{e.lineno}: not valid JSON ({e.msg}); delete it and the sweep measures the peak again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("machines", []), list):
        raise ValueError(f"{path}:1: not a machine.json written by isaprof sweep; delete it")
    data.setdefault("machines", [])
    return data


def write_machine(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` as indented JSON, atomically (a temporary file, then a rename)."""
    path = Path(path)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def add_measured(
    data: dict[str, Any],
    host: str,
    device: str,
    roofs: Mapping[str, Any],
    env: Mapping[str, Any],
    *,
    machine: str | None = None,
) -> None:
    """Record ``host``'s measured ``roofs`` of ``device`` in ``data`` (in place): its ``"machines"`` entry
    replaces any older one of the same (machine, device) (``machine``: an id of
    :func:`isaprof.measure.env.machine_id`; an entry of ``host`` from before bandwidths were measured is
    replaced too), or without ``machine``, of the same (host, device); the top-level ``device`` entry is set
    by the first entry with a bandwidth."""
    if machine is None:
        data["machines"] = [m for m in data["machines"] if (m.get("host"), m.get("device")) != (host, device)]
    else:  # and this host's entries of an older layout without a bandwidth (completed by this one)
        data["machines"] = [
            m for m in data["machines"]
            if (m.get("machine"), m.get("device")) != (machine, device)
            and not ((m.get("host"), m.get("device")) == (host, device) and "bandwidth_gbs" not in m)
        ]  # fmt: skip
    entry = {**roofs, "host": host, "device": device, "env": dict(env)}
    if machine is not None:
        entry["machine"] = machine
    data["machines"].append(entry)
    if "bandwidth_gbs" not in data.get(device, {}):
        keys = (*ROOF_KEYS, "threads", "host", "device_name")
        data[device] = {k: roofs[k] for k in keys if k in roofs}


def recorded(data: Mapping[str, Any], host: str | None = None, *, machine: str | None = None) -> set[str]:
    """The devices whose roofs ``host`` (or, given, the machine ``machine``: a device's id of
    :func:`isaprof.measure.env.machine_id`, the device's name appended for cuda) recorded with a bandwidth
    (entries of older layouts are not)."""
    key, want = ("machine", machine) if machine is not None else ("host", host)
    return {m["device"] for m in data.get("machines", []) if m.get(key) == want and "bandwidth_gbs" in m}


def machine_entry(data: Mapping[str, Any], device: str, machine: str | None) -> dict[str, Any] | None:
    """The measured entry of ``device`` made on ``machine`` (its id in the result rows' ``machine``
    column), the newest if several; None where ``machine`` recorded none (or is None)."""
    if not machine:
        return None
    found = [
        m for m in data.get("machines", [])
        if isinstance(m, dict) and m.get("device") == device and m.get("machine") == machine
        and m.get("matmul_gflops") and m.get("bandwidth_gbs")
    ]  # fmt: skip
    return found[-1] if found else None


def roof(machine: Mapping[str, Any], device: str, key: str) -> float | None:
    """The measured figure ``key`` (one of :data:`LEGACY_KEYS`) of ``device``, or None if not recorded:
    the top-level device entry, else the first ``"machines"`` entry of the device; deprecated layouts
    (the module docstring) are read where the current one is absent."""
    for k in (key, *LEGACY_KEYS[key]):
        entry = machine.get(device)
        if isinstance(entry, dict) and entry.get(k):
            return float(entry[k])
        legacy = machine.get(k)  # deprecated: {"peak_gflops": {device: x}}
        if isinstance(legacy, dict) and legacy.get(device):
            return float(legacy[device])
        for m in machine.get("machines", []):
            if isinstance(m, dict) and m.get("device") == device and m.get(k):
                return float(m[k])
    return None


def matmul_peak_gflops(machine: Mapping[str, Any], device: str, dtype: str = "float32") -> float | None:
    """The measured matmul peak of ``device`` in GFLOP/s, or None: for ``bfloat16`` / ``float16`` the bf16
    peak (measured on CUDA only), for other dtypes the fp32 peak."""
    return roof(
        machine, device, "matmul_bf16_gflops" if dtype in ("bfloat16", "float16") else "matmul_gflops"
    )


def bandwidth_gbs(machine: Mapping[str, Any], device: str) -> float | None:
    """The measured memory bandwidth (STREAM) of ``device`` in GB/s (1e9 byte/s), or None."""
    return roof(machine, device, "bandwidth_gbs")


def device_roofs(machine: Mapping[str, Any], device: str) -> dict[str, Any] | None:
    """The entry of ``device`` holding both roofs (the top-level one, else the first ``"machines"``
    entry), or None."""
    entries = [machine.get(device), *(m for m in machine.get("machines", []) if m.get("device") == device)]
    return next(
        (e for e in entries if isinstance(e, dict) and e.get("matmul_gflops") and e.get("bandwidth_gbs")),
        None,
    )


def environment(machine: Mapping[str, Any]) -> dict[str, Any]:
    """The environment recorded in ``machine.json``: each machine's ``"env"`` (first wins), under the
    deprecated top-level ``"environment"``."""
    env = dict(machine.get("environment", {}))
    for m in machine.get("machines", []):
        for k, v in (m.get("env") or {}).items():
            env.setdefault(k, v)
    return env
