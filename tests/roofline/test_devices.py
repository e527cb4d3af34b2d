"""The GPU catalogue (reference/devices.toml) and its loader."""

from __future__ import annotations

import pytest

from isaprof.roofline import devices

WANTED = ("v100", "a100-40gb", "a100-80gb", "h100-sxm", "h100-pcie", "h200", "l4", "rtx4090")


def test_catalogue_schema():
    cat = devices.load()
    assert set(WANTED) <= set(cat)
    for key, d in cat.items():
        assert key == key.lower() == d.key
        assert d.url.startswith("https://") and d.source
        assert 0 < d.fp32_tflops < 200 and 100 < d.bandwidth_gbs < 10_000 and 8 <= d.memory_gb <= 200
        for t in (d.tf32_tflops, d.bf16_tflops, d.fp16_tflops):
            assert t is None or d.fp32_tflops <= t < 2000  # dense tensor peaks sit above the FP32 peak
        if d.bf16_tflops and d.tf32_tflops:
            assert d.bf16_tflops == pytest.approx(2 * d.tf32_tflops, rel=0.02)  # dense TF32 = half BF16


def test_case_insensitive_lookup_and_one_line_error():
    assert devices.get("H100-SXM").name.startswith("NVIDIA H100 SXM")
    with pytest.raises(ValueError, match=r"unknown GPU 'b999'; known: a100-40gb, .*v100") as e:
        devices.get("b999")
    assert "\n" not in str(e.value)


def test_matrix_peak_choice():
    h = devices.get("h100-sxm")
    assert h.matrix_peak("float32") == (67.0e12, "FP32 (CUDA cores)")
    assert h.matrix_peak("float32", tf32=True)[0] == 494.5e12
    assert h.matrix_peak("bfloat16")[0] == 989.5e12
    with pytest.raises(ValueError, match="v100 has no BF16"):
        devices.get("v100").matrix_peak("bfloat16")
    with pytest.raises(ValueError, match="no float64 peak"):
        h.matrix_peak("float64")


def test_bad_entry_is_one_line(tmp_path):
    p = tmp_path / "d.toml"
    p.write_text('[x]\nname = "X"\nfp32_tflops = 1.0\n')
    with pytest.raises(ValueError, match="device 'x': missing"):
        devices.load(p)
