"""End to end: a synthetic tidy table (schema of docs/ARCHITECTURE.md) -> report page and figures."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isaprof.report import data, tables, write_report
from tests.report.synthetic import SIZES, synthetic, write_results


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
    res = write_results(tmp_path, synthetic())
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
    res = write_results(tmp_path, df, machine={})
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
    # docs/ARCHITECTURE.md: `report` reads result files only; it must not import the blocks or measure
    src = Path(data.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        layers = r"(blocks|targets|measure|profile|profiling)"
        assert not re.search(rf"^\s*(from|import) isaprof\.{layers}\b", text, re.M), f.name


def test_a_report_whose_figures_are_current_draws_nothing(tmp_path: Path, monkeypatch) -> None:
    from isaprof.report import plots

    res = write_results(tmp_path, synthetic())
    page = write_report(res, tmp_path / "out")
    figures = {p: p.read_bytes() for p in (page.parent / "figures").glob("*.png")}
    assert len(figures) >= 5 and all(plots.stored_hash(p) for p in figures)  # each carries its inputs' hash
    text = page.read_text()

    def no_drawing() -> None:
        raise AssertionError("a figure was drawn again although its inputs did not change")

    monkeypatch.setattr(plots, "pyplot", no_drawing)
    assert write_report(res, tmp_path / "out").read_text() == text
    assert {p: p.read_bytes() for p in figures} == figures
    # a figure whose data changed is drawn again (and only then is pyplot asked for)
    df = synthetic()
    df.loc[(df["block"] == "dense") & (df["metric"] == "flops"), "measured"] *= 2
    (res / "results.csv").write_text(df.to_csv(index=False))
    with pytest.raises(AssertionError, match="drawn again"):
        write_report(res, tmp_path / "out")


def test_the_committed_report_is_written_without_matplotlib_sympy_or_torch(tmp_path: Path) -> None:
    # `isaprof report reports/data --out reports` only reads: with the committed figures current it draws
    # none, so matplotlib (the slowest import) is never loaded; the derived expressions are evaluated
    # without SymPy. Run in a fresh interpreter on a copy of the committed report.
    import shutil
    import subprocess
    import sys

    from tests import REPO

    out = tmp_path / "reports"
    shutil.copytree(REPO / "reports", out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.png")}
    code = (
        "import sys; from isaprof.report import write_report; "
        f"write_report('reports/data', {str(out)!r}); "
        "print(' '.join(m for m in ('matplotlib', 'sympy', 'torch', 'PIL') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    stale = sorted(str(p) for p, b in before.items() if (out / p).read_bytes() != b)
    assert not stale, f"figures drawn again: {stale}; run `isaprof report reports/data --out reports`"
    assert run.stdout.split() == [], run.stdout


def test_an_impl_measured_at_one_size_gets_a_sentence_not_a_scaling_figure(tmp_path: Path) -> None:
    from tests.report.synthetic import _row

    df = synthetic()
    fast = pd.DataFrame([{**_row(b, 96, 96, "latency_ms", 2.0), "path": "fast"} for b in ("dense", "isa")])
    page = write_report(write_results(tmp_path, pd.concat([df, fast], ignore_index=True)), tmp_path / "r")
    text = page.read_text()
    assert "Latency (inference), fast on cpu: measured at one size only (96x96, B=1, C=64)" in text
    assert not (page.parent / "figures" / "latency_ms_inference_fast_cpu.png").exists()
    assert (page.parent / "figures" / "latency_ms_inference_naive_cpu.png").is_file()


def test_throughput_shows_the_same_run_fraction_beside_the_roofs(tmp_path: Path) -> None:
    df = synthetic()
    lat = df[(df["metric"] == "latency_ms") & (df["block"] == "dense")]
    same_run = lat.assign(metric="peak_fraction", unit="fraction", measured=0.675, analytic=None, spread=0.01)
    same_run.index = same_run.index + 0.5  # each right after its latency row: one attempt, as profile writes
    rows = pd.concat([df, same_run]).sort_index().reset_index(drop=True)
    page = write_report(write_results(tmp_path, rows), tmp_path / "r")
    text = page.read_text()
    tp = pd.read_csv(page.parent / "tables" / "throughput.csv")
    dense = tp[tp["block"] == "dense"]
    assert (dense["interleaved"] == 0.675).all() and (dense["interleaved_iqr"] == 0.01).all()
    assert tp[tp["block"] != "dense"]["interleaved"].isna().all()  # none measured: left empty, not zero
    assert "| of sgemm (same run) |" in text and "| 67.5% (IQR 1.0%) |" in text
    assert "measured interleaved instead" in text
