"""This machine's two roofs: the fp32 matrix-multiply peak (GFLOP/s) and the memory bandwidth (GB/s).

Protocol (``torch.utils.benchmark``, as :mod:`isaprof.measure.latency`): one warm-up call, then
``Timer.blocked_autorange``; each kernel gives the median and IQR of its per-block rates. Its timer
synchronises CUDA around every block, so the same code measures ``cpu`` and ``cuda``.

* compute roof = the largest median rate over several GEMM shapes (:data:`MATMUL_SHAPES`: a square
  product and the blocks' own GEMMs, 1x1 convolutions and affinity products at 64x64 and 128x128, C=512).
  FLOPs per product = 2 M K N (the convention of ``torch.utils.flop_counter``).
* memory roof = the larger median rate of a STREAM-style copy (``a.copy_(b)``: 2 arrays moved) and triad
  (``torch.add(b, c, alpha=s, out=a)``: 3 arrays moved), fp32 arrays of at least 4x the last-level cache
  and 256 MiB each. Bytes per call = arrays x array bytes (STREAM's count: no write-allocate traffic).

Every sample is kept (``"samples"``), so that the reported roof is checkably the maximum of what was
measured in the same run.

A roof measured while other work competes for the machine is low, and a cached low roof would make blocks
look faster than the peak. Each measurement therefore checks for contention in two ways: the matmul probe
of :mod:`isaprof.measure.latency` before and after (changed by more than 20%: ``probe_change``), and on a
CPU the process's share of its threads' cores while timing (CPU time / (wall time x threads) below
:data:`MIN_CPU_SHARE`: ``cpu_share``; steady load from other processes, which leaves the probe unchanged,
shows here). A contended measurement is repeated once (:data:`ATTEMPTS`); if still contended it is kept,
marked ``"contended": true``, and never reused from a cache.

Figures are cached per machine (:func:`cache_path`: keyed by :func:`isaprof.measure.env.machine_id`,
never the host name, which many machines share) and re-measured on request.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

MIB = 2**20
MIN_CPU_SHARE = 0.8  # below: the process got under 80% of its threads' cores while timing = contended
ATTEMPTS = 2  # measurements of a device's roofs at most, while the previous one was contended


@dataclass(frozen=True)
class GemmShape:
    """``batch`` products of ``(m, k) x (k, n)``; ``why`` says which block computes it."""

    m: int
    k: int
    n: int
    batch: int = 1
    why: str = ""

    @property
    def flops(self) -> int:
        """FLOPs of one call: 2 x batch x m x k x n."""
        return 2 * self.batch * self.m * self.k * self.n

    def label(self) -> str:
        b = f"{self.batch}x" if self.batch > 1 else ""
        return f"{b}({self.m},{self.k})x({self.k},{self.n})"


# C = 512, Ck = 256 (the ISA paper's widths); N = H x W positions.
MATMUL_SHAPES: tuple[GemmShape, ...] = (
    GemmShape(2048, 2048, 2048, why="square sgemm (the former peak)"),
    GemmShape(64 * 64, 512, 256, why="1x1 conv C->Ck as a GEMM at 64x64: (N, C) x (C, Ck)"),
    GemmShape(128 * 128, 512, 256, why="1x1 conv C->Ck as a GEMM at 128x128: (N, C) x (C, Ck)"),
    GemmShape(64 * 64, 256, 64 * 64, why="dense affinity at 64x64: (N, Ck) x (Ck, N)"),
    GemmShape(2048, 256, 128 * 128, why="dense affinity at 128x128, a 2048-row slice: (2048, Ck) x (Ck, N)"),
    GemmShape(
        256, 256, 256, batch=64, why="ISA long-range affinity at 128x128, factor 8x8: 64 groups of 256"
    ),
)
# On a GPU the large square product is where the peak is; the CPU shapes stay for comparison.
CUDA_EXTRA_SHAPES: tuple[GemmShape, ...] = (
    GemmShape(8192, 8192, 8192, why="large square sgemm (GPU peak)"),
    GemmShape(128 * 128, 256, 128 * 128, why="dense affinity at 128x128: (N, Ck) x (Ck, N)"),
)


@dataclass(frozen=True)
class Sample:
    """One timed kernel: ``work`` units (FLOP or byte) per call; rates in G-units per second."""

    kind: str  # "matmul" or "bandwidth"
    kernel: str  # "mm", "bmm", "copy", "triad"
    shape: str
    why: str
    dtype: str
    work: int
    unit: str  # "FLOP" or "byte"
    rate: float  # median rate over timed blocks, 1e9 units / s
    rate_iqr: float  # IQR of the per-block rates, same unit
    median_s: float  # median seconds per call
    runs: int  # calls timed


def _rates(work: int, times: list[float]) -> tuple[float, float]:
    """Median and IQR (75th - 25th percentile) of ``work / t / 1e9`` over per-call times ``t``."""
    rates = [work / t / 1e9 for t in times]
    if len(rates) < 2:
        return rates[0], 0.0
    q1, _, q3 = statistics.quantiles(rates, n=4, method="inclusive")
    return statistics.median(rates), q3 - q1


def _time(stmt: str, env: dict[str, Any], min_run_time: float) -> tuple[list[float], int]:
    """Per-call times (s) of ``stmt`` from ``blocked_autorange`` after one warm-up call; calls timed."""
    import torch
    from torch.utils import benchmark

    exec(stmt, {}, env)  # warm-up (first-call allocation, kernel selection)
    timer = benchmark.Timer(stmt, globals=env, num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return list(m.times), len(m.times) * m.number_per_run


def matmul_samples(
    device: str = "cpu",
    shapes: tuple[GemmShape, ...] | None = None,
    dtype: str = "float32",
    min_run_time: float = 0.8,
) -> list[Sample]:
    """Time ``torch.mm`` / ``torch.bmm`` on each shape; one :class:`Sample` (GFLOP/s) per shape."""
    import torch

    if shapes is None:
        shapes = MATMUL_SHAPES + (CUDA_EXTRA_SHAPES if device == "cuda" else ())
    dt = getattr(torch, dtype)
    out = []
    for s in shapes:
        a = torch.randn(s.batch, s.m, s.k, device=device, dtype=dt)  # (B, M, K)
        b = torch.randn(s.batch, s.k, s.n, device=device, dtype=dt)  # (B, K, N)
        if s.batch == 1:
            a, b = a[0], b[0]  # (M, K), (K, N)
        kernel = "bmm" if s.batch > 1 else "mm"
        times, runs = _time(f"torch.{kernel}(a, b)", {"torch": torch, "a": a, "b": b}, min_run_time)
        rate, iqr = _rates(s.flops, times)
        out.append(
            Sample("matmul", kernel, s.label(), s.why, dtype, s.flops, "FLOP", rate, iqr,
                   statistics.median(times), runs)
        )  # fmt: skip
        del a, b
    return out


def last_level_cache_bytes(device: str = "cpu") -> int | None:
    """Size of the largest cache level in bytes: sysfs (Linux), else ``lscpu``; the L2 on CUDA."""
    if device == "cuda":
        import torch

        return getattr(torch.cuda.get_device_properties(0), "L2_cache_size", None) or None
    best = 0
    for d in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (d / "size").read_text().strip()
        except OSError:
            continue
        num, unit = text[:-1], text[-1].upper()
        if unit.isdigit():
            num, unit = text, "B"
        if num.isdigit():
            best = max(best, int(num) * {"B": 1, "K": 2**10, "M": 2**20, "G": 2**30}.get(unit, 1))
    if best:
        return best
    try:
        import subprocess

        out = subprocess.run(["lscpu", "-B"], capture_output=True, text=True, timeout=5).stdout
        sizes = [int(line.split(":")[1].split()[0]) for line in out.splitlines() if " cache:" in line]
        return max(sizes) if sizes else None
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return None


def stream_array_bytes(device: str = "cpu") -> int:
    """Bytes per STREAM array: max(4 x last-level cache, 256 MiB), rounded to MiB; at most 1/8 of free RAM
    (CPU; three arrays live at once)."""
    llc = last_level_cache_bytes(device) or 0
    want = max(4 * llc, 256 * MIB)
    if device == "cpu":
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            want = min(want, max(avail // 8, 64 * MIB))
        except (ValueError, OSError):
            pass
    return -(-want // MIB) * MIB


def bandwidth_samples(
    device: str = "cpu", array_bytes: int | None = None, min_run_time: float = 1.5
) -> list[Sample]:
    """STREAM copy and triad on fp32 arrays of ``array_bytes`` each; one :class:`Sample` (GB/s) each."""
    import torch

    nbytes = array_bytes or stream_array_bytes(device)
    n = nbytes // 4
    a = torch.zeros(n, device=device)  # (n,) written: zeros touches every page before timing
    b = torch.ones(n, device=device)  # (n,)
    c = torch.full((n,), 2.0, device=device)  # (n,)
    env = {"torch": torch, "a": a, "b": b, "c": c}
    where = f"{n * 4 / MIB:.0f} MiB fp32 arrays"
    out = []
    for kernel, stmt, arrays in (
        ("copy", "a.copy_(b)", 2),
        ("triad", "torch.add(b, c, alpha=3.0, out=a)", 3),
    ):
        times, runs = _time(stmt, env, min_run_time)
        work = arrays * n * 4
        rate, iqr = _rates(work, times)
        out.append(
            Sample("bandwidth", kernel, f"{arrays} x {where}", f"STREAM {kernel}", "float32", work, "byte",
                   rate, iqr, statistics.median(times), runs)
        )  # fmt: skip
    return out


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """One device's roofs from its samples: each the sample of largest median rate, with its IQR."""
    mm = [s for s in samples if s.kind == "matmul" and s.dtype == "float32"]
    bw = [s for s in samples if s.kind == "bandwidth"]
    out: dict[str, Any] = {}
    if mm:
        top = max(mm, key=lambda s: s.rate)
        out.update(matmul_gflops=top.rate, matmul_gflops_iqr=top.rate_iqr, matmul_shape=top.shape)
    half = [s for s in samples if s.kind == "matmul" and s.dtype == "bfloat16"]
    if half:
        top = max(half, key=lambda s: s.rate)
        out.update(matmul_bf16_gflops=top.rate, matmul_bf16_gflops_iqr=top.rate_iqr)
    if bw:
        top = max(bw, key=lambda s: s.rate)
        out.update(bandwidth_gbs=top.rate, bandwidth_gbs_iqr=top.rate_iqr, bandwidth_kernel=top.kernel)
    return out


def measure_roofs(
    device: str = "cpu",
    *,
    shapes: tuple[GemmShape, ...] | None = None,
    array_bytes: int | None = None,
    min_run_time: float = 0.8,
) -> dict[str, Any]:
    """Measure ``device``'s roofs now (no cache): :func:`summarise` of the samples, plus the samples,
    ``threads``, ``host``, ``device_name``, ``torch``, ``llc_bytes``, ``measured_at``, ``seconds`` and the
    contention check (``probe_change``, ``cpu_share``, ``contended``; the module docstring)."""
    import torch

    from isaprof.measure.env import device_name, machine_id
    from isaprof.measure.latency import contended

    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise ValueError(f"roofs need an available real device (cpu, cuda), got {device!r}")
    t0 = time.perf_counter()
    for _ in range(ATTEMPTS):
        samples, change, share = _measured(device, shapes, array_bytes, min_run_time)
        busy = contended(change) or (share is not None and share < MIN_CPU_SHARE)
        if not busy:
            break
    return {
        **summarise(samples),
        "threads": torch.get_num_threads(),
        "host": socket.gethostname(),
        "machine": machine_id(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "llc_bytes": last_level_cache_bytes(device),
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 2),
        "probe_change": round(change, 4),
        "cpu_share": None if share is None else round(share, 3),
        "contended": busy,
        "samples": [asdict(s) for s in samples],
    }


def _measured(
    device: str, shapes: tuple[GemmShape, ...] | None, array_bytes: int | None, min_run_time: float
) -> tuple[list[Sample], float, float | None]:
    """One measurement of ``device``'s samples, with the matmul probe's relative change across it and,
    on a CPU, the process's share of its threads' cores while it ran (None on CUDA)."""
    import torch

    from isaprof.measure.latency import matmul_probe

    probe = matmul_probe(device)
    before = probe()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    samples = matmul_samples(device, shapes, "float32", min_run_time)
    if device == "cuda":
        samples += matmul_samples(device, shapes, "bfloat16", min_run_time / 2)
    samples += bandwidth_samples(device, array_bytes, 2 * min_run_time)
    wall = time.perf_counter() - wall0
    share = (time.process_time() - cpu0) / (wall * torch.get_num_threads()) if device == "cpu" else None
    if device == "cuda":
        torch.cuda.empty_cache()
    return samples, probe() / before - 1, share


def cache_path(machine: str | None = None) -> Path:
    """``$ISAPROF_CACHE/machine-<id>.json`` (default folder ``~/.cache/isaprof``): ``<id>`` = :func:`slug`
    of ``machine``, default :func:`isaprof.measure.env.machine_id` of the CPU."""
    from isaprof.measure.env import machine_id

    root = Path(os.environ.get("ISAPROF_CACHE") or Path.home() / ".cache" / "isaprof")
    return root / f"machine-{slug(machine or machine_id('cpu'))}.json"


def slug(machine: str) -> str:
    """A file-name-safe form of a machine id: its words joined by ``-`` (at most 60 characters), then 8 hex
    digits of its SHA-1 (two ids never share a file)."""
    words = re.sub(r"[^A-Za-z0-9.]+", "-", machine).strip("-")[:60]
    return f"{words}-{hashlib.sha1(machine.encode()).hexdigest()[:8]}"


def available_devices() -> tuple[str, ...]:
    """``("cpu",)`` plus ``"cuda"`` where ``torch.cuda.is_available()``."""
    import torch

    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


def machine_roofs(remeasure: bool = False, *, cache: str | Path | None = None, **measure: Any) -> dict:
    """This machine's roofs, ``{"cpu": {...}, "cuda": {...}}`` (cuda where available), from the machine's
    cache when it holds every available device at the current thread count (and, where recorded, the same
    machine id) measured uncontended, else measured (10-20 s on a CPU) and cached. ``remeasure``: ignore
    the cache. ``measure``: keyword arguments of :func:`measure_roofs`.
    """
    import torch

    from isaprof.measure.env import machine_id

    path = Path(cache) if cache is not None else cache_path()
    devices = available_devices()
    old: dict[str, Any] = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
    fresh = {
        d: old[d]
        for d in devices
        if not remeasure
        and isinstance(old.get(d), dict)
        and old[d].get("threads") == torch.get_num_threads()
        and old[d].get("machine", machine_id(d)) == machine_id(d)
        and {"matmul_gflops", "bandwidth_gbs"} <= set(old[d])
        and not old[d].get("contended")
    }
    if len(fresh) == len(devices):
        return fresh
    out = {d: fresh.get(d) or measure_roofs(d, **measure) for d in devices}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(out, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:  # a read-only home: the figures are still returned
        pass
    return out
