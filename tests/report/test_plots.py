"""The report's roofline: intensity from bytes moved, both roofs, each run's fraction of its own bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from isaprof.report import write_report
from isaprof.results.reader import KEY_COLUMNS
from tests.report.synthetic import synthetic, write_results

# dense moves 4 N^2 bytes for 128 N^2 FLOPs: intensity 32 FLOP/byte; isa 10 N^1.5 bytes for 128 N^1.5
# FLOPs: 12.8 FLOP/byte (synthetic costs of tests/report/synthetic.py: FLOPs = 2 x MACs).
# criss_cross gets none (its synthetic latency is not physical): it must drop out of the bound table.
MOVED = {"dense": lambda n: 4 * n**2, "isa": lambda n: 10 * n**1.5}


def with_traffic() -> pd.DataFrame:
    df = synthetic()
    moved = df[
        (df["metric"] == "macs") & df["block"].isin(list(MOVED)) & df["factor"].isin(["", "4x4"])
    ].copy()
    n = moved["height"] * moved["width"]
    moved["measured"] = [MOVED[b](v) for b, v in zip(moved["block"], n, strict=True)]
    moved["metric"], moved["unit"], moved["analytic"] = "bytes_moved", "byte", moved["measured"]
    # each configuration's rows together, as one profile call appends them (the reader keeps a
    # configuration's last attempt: a lone bytes_moved row further down would be one)
    both = pd.concat([df, moved], ignore_index=True)
    cols = [c for c in KEY_COLUMNS if c in both.columns]
    return both.sort_values(cols, kind="stable", key=lambda c: c.astype(str)).reset_index(drop=True)


def _tp(page: Path) -> pd.DataFrame:
    return pd.read_csv(page.parent / "tables" / "throughput.csv")


def test_roofline_bound_and_fractions(tmp_path: Path) -> None:
    machine = {"cpu": {"matmul_gflops": 200.0, "bandwidth_gbs": 10.0}}
    page = write_report(write_results(tmp_path, with_traffic(), machine), tmp_path / "out")
    tp = _tp(page)
    d = tp[(tp["block"] == "dense") & (tp["height"] == 128)].iloc[0]
    # 128 GFLOP/s achieved; memory roof 10 GB/s x 32 FLOP/byte = 320 > 200: compute-bound, 128/200
    assert d["intensity"] == pytest.approx(32.0, rel=1e-12)
    assert (d["bound_gflops"], d["bound_by"]) == (200.0, "compute")
    assert d["roof_fraction"] == pytest.approx(0.64, rel=1e-9)
    i = tp[(tp["block"] == "isa") & (tp["height"] == 128)].iloc[0]
    # isa: 2*64 N^1.5 FLOP / (1e-4 N^1.5 ms) = 1.28 GFLOP/s; memory roof 10 x 12.8 = 128 < 200: memory-bound
    assert i["bound_by"] == "memory" and i["bound_gflops"] == pytest.approx(128.0, rel=1e-9)
    assert i["roof_fraction"] == pytest.approx(0.01, rel=1e-9)
    text = page.read_text()
    assert (
        "![roofline cpu](figures/roofline.png)" in text
        and (page.parent / "figures" / "roofline.png").is_file()
    )
    assert "fraction of its own roofline bound" in text and "beat their roofline bound" not in text
    assert "| dense | naive | cpu | inference | compute |" in text
    assert "| criss_cross | naive | cpu |" not in text  # no bytes moved: no bound, no row


def test_a_run_above_its_bound_is_called_out(tmp_path: Path) -> None:
    machine = {"cpu": {"matmul_gflops": 200.0, "bandwidth_gbs": 2.0}}  # dense bound 2 x 32 = 64 < 128
    page = write_report(write_results(tmp_path, with_traffic(), machine), tmp_path / "out")
    assert "beat their roofline bound beyond the latency IQR" in page.read_text()


def test_old_results_without_bytes_moved_say_so(tmp_path: Path) -> None:
    machine = {"peak_gflops": {"cpu": 50.0}}  # an old machine.json: no bandwidth either
    page = write_report(write_results(tmp_path, synthetic(), machine), tmp_path / "out")
    text = page.read_text()
    assert "no bytes_moved rows" in text and "no bandwidth_gbs" in text
    tp = _tp(page)
    assert tp["intensity"].isna().all() and tp["roof_fraction"].isna().all()
    assert tp["fraction"].notna().all()  # the matmul-peak fraction still reads the old file
    assert (page.parent / "figures" / "roofline.png").is_file()


def test_cuda_section_absent_then_present(tmp_path: Path) -> None:
    import csv
    import json

    res = write_results(tmp_path, synthetic())
    assert "No CUDA measurement was made" in write_report(res, tmp_path / "out").read_text()
    (res / "cuda").mkdir()
    rows = [
        dict(block="dense", impl="naive", height=64, width=64, dtype="float32", mode="inference",
             peak_measured=1e6, peak_cuda_predicted=1.015e6, peak_error=0.015, peak_within_goal=True,
             latency_ms=2.0, latency_iqr_ms=0.1, bound_ms=1.5, latency_over_bound=4 / 3, bound_holds=True,
             error=""),
        dict(block="isa", impl="naive", height=64, width=64, dtype="bfloat16", mode="train",
             peak_measured=1e6, peak_cuda_predicted=1.03e6, peak_error=0.03, peak_within_goal=False,
             latency_ms=2.0, latency_iqr_ms=0.1, bound_ms=2.5, latency_over_bound=0.8, bound_holds=False,
             error=""),
    ]  # fmt: skip
    with (res / "cuda" / "comparison.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    dev = {"device_name": "NVIDIA H200", "torch": "2.9", "cuda": "12.8", "catalogue_key": "h200"}
    (res / "cuda" / "device.json").write_text(json.dumps(dev))
    text = write_report(res, tmp_path / "out2").read_text()
    assert "No CUDA measurement was made" not in text
    assert "Measured on NVIDIA H200, torch 2.9, CUDA 12.8" in text
    assert "within 2% in 1 of 2, largest error 3.0%" in text
    assert "at or above it in 1, below it beyond the IQR in 1" in text


def test_curves_coincide_only_within_the_tolerance_at_every_common_size() -> None:
    from isaprof.report import plots

    n = np.array([256, 1024, 4096, 9409, 16384, 36864])
    base = np.array([1.0, 4.0, 16.0, 37.0, 64.0, 144.0])
    everywhere = base * np.array([1.02, 0.98, 1.029, 0.975, 1.01, 1.0])  # |ln ratio| < 0.03 at all six
    assert plots.overlaps(n, everywhere, n, base) and plots.overlaps(n, base, n, everywhere)
    # equal at half the sizes, 17% apart at the others (axial against isa 8x8 in the old figures)
    half = base * np.array([1.0, 1.17, 1.0, 1.17, 1.0, 1.17])
    assert not plots.overlaps(n, half, n, base)
    one_off = everywhere.copy()
    one_off[-1] *= 1.05  # a single size 5% apart is enough to keep them apart
    assert not plots.overlaps(n, one_off, n, base)
    assert not plots.overlaps(n[:1], base[:1], n[:1], base[:1])  # one common size: no claim
    assert not plots.overlaps(n[:3], base[:3], n[3:], base[3:])  # no common size
    assert plots.overlaps(n[1:], base[1:], n[:4], base[:4])  # 3 common sizes, equal there
    with_gap = base.copy()
    with_gap[2] = np.nan  # a size without a value cannot be said to coincide
    assert not plots.overlaps(n, with_gap, n, base)
    assert plots.dodge_note("axial", 1.07) == "  (= axial within 3%, drawn 7% right)"


def test_stored_hash_reads_the_png_text_chunk(tmp_path: Path) -> None:
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    from isaprof.report import plots

    info = PngInfo()
    info.add_text("Software", "x")
    info.add_text(plots.KEY, "abc123")
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png", pnginfo=info)
    Image.new("RGB", (2, 2)).save(tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"not a png")
    assert plots.stored_hash(tmp_path / "a.png") == "abc123"
    assert plots.stored_hash(tmp_path / "b.png") is None
    assert plots.stored_hash(tmp_path / "c.png") is None
    assert plots.stored_hash(tmp_path / "absent.png") is None


def test_markers_sitting_on_earlier_markers_are_found_per_size() -> None:
    from isaprof.report import plots

    x = np.array([256.0, 1024.0, 4096.0])
    earlier = [(x, np.array([1.0, 4.0, 16.0])), (x * plots.DODGE, np.array([2.0, 8.0, 32.0]))]
    # on the first curve at 256 (2% off) and 4096 (exact); 1024 is 10% off; the dodged curve has other x
    got = plots.sits_on(x, np.array([1.02, 4.4, 16.0]), earlier)
    assert got.tolist() == [True, False, True]
    assert plots.sits_on(x * plots.DODGE, np.array([2.0, 8.0, 1.0]), earlier).tolist() == [True, True, False]
    assert plots.sits_on(x, np.array([1.0, 4.0, 16.0]), []).tolist() == [False, False, False]
