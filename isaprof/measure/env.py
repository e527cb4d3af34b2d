"""The environment a measurement ran in: torch, device name, threads, host, Python, timestamp."""

from __future__ import annotations

import datetime
import functools
import platform
import socket
import subprocess
from pathlib import Path

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
    if device == "cuda":
        return torch.cuda.get_device_name() if torch.cuda.is_available() else "cuda (unavailable)"
    if device == "meta":
        return "meta"
    return cpu_name()


@functools.lru_cache(maxsize=1)
def isaprof_version() -> str:
    """The installed isaprof distribution's version, ``"unknown"`` when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("isaprof")
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The commit of the checkout isaprof runs from (``+dirty`` with uncommitted changes); ``""`` if none."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return ""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if head.returncode != 0:
        return ""
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(device: str = "cpu") -> dict[str, str | int]:
    """Environment fields of a result row: ``torch device_name threads host`` plus ``python``, ``timestamp``,
    ``isaprof_version`` and ``git_commit`` (empty outside a checkout).

    ``timestamp`` is UTC ISO-8601 to the second.
    """
    return {
        "isaprof_version": isaprof_version(),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
