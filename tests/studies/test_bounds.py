"""Latency bounds: the keyword API behind `isaprof predict` and `isaprof table --gpu`, the convolution roof,
the measuring step (`isaprof bounds`), the report section, and bound <= measured on this
CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from isaprof.roofline.bound import OpCost, bound, gpu_roofs, predict
from isaprof.roofline.schema import Roofs
from isaprof.studies import bounds

SMALL = ["--size", "16x16", "--channels", "32"]
TOY_CPU = {"matmul_gflops": 100.0, "bandwidth_gbs": 10.0, "device_name": "toy CPU"}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from isaprof.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fp32_convolutions_use_the_tf32_peak_where_cudnn_defaults_to_it():
    a100 = gpu_roofs("a100-80gb", "float32")
    assert (a100.matrix_flops, a100.conv_flops) == (19.5e12, 156e12) and "TF32" in a100.peak
    assert gpu_roofs("v100", "float32").conv_flops is None  # no TF32 tensor cores
    assert gpu_roofs("a100-80gb", "float32", tf32=True).conv_flops is None  # all matrix ops on TF32 already
    assert gpu_roofs("a100-80gb", "bfloat16").conv_flops is None
    # hand-worked: 1 GFLOP as a conv at 100 GFLOP/s (10 ms) vs as an mm at 10 GFLOP/s (100 ms); 1 MB at 1 GB/s
    roofs = Roofs("toy", matrix_flops=10e9, bandwidth=1e9, peak="toy", conv_flops=100e9)
    ops = [OpCost("aten.convolution", 10**9, 10**6), OpCost("aten.mm", 10**9, 10**6)]
    b = bound(ops, roofs)
    assert b.bound_ms == pytest.approx(110) and b.flops_ms == pytest.approx(110)
    assert b.by_op["aten.convolution"]["compute_ms"] == pytest.approx(10)


def test_table_gpu_bound_column_equals_predict(capsys: pytest.CaptureFixture[str]):
    code, out, err = _cli(capsys, "table", "dense", "isa", *SMALL, "--gpu", "H100-SXM", "--format", "json")
    assert code == 0, err
    rows = {r["target"]: r for r in json.loads(out)["rows"]}
    for target, extra in (("dense", []), ("isa", ["--factor", "8x8"])):
        code, out, _ = _cli(capsys, "predict", target, "--gpu", "h100-sxm", *SMALL, *extra, "--json")
        assert code == 0
        assert rows[target]["bound_ms"] == pytest.approx(json.loads(out)["bound_ms"], rel=1e-12)
        assert rows[target]["bound_ms"] > 0
    assert predict("isa", "h100-sxm", size=(16, 16), channels=32)["bound_ms"] == pytest.approx(
        rows["isa"]["bound_ms"], rel=1e-12
    )


def test_table_unknown_gpu_is_one_line(capsys: pytest.CaptureFixture[str]):
    code, out, err = _cli(capsys, "table", "isa", *SMALL, "--gpu", "b999")
    assert code == 2 and out == "" and err.count("\n") == 1 and "unknown GPU 'b999'" in err


def _results(tmp_path: Path, measured_ms: str, spread: str = "0.01") -> Path:
    """A results folder with one cpu latency row (dense 8x8, C=16) of ``measured_ms``."""
    from isaprof.config import COLUMNS

    row = dict.fromkeys(COLUMNS, "")
    row.update(block="dense", batch="1", channels="16", key_channels="8", value_channels="8", height="8",
               width="8", options="{}", impl="naive", path="reference", dtype="float32", device="cpu",
               mode="inference", metric="latency_ms", measured=measured_ms, unit="ms", spread=spread,
               status="ok", device_name="toy CPU")  # fmt: skip
    with (tmp_path / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerow(row)
    (tmp_path / "machine.json").write_text(json.dumps({"cpu": TOY_CPU}))
    return tmp_path


# Published entries shrunk to unit-test size (the real ones: reference/published.toml, [[latency]])
SMALL_LATENCY = [
    {"network": "fcn_r50_d8", "config": "fcn-small-whole", "metafile": "configs/fcn/fcn.yml",
     "commit": "0" * 40, "value": 1000.0, "unit": "ms", "size": [64, 128], "test_mode": "whole"},
    {"network": "isanet_r50_d8", "config": "isanet-small-slide", "metafile": "configs/isanet/isanet.yml",
     "commit": "1" * 40, "value": 1e-6, "unit": "ms", "size": [64, 96], "test_mode": "slide",
     "crop": [48, 48], "stride": [32, 32]},
]  # fmt: skip


@pytest.fixture
def small_papers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds, "SIZES", ((8, 8),))
    monkeypatch.setattr(bounds, "CHANNELS", 16)
    monkeypatch.setattr(bounds, "published_latency", lambda: SMALL_LATENCY)


def test_measuring_step_rows(tmp_path: Path, small_papers: None, capsys: pytest.CaptureFixture[str]):
    code, out, _ = _cli(capsys, "bounds", str(_results(tmp_path, "5.0")), "--gpus", "v100,h100-sxm")
    path = tmp_path / "bounds.csv"
    assert code == 0 and out.startswith(f"{path} (")
    rows = list(csv.DictReader(path.open()))
    assert set(rows[0]) == set(bounds.COLUMNS)
    papers = [r for r in rows if r["scope"] == "papers"]
    from isaprof import targets as blocks

    configs = {(r["block"], r["impl"], r["dtype"]) for r in papers}
    assert {b for b, _, _ in configs} == set(blocks.names()) and {d for _, _, d in configs} == set(
        bounds.DTYPES
    )
    skipped = [r for r in papers if r["status"] == "skipped"]
    assert skipped and all(r["device"] == "v100" and r["dtype"] == "bfloat16" for r in skipped)
    assert "no BF16" in skipped[0]["error"]

    def value(scope: str, device: str, metric: str, **where: str) -> float:
        (hit,) = [r for r in rows if r["scope"] == scope and r["device"] == device and r["metric"] == metric
                  and all(r[k] == v for k, v in where.items())]  # fmt: skip
        return float(hit["value"])

    where = dict(block="dense", impl="naive", dtype="bfloat16")
    b = value("papers", "h100-sxm", "bound_ms", **where)
    assert b == pytest.approx(value("papers", "h100-sxm", "compute_ms", **where)
                              + value("papers", "h100-sxm", "memory_ms", **where))  # fmt: skip
    ref = predict("dense", "h100-sxm", size=(8, 8), channels=16, dtype="bfloat16")
    assert b == pytest.approx(ref["bound_ms"], rel=1e-12)
    # this CPU: the bound on machine.json's roofs beside the measured latency
    cpu_bound = value("cpu", "cpu (measured)", "bound_ms")
    roofs = Roofs("cpu", 100e9, 10e9, "toy")
    assert cpu_bound == pytest.approx(predict("dense", roofs, size=(8, 8), channels=16)["bound_ms"])
    assert value("cpu", "cpu (measured)", "latency_ms") == 5.0


def test_measuring_step_unknown_gpu_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code, _, err = _cli(capsys, "bounds", str(tmp_path), "--gpus", "v100,b999")
    assert code == 2
    assert err.count("\n") == 1 and "unknown GPU 'b999'" in err and not (tmp_path / "bounds.csv").exists()


@pytest.mark.parametrize("measured, flagged", [("1e-9", True), ("1e6", False)])
def test_report_section_flags_a_block_faster_than_its_bound(
    tmp_path: Path, small_papers: None, measured: str, flagged: bool
):
    from isaprof.report.bounds import bounds_section

    (tmp_path / "r").mkdir()
    results = _results(tmp_path / "r", measured)
    bounds.measure_bounds(results, gpus=["a100-80gb"])
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    notes: list[str] = []
    text = bounds_section(results, out, notes)
    assert "lower bound, not a measurement" in text and "at 1x16x8x8 (B x C x H x W)" in text
    assert "a100-80gb float32" in text and "a100-80gb bfloat16" in text and "156" in text  # TF32 conv peak
    assert ("**1 flagged** (dense [naive])" in text) is flagged and ("none is." in text) is not flagged
    assert (out / "tables" / "bounds_cpu.csv").is_file() and not notes


def test_report_section_without_file_is_a_note(tmp_path: Path):
    from isaprof.report.bounds import bounds_section

    notes: list[str] = []
    assert bounds_section(tmp_path, tmp_path, notes) == "" and f"`isaprof bounds {tmp_path}`" in notes[0]


@pytest.mark.timing  # asserts a timed measurement: not in `make test`; `make bench-bounds` runs it
@pytest.mark.parametrize("block", ["dense", "isa", "criss_cross"])
def test_bound_holds_on_this_cpu(block: str):
    """Measured >= bound on this CPU's own roofs (``isaprof machine``'s host cache, measured if absent).

    At 32x32, C = 64 the call takes milliseconds and its timing is stable. Compared: the minimum of three
    medians (``quick`` protocol) against the bound / MARGIN; MARGIN = 1.25 covers the roofs having been
    measured at another moment on a shared machine (their spread is a few to ~15%). A failure means the
    bytes or FLOP counter or a roof is wrong, not noise."""
    from isaprof.profiling.profiler import profile
    from isaprof.roofline.bound import roofs_for

    margin = 1.25
    config = dict(size=(32, 32), channels=64)
    b = predict(block, roofs_for("cpu"), **config)["bound_ms"]
    best = min(profile(block, device="cpu", latency="quick", **config).latency.median_ms for _ in range(3))
    assert best * margin >= b, f"{block}: measured {best:.4f} ms < bound {b:.4f} ms / {margin}"


def _every_block_impl() -> list[tuple[str, str, str]]:
    from isaprof import targets as blocks

    out = [(b, impl, "reference") for b in blocks.names() for impl in blocks.spec(b).impls]
    return out + [(b, "naive", "fast") for b in ("dense", "isa")]


@pytest.mark.parametrize("block, impl, path", _every_block_impl())
def test_per_call_flops_add_up_to_the_flop_counter(block: str, impl: str, path: str):
    """The bound's per-call FLOPs are FlopCounterMode's: the fused sdpa kernels too (they once counted 0,
    putting sdpa's bound 30x too low)."""
    from isaprof.roofline.bound import count

    backend = "flash" if impl == "sdpa" else None
    c = count(block, size=(8, 8), channels=16, impl=impl, backend=backend, path=path)
    assert sum(o.flops for o in c.ops) == c.flop_counter_flops > 0 and not c.uncounted


# -- the networks against their published V100 times ----------------------------------------------------


def test_published_latency_entries_are_sourced_networks():
    from isaprof.targets import network_names

    entries = bounds.published_latency()
    assert len(entries) == 29  # 7 families x (r50, r101) x (512x1024 whole, 769x769 slide) + ocrnet r101
    for e in entries:
        assert e["network"] in network_names() and e["hardware"] == "V100" and e["mode"] == "FP32"
        assert len(e["commit"]) == 40 and e["metafile"].startswith("configs/") and e["value"] > 0
        assert e["size"] == [1024, 2048] and (e["test_mode"] == "slide") == (e["resolution"] == "(769,769)")
    fcn = next(e for e in entries if e["config"] == "fcn_r50-d8_4xb2-40k_cityscapes-512x1024")
    assert fcn["value"] == 239.81 and fcn["test_mode"] == "whole"


def test_latency_rows_and_report_section(
    tmp_path: Path, small_papers: None, capsys: pytest.CaptureFixture[str]
):
    from isaprof.report.gpu_latency import gpu_latency_section

    code, _, err = _cli(capsys, "bounds", str(tmp_path), "--gpus", "v100")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / bounds.LATENCY).open()))
    assert set(rows[0]) == set(bounds.LATENCY_COLUMNS)
    totals = {r["network"]: r for r in rows if r["class"] == "total"}
    assert set(totals) == {"fcn_r50_d8", "isanet_r50_d8"} and all(
        r["status"] == "ok" for r in totals.values()
    )
    fcn = totals["fcn_r50_d8"]
    ref = predict("fcn_r50_d8", "v100", size=(64, 128))
    assert float(fcn["bound_ms"]) == pytest.approx(ref["bound_ms"], rel=1e-12)
    assert float(fcn["ratio"]) == pytest.approx(1000.0 / ref["bound_ms"])
    slide = predict("isanet_r50_d8", "v100", size=(64, 96), test_mode="slide", crop=(48, 48), stride=(32, 32))
    assert float(totals["isanet_r50_d8"]["bound_ms"]) == pytest.approx(slide["bound_ms"], rel=1e-12)
    classes = [r for r in rows if r["network"] == "fcn_r50_d8" and r["class"] != "total"]
    assert sum(float(r["bound_ms"]) for r in classes) == pytest.approx(float(fcn["bound_ms"]))
    assert all(r["assumption"] and r["source"] for r in classes)
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    notes: list[str] = []
    text = gpu_latency_section(tmp_path, out, notes)
    assert text.startswith("## GPU latency against published timings") and not notes
    assert "| fcn_r50_d8 " in text and "| isanet_r50_d8 " in text  # a row per network
    assert "**1** (isanet_r50_d8)" in text  # 1e-6 ms published: faster than its bound, flagged
    assert (out / "tables" / "gpu_latency.csv").is_file()


def test_gpu_latency_section_without_file_is_a_note(tmp_path: Path):
    from isaprof.report.gpu_latency import gpu_latency_section

    notes: list[str] = []
    assert gpu_latency_section(tmp_path, tmp_path, notes) == "" and "isaprof bounds" in notes[0]


@pytest.mark.slow  # published sizes, ~3 minutes: `make test-slow`
def test_v100_bound_is_below_every_published_time():
    rows = bounds.latency_rows()
    totals = [r for r in rows if r["class"] == "total"]
    assert len(totals) == 29 and all(r["status"] == "ok" for r in totals)
    for r in totals:
        assert r["bound_ms"] < r["published_ms"], r["config"]
        assert r["l2_bound_ms"] <= r["bound_ms"]


def test_cpu_rows_take_the_winning_attempt_made_on_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A configuration measured again on this machine appears once, with this machine's latency: neither
    the superseded attempt without a machine id nor another machine's row is set against these roofs."""
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "node here")
    path = _results(tmp_path, "9.0") / "results.csv"  # written before machine ids were recorded
    rows = list(csv.DictReader(path.open()))
    again = {**rows[0], "measured": "5.0", "machine": "node here"}
    other = {**rows[0], "measured": "7.0", "machine": "node elsewhere", "height": "16", "width": "16"}
    with path.open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(rows[0])).writerows([again, other])
    got = [r for r in bounds.cpu_rows(tmp_path, {"matmul_gflops": 100.0, "bandwidth_gbs": 10.0})
           if r["metric"] == "latency_ms"]  # fmt: skip
    assert [(int(r["height"]), float(r["value"])) for r in got] == [(8, 5.0)]
