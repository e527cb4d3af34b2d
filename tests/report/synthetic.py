"""Synthetic tidy results for the report's tests: three blocks with constructed power-law costs over a
size grid, an ISA factor grid, one OOM row (schema of docs/ARCHITECTURE.md), and the results folder they are
written to."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from isaprof.report import data

SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (96, 96), (128, 128)]
FACTORS = [(2, 2), (2, 4), (4, 2), (4, 4), (4, 8), (8, 4), (8, 8)]
# Constructed costs (raw units). dense memory = N^2 bytes; isa memory = 1000 N bytes: isa is cheaper from
# N > 1000, i.e. from 32x32 (N = 1024) on the grid above; criss_cross memory 2 N^2 is never cheaper.
COST = {
    "dense": {"macs": lambda n: 64 * n**2, "peak_bytes": lambda n: n**2, "latency_ms": lambda n: 1e-6 * n**2},
    "isa": {
        "macs": lambda n: 64 * n**1.5,
        "peak_bytes": lambda n: 1000 * n,
        "latency_ms": lambda n: 1e-4 * n**1.5,
    },
    "criss_cross": {
        "macs": lambda n: 500 * n**1.5,
        "peak_bytes": lambda n: 2 * n**2,
        "latency_ms": lambda n: 1.0,
    },
}
UNIT = {"macs": "MAC", "flops": "FLOP", "peak_bytes": "byte", "latency_ms": "ms"}


def _row(block: str, h: int, w: int, metric: str, value: float | None, mode: str = "inference", **kw) -> dict:
    device = "cpu" if metric == "latency_ms" else "meta"
    row = dict(
        block=block,
        batch=1,
        channels=64,
        key_channels=32,
        value_channels=32,
        height=h,
        width=w,
        padded_height=h,
        padded_width=w,
        factor=kw.get("factor", ""),
        recurrence="",
        options=_options(kw),
        impl="naive",
        backend="",
        dtype="float32",
        device=device,
        mode=mode,
        metric=metric,
        measured=value,
        analytic=kw.get("analytic", value),
        unit=UNIT[metric],
        spread="",
        status=kw.get("status", "ok"),
        error=kw.get("error", ""),
        torch="2.13.0",
        device_name="synthetic",
        threads=2,
        host="test",
        timestamp="2026-01-01T00:00:00",
    )
    return row


def _options(kw: dict) -> str:
    f = kw.get("factor", "")
    return json.dumps({"factor": [int(p) for p in f.split("x")]} if f else {})


def synthetic(with_latency: bool = True) -> pd.DataFrame:
    """Tidy rows for three blocks over SIZES, an ISA factor grid at 64x64, and one OOM."""
    rows = []
    for block, cost in COST.items():
        for h, w in SIZES:
            n = h * w
            factor = "4x4" if block == "isa" else ""
            macs = round(cost["macs"](n))
            rows.append(_row(block, h, w, "macs", macs, factor=factor))
            rows.append(_row(block, h, w, "flops", 2 * macs, factor=factor))
            for mode, k in (("inference", 1), ("train", 3)):
                rows.append(_row(block, h, w, "peak_bytes", k * cost["peak_bytes"](n), mode, factor=factor))
            if with_latency:
                rows.append(_row(block, h, w, "latency_ms", cost["latency_ms"](n), factor=factor))
    base = round(COST["isa"]["macs"](64 * 64))  # the 4x4 row of the resolution sweep above
    for ph, pw in FACTORS:  # analytic optimum (4, 4); measured optimum (4, 8), 10% cheaper than (4, 4)
        if (ph, pw) == (4, 4):
            continue
        a = base * (1 + abs(ph - 4) + abs(pw - 4))
        m = 0.9 * base if (ph, pw) == (4, 8) else a
        rows.append(_row("isa", 64, 64, "macs", m, factor=f"{ph}x{pw}", analytic=a))
    rows.append(
        _row("dense", 256, 256, "peak_bytes", None, "train", status="oom", error="out of memory: 16 GiB")
    )
    return pd.DataFrame(rows, columns=data.COLUMNS)


def write_results(tmp: Path, df: pd.DataFrame, machine: dict | None = None) -> Path:
    """``tmp/results`` with ``df`` as results.csv and ``machine`` (default: a CPU matmul peak of 50 GFLOP/s)
    as machine.json; returns the folder."""
    res = tmp / "results"
    res.mkdir()
    df.to_csv(res / "results.csv", index=False)
    machine = machine or {
        "cpu": {"matmul_peak_gflops": 50.0},
        "environment": {"torch": "2.13.0", "cpu": "test"},
    }
    (res / "machine.json").write_text(json.dumps(machine))
    return res
