"""``make gpu-check`` (``isaprof gpu-check``, isaprof.studies.gpu_check): its CPU rehearsal here, its
comparison logic, its gpu tests."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import pytest
import torch

from isaprof.cli import main
from isaprof.studies import gpu_check as gpucheck
from isaprof.studies.sweep import load, read_rows, run_sweep
from isaprof.studies.sweep.spec import expand

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_grid_fallback_equals_the_toml() -> None:
    assert load(gpucheck.SPEC) == [gpucheck.GRID]
    cfgs = expand([gpucheck.GRID])
    # dense, isa, non_local x (naive, sdpa) + criss_cross x naive = 7, x 2 sizes x 2 dtypes x 2 modes
    assert len(cfgs) == 7 * 2 * 2 * 2 and {c.device for c in cfgs} == {"cuda"}


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H200", "h200"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("Tesla V100-SXM2-16GB", "v100"),
        ("NVIDIA L4", "l4"),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA L40S", None),
    ],
)
def test_catalogue_key(name: str, key: str | None) -> None:
    assert gpucheck.catalogue_key(name) == key


def test_cpu_rehearsal_skips_cuda_parts(tmp_path, capsys) -> None:
    assert main(["gpu-check", "--no-tests", "--out", str(tmp_path / "cuda")]) == 0
    out = capsys.readouterr().out
    if not torch.cuda.is_available():
        assert "no CUDA device here" in out and not (tmp_path / "cuda").exists()


def _rows(**over: str) -> list[dict[str, str]]:
    base = dict(block="dense", impl="naive", backend="", options="{}", height="64", width="64", batch="1",
                channels="512", dtype="float32", mode="inference", path="reference", factor="", recurrence="",
                device="cuda", status="ok", spread="")  # fmt: skip
    base.update(over)
    return [
        {**base, "metric": "peak_bytes", "measured": "1000000"},
        {**base, "metric": "latency_ms", "measured": "2.0", "spread": "0.1"},
        {**base, "metric": "peak_bytes", "measured": "5", "device": "meta"},  # not a cuda measurement
    ]


def test_compare_arithmetic() -> None:
    rows = _rows() + _rows(mode="train")
    preds = {"inference": (1_015_000, 1.5), "train": (1_030_000, 2.5)}
    got = gpucheck.compare(
        rows, lambda r: dict(zip(("cuda_predicted", "bound_ms"), preds[r["mode"]], strict=True))
    )
    inf, train = got
    # 1.015e6 / 1e6 - 1 = 1.5% (within the 2% goal); 3% is not
    assert inf["peak_error"] == pytest.approx(0.015) and inf["peak_within_goal"] is True
    assert train["peak_error"] == pytest.approx(0.03) and train["peak_within_goal"] is False
    # latency 2.0 ms (IQR 0.1) against bounds 1.5 (holds) and 2.5 (> 2.0 + 0.1: broken)
    assert (inf["bound_holds"], train["bound_holds"]) == (True, False)
    assert inf["latency_over_bound"] == pytest.approx(2.0 / 1.5)
    assert set(inf) == set(gpucheck.COLUMNS)


def test_predictions_from_real_sweep_rows(tmp_path) -> None:
    """A real (cpu) sweep row relabelled cuda: the arguments rebuilt from it are ones `profile` accepts,
    and one count on meta gives both predictions."""
    cfg = expand([dict(blocks=["isa"], sizes=["8x8"], channels=[8], factors=["2x2"], devices=["cpu"],
                       impls=["naive"], modes=["inference"], latency="none")])  # fmt: skip
    run_sweep(cfg, tmp_path, progress=False, machine=False)
    rows = [{**r, "device": "cuda"} for r in read_rows(tmp_path)]
    assert gpucheck.profile_kwargs(rows[0])["factor"] == (2, 2)
    got = gpucheck.compare(rows, lambda r: gpucheck.predict_row(r, "h200", tf32=False))
    assert len(got) == 1 and got[0]["block"] == "isa"
    assert "profile:" not in got[0]["error"]  # profile on meta ran with the rebuilt arguments
    assert got[0]["peak_cuda_predicted"] is not None or "cuda_predicted" in got[0]["error"]
    assert got[0]["bound_ms"] > 0 and got[0]["error"] == ""


def test_what_cannot_be_predicted_is_said_not_raised() -> None:
    row = dict(block="isa", impl="sdpa", backend="efficient", options='{"factor": [2, 2]}', height="8",
               width="8", batch="1", channels="8", key_channels="4", value_channels="4", dtype="float32",
               mode="inference")  # fmt: skip
    got = gpucheck.predict_row(row, None, tf32=False)
    assert got["cuda_predicted"] is None and got["bound_ms"] is None
    assert "profile: ValueError:" in got["error"] and "not in reference/devices.toml" in got["error"]
    # a CUDA-only kernel is not counted on meta; the bound is that of the meta default kernel
    got = gpucheck.predict_row(row, "h200", tf32=False)
    assert got["cuda_predicted"] is None and got["bound_ms"] > 0 and got["error"].startswith("profile:")


def cli_json(argv: list[str]) -> dict[str, Any]:
    """``isaprof ARGV`` in this process, its stdout parsed as JSON (exit status 0 asserted)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return json.loads(out.getvalue())


def _profile_json(*argv: str) -> dict:
    return cli_json(["profile", "dense", "--size", "16x16", "--channels", "32", *argv, "--json"])


@pytest.mark.gpu
@CUDA
@pytest.mark.parametrize("mode", ["inference", "train"])
def test_allocator_peak_matches_cuda_predicted(mode: str) -> None:
    measured = _profile_json("--device", "cuda", "--mode", mode, "--latency", "none")["peak_bytes"][
        "measured"
    ]
    predicted = _profile_json("--device", "meta", "--mode", mode)["peak_bytes"]["cuda_predicted"]
    assert predicted == pytest.approx(measured, rel=gpucheck.PEAK_GOAL)


@pytest.mark.gpu
@CUDA
def test_latency_not_below_bound() -> None:
    gpu = gpucheck.catalogue_key(torch.cuda.get_device_name())
    if gpu is None:
        pytest.skip(f"{torch.cuda.get_device_name()} is not catalogued")
    argv = ["dense", "--size", "64x64", "--channels", "512"]
    doc = cli_json(["profile", *argv, "--device", "cuda", "--json"])
    bound = cli_json(["predict", *argv, "--gpu", gpu, "--tf32", "--json"])["bound_ms"]
    assert doc["latency_ms"] + doc["latency_iqr_ms"] >= bound


def test_sweep_resumes_within_a_budget(tmp_path, monkeypatch) -> None:
    import json

    import isaprof.studies.sweep
    from isaprof.roofline import roofs

    grid = dict(blocks=["dense"], sizes=["8x8", "8x4"], channels=[8], impls=["naive"], devices=["meta"])
    cfgs = expand([{**grid, "modes": ["inference"]}])
    monkeypatch.setattr(isaprof.studies.sweep, "load_configs", lambda _: cfgs)
    monkeypatch.setattr(roofs, "available_devices", lambda: ("cpu",))
    cached = {"matmul_gflops": 1.0, "bandwidth_gbs": 1.0, "threads": torch.get_num_threads()}
    monkeypatch.setenv("ISAPROF_CACHE", str(tmp_path))
    roofs.cache_path().write_text(json.dumps({"cpu": cached}))  # machine.json from the host cache: no timing
    out = tmp_path / "out"
    assert gpucheck.sweep(out, budget_s=-1.0) == (0, 2)  # budget spent before the first configuration
    assert gpucheck.sweep(out, budget_s=600.0) == (2, 0)
    assert len({(r["height"], r["width"]) for r in read_rows(out)}) == 2
    assert json.loads((out / "machine.json").read_text())["cpu"]["matmul_gflops"] == 1.0


def test_step_rows_predict_and_say_why_not_measured(tmp_path) -> None:  # noqa: ANN001
    import torch

    from isaprof.studies import gpu_check

    assert [t for t, _, _ in gpu_check.STEP_ROWS] == ["isanet_r50_d8", "nonlocal_r50_d8"]
    (row,) = gpu_check.step_rows((("fcn_r50_d8", (32, 32), 1),))
    assert row["predicted"] >= row["tensors"] > 0 and row["reserved_predicted"] >= row["predicted"]
    if not torch.cuda.is_available():
        assert "CUDA" in row["note"] and "measured" not in row
    path = gpu_check.write_steps(tmp_path, [row])
    assert path.read_text().splitlines()[0] == ",".join(gpu_check.STEP_COLUMNS)
