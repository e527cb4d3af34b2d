"""The machine's own fp32 matrix-multiply peak, and ``DIR/machine.json``.

``isaprof report`` divides measured FLOPs by latency and compares with this figure (a roofline
ceiling that this very machine reaches with ``torch.mm``, not a vendor datasheet number).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

MACHINE = "machine.json"


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, repeats: int = 3) -> float:
    """Best-of-``repeats`` fp32 ``torch.mm`` throughput of an ``n x n`` by ``n x n`` product, GFLOP/s.

    FLOPs per product = 2 n^3 (the convention of ``torch.utils.flop_counter``). One warm-up product
    is not timed. CUDA timings are bracketed by ``torch.cuda.synchronize``.
    """
    import torch

    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"peak needs an available real device (cpu, cuda), got {device!r}")
    a = torch.randn(n, n, device=device)  # (n, n)
    b = torch.randn(n, n, device=device)  # (n, n)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    torch.mm(a, b)  # (n, n) warm-up
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)  # (n, n)
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def record_machine(out: str | Path, devices: tuple[str, ...] = ("cpu", "cuda"), n: int = 2048) -> dict:
    """Measure this host's peak on each available device not yet in ``out/machine.json``; add it.

    Layout::

        {"peak_gflops": {"cpu": 71.3, ...},            # first host that recorded each device
         "machines": [{"host": ..., "device": "cpu", "device_name": ..., "peak_gflops": ...,
                       "matmul_n": 2048, "env": {...}}, ...]}

    Concurrent shard processes are serialised by a lock file; the JSON is replaced atomically.
    """
    import torch

    from isaprof.measure.env import environment

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / MACHINE
    host = socket.gethostname()
    with open(out / (MACHINE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _read(path) if path.exists() else {"peak_gflops": {}, "machines": []}
        have = {(m["host"], m["device"]) for m in data["machines"]}
        for dev in devices:
            if (host, dev) in have or (dev == "cuda" and not torch.cuda.is_available()):
                continue
            peak = matmul_peak_gflops(dev, n)
            env = environment(dev)
            data["machines"].append(
                dict(
                    host=host,
                    device=dev,
                    device_name=env["device_name"],
                    peak_gflops=peak,
                    matmul_n=n,
                    env=env,
                )
            )
            data["peak_gflops"].setdefault(dev, peak)
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
    data.setdefault("peak_gflops", {})
    data.setdefault("machines", [])
    return data
