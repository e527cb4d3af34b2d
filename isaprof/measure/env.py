"""The environment a measurement ran in: torch, device name, threads, host, machine, Python, timestamp.

The *machine* (:func:`machine_id`) is what a machine-dependent figure (a latency, a roof, a bound on
this CPU) is keyed by: the CPU's ``model name`` exactly as ``/proc/cpuinfo`` gives it, the logical
core count, torch's thread count and torch's build, plus the GPU's name for a CUDA figure; the
environment variable ``ISAPROF_MACHINE_ID``, where set, replaces it (tests, clusters of identical
nodes). Host names are not used: many machines share one (``vm``, ``localhost``).
"""

from __future__ import annotations

import datetime
import os
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
        try:
            return torch.cuda.get_device_name(device) if torch.cuda.is_available() else "cuda (unavailable)"
        except (AssertionError, RuntimeError):  # a build without CUDA, or no driver
            return "cuda (unavailable)"
    if device == "meta":
        return "meta"
    return cpu_name()


MACHINE_ID = "ISAPROF_MACHINE_ID"  # the environment variable that replaces the fingerprint


def fingerprint(device: str = "cpu") -> str:
    """This machine's fingerprint: ``"<CPU model name> | <n> cores | <t> threads | torch <version>"``,
    with ``" | <GPU name>"`` after it for a ``cuda`` device (``"cuda (unavailable)"`` without one)."""
    text = (
        f"{cpu_name()} | {os.cpu_count() or 1} cores | {torch.get_num_threads()} threads | "
        f"torch {torch.__version__}"
    )
    return text + (f" | {device_name(device)}" if device.startswith("cuda") else "")


def machine_id(device: str = "cpu") -> str:
    """What machine-dependent figures are keyed by: ``$ISAPROF_MACHINE_ID`` where set (a CUDA device's
    name appended for a ``cuda`` figure), else :func:`fingerprint`."""
    given = os.environ.get(MACHINE_ID, "").strip()
    if not given:
        return fingerprint(device)
    return given + (f" | {device_name(device)}" if device.startswith("cuda") else "")


def environment(device: str = "cpu") -> dict[str, str | int]:
    """Environment fields of a result row: ``torch isaprof device_name threads host machine``, plus
    ``python`` and ``timestamp`` (``machine``: :func:`machine_id`).

    ``timestamp`` is UTC ISO-8601 to the second.
    """
    import isaprof

    return {
        "torch": torch.__version__,
        "isaprof": isaprof.version(),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "machine": machine_id(device),
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
