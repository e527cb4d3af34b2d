"""This host's roofs (fp32 matmul peak, memory bandwidth) recorded in ``DIR/machine.json``.

``isaprof report`` draws its roofline from these figures: the compute and memory roofs that this very
machine reaches (:mod:`isaprof.roofline.roofs`), not a vendor datasheet number.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

MACHINE = "machine.json"
ROOF_KEYS = ("matmul_gflops", "matmul_gflops_iqr", "matmul_shape", "bandwidth_gbs", "bandwidth_gbs_iqr")


def _quick(n: int) -> dict[str, Any]:
    """Arguments of a quick, uncached measurement (tests): one n^3 matmul, 4 MiB arrays."""
    from isaprof.roofline.roofs import GemmShape

    return dict(shapes=(GemmShape(n, n, n, why="quick"),), array_bytes=4 * 2**20, min_run_time=0.05)


def record_machine(
    out: str | Path, devices: tuple[str, ...] = ("cpu", "cuda"), n: int | None = None
) -> dict[str, Any]:
    """Add this host's roofs for each available device not yet in ``out/machine.json``; return the file.

    The roofs come from the host cache (:func:`isaprof.roofline.roofs.machine_roofs`), measured there
    if absent. ``n``: instead a quick uncached measurement with one ``n x n x n`` product (tests). Layout::

        {"cpu": {"matmul_gflops": ..., "bandwidth_gbs": ..., ...},     # first host that recorded the device
         "machines": [{"host": ..., "device": "cpu", "device_name": ..., "matmul_gflops": ...,
                       "bandwidth_gbs": ..., "samples": [...], "env": {...}}, ...]}

    Files written before the bandwidth was measured (``"peak_gflops"``) are read and completed: a host
    whose entry lacks ``bandwidth_gbs`` is measured again. Concurrent shard processes are serialised by a
    lock file; the JSON is replaced atomically.
    """
    import torch

    from isaprof.measure.env import environment
    from isaprof.roofline.roofs import machine_roofs, measure_roofs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MACHINE
    host = socket.gethostname()
    with open(out / (MACHINE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(path) if path.exists() else {"machines": []}
        have = {(m["host"], m["device"]) for m in data["machines"] if "bandwidth_gbs" in m}
        todo = [
            d
            for d in devices
            if (host, d) not in have and (d != "cuda" or torch.cuda.is_available()) and d in ("cpu", "cuda")
        ]
        if todo:
            redo = {(host, d) for d in todo}  # entries of an older layout, replaced
            roofs = {d: measure_roofs(d, **_quick(n)) for d in todo} if n else machine_roofs()
            data["machines"] = [m for m in data["machines"] if (m["host"], m["device"]) not in redo]
            for dev in todo:
                r = roofs[dev]
                data["machines"].append({**r, "host": host, "device": dev, "env": environment(dev)})
                if "bandwidth_gbs" not in data.get(dev, {}):
                    data[dev] = {k: r[k] for k in (*ROOF_KEYS, "threads", "host", "device_name") if k in r}
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
        os.replace(tmp, path)
    return data


def _read(path: Path) -> dict:
    """``machine.json``; ``ValueError`` naming the file and line if it is not the JSON a sweep writes."""
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
