"""End to end: a synthetic tidy table (schema of docs/ARCHITECTURE.md) -> report page and figures."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isaprof.report import data, tables, write_report

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


def _write(tmp: Path, df: pd.DataFrame, machine: dict | None = None) -> Path:
    res = tmp / "results"
    res.mkdir()
    df.to_csv(res / "results.csv", index=False)
    machine = machine or {
        "cpu": {"matmul_peak_gflops": 50.0},
        "environment": {"torch": "2.13.0", "cpu": "test"},
    }
    (res / "machine.json").write_text(json.dumps(machine))
    return res


def test_exponent_of_n_squared_is_two() -> None:
    n = np.array([h * w for h, w in SIZES], float)
    # exact power law: least squares recovers 2 to float precision; 1e-9 allows for rounding in log/polyfit
    assert tables.fit_exponent(n, 3.0 * n**2) == pytest.approx(2.0, abs=1e-9)
    # a constant term biases small sizes only: the fit over the larger half stays within 0.05 of 2
    assert tables.fit_exponent(n, n**2 + 1e4) == pytest.approx(2.0, abs=0.05)
    # sizes too close together (N = 63, 64) give no exponent rather than a meaningless one
    assert np.isnan(tables.fit_exponent(np.array([63.0, 64.0]), np.array([1.0, 5.0])))


def test_crossover_words() -> None:
    n = np.array([1, 2, 3, 4])
    assert tables.crossover(n, np.array([5, 5, 1, 1]), np.array([2, 2, 2, 2])) == 3
    assert tables.crossover(n, np.array([1, 1, 1, 1]), np.array([2, 2, 2, 2])) == "always"
    assert tables.crossover(n, np.array([1, 1, 3, 3]), np.array([2, 2, 2, 2])) == "never"
    assert tables.crossover(n, np.array([1, 3, 1, 1]), np.array([2, 2, 2, 2])) == 3  # must stay cheaper


def test_report_end_to_end(tmp_path: Path) -> None:
    res = _write(tmp_path, synthetic())
    page = write_report(res, tmp_path / "reports", svg=True)
    text = page.read_text()
    # every image the page names exists
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 5
    for img in images:
        assert (page.parent / img).is_file(), img
    # fitted exponents: dense MACs N^2, isa N^1.5 (exact power laws up to rounding to integer MACs)
    exps = pd.read_csv(page.parent / "tables" / "exponents.csv")
    flops = exps[exps["metric"] == "FLOPs (inference)"].set_index("block")
    assert flops.loc["dense", "measured_exponent"] == pytest.approx(2.0, abs=1e-6)
    assert flops.loc["isa 4x4", "measured_exponent"] == pytest.approx(1.5, abs=1e-6)
    # the constructed crossover: isa memory beats dense from 32x32; criss_cross never
    cx = pd.read_csv(page.parent / "tables" / "crossovers.csv")
    mem = cx[(cx["metric"] == "peak_bytes") & (cx["mode"] == "inference")].set_index("block")
    assert mem.loc["isa 4x4", "crossover_hw"] == "32x32"
    assert mem.loc["criss_cross", "crossover_hw"] == "never"
    macs = cx[cx["metric"] == "macs"].set_index("block")
    assert macs.loc["isa 4x4", "crossover_hw"] == "always"
    # factor grid: analytic optimum 4x4, measured 4x8, ratio 1/0.9
    assert "| MACs | 64x64 | 4x4 | 4x8 | 1.11 |" in text
    # failures are listed, with their error
    assert "out of memory: 16 GiB" in text and "oom" in text
    # throughput: dense at 128x128: 2*64*N^2 FLOP / (1e-6 N^2 ms) = 128 GFLOP/s, 2.56 x the 50 GFLOP/s peak
    tp = pd.read_csv(page.parent / "tables" / "throughput.csv")
    d = tp[(tp["block"] == "dense") & (tp["height"] == 128)].iloc[0]
    assert d["gflops"] == pytest.approx(128.0, rel=1e-9)
    assert d["fraction"] == pytest.approx(128.0 / 50.0, rel=1e-9)
    assert (page.parent / "tables" / "results.csv").is_file()
    assert (page.parent / "figures" / "flops_inference_naive.svg").is_file()


def test_report_tolerates_missing_data(tmp_path: Path) -> None:
    df = synthetic(with_latency=False)
    df = df[~((df["block"] == "criss_cross") & (df["metric"] == "peak_bytes"))]
    res = _write(tmp_path, df, machine={})
    page = write_report(res, tmp_path / "out")
    text = page.read_text()
    assert "## Skipped" in text
    assert "latency (inference): no measured rows" in text
    assert "no rows for criss_cross" in text
    assert "reproduction: no reproduction.csv" in text


def test_bad_results_dir(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no results table"):
        write_report(tmp_path, tmp_path / "out")
    (tmp_path / "results.csv").write_text("block,height\nisa,3\n")
    with pytest.raises(ValueError, match="lacks column"):
        write_report(tmp_path, tmp_path / "out")


def test_report_never_imports_models() -> None:
    # docs/ARCHITECTURE.md: `report` reads result files only; it must not import blocks or measure
    src = Path(data.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(from|import) isaprof\.(blocks|measure|profile)", text, re.M), f.name
