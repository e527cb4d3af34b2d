"""The environment a measurement ran in: torch, device name, threads, host, Python, timestamp."""

from __future__ import annotations

import datetime
import platform
import socket

import torch


def cpu_name() -> str:
    """CPU model from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``, else ``"cpu"``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: str) -> str:
    """Human name of ``device``: the CUDA device name, the CPU model, or ``"meta"`` (fake tensors)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "cuda (unavailable)"
    if device == "meta":
        return "meta"
    return cpu_name()


def environment(device: str = "cpu") -> dict[str, str | int]:
    """Environment fields of a result row: ``torch isaprof device_name threads host``, plus ``python`` and
    ``timestamp``.

    ``timestamp`` is UTC ISO-8601 to the second.
    """
    import isaprof

    return {
        "torch": torch.__version__,
        "isaprof": isaprof.version(),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
