"""The latency bound's arithmetic (isaprof.roofline.bound) on a hand-worked case, and `isaprof predict`."""

from __future__ import annotations

import json

import pytest

from isaprof.roofline.bound import Bound, OpCost, bound
from isaprof.roofline.schema import Roofs

# A toy device: 100 GFLOP/s matrix peak, 10 GB/s bandwidth (ridge 10 FLOP/byte), 1 GB memory.
ROOFS = Roofs("toy", matrix_flops=100e9, bandwidth=10e9, peak="toy peak", memory_bytes=10**9)


def test_hand_worked_bound():
    ops = [
        OpCost("aten.mm", flops=2_000_000_000, bytes=50_000_000),  # 20 ms of FLOPs vs 5 ms of bytes: 20 ms
        OpCost("aten.bmm", flops=100_000_000, bytes=30_000_000),  # 1 ms vs 3 ms: memory-bound, 3 ms
        OpCost("aten._softmax", flops=0, bytes=40_000_000, calls=2),  # bytes only: 2 x 4 ms = 8 ms
    ]
    b = bound(ops, ROOFS)
    assert b.bound_ms == pytest.approx(20 + 3 + 8)
    assert (b.compute_ms, b.memory_ms) == (pytest.approx(20), pytest.approx(11))
    assert b.flops == 2_100_000_000 and b.bytes_moved == 50_000_000 + 30_000_000 + 80_000_000
    assert b.flops_ms == pytest.approx(21) and b.bytes_ms == pytest.approx(16)  # the totals' own times
    assert list(b.by_op) == ["aten.mm", "aten._softmax", "aten.bmm"]  # by bound, largest first
    assert b.by_op["aten._softmax"]["calls"] == 2 and b.by_op["aten.bmm"]["memory_ms"] == pytest.approx(3)
    j = b.to_json(peak_bytes=2 * 10**9)
    assert j["fits"] is False and "not a measurement" in j["what"] and j["ridge_flop_per_byte"] == 10


def test_bound_is_never_below_either_total_roof():
    ops = [OpCost(f"op{i}", flops=i * 10**7, bytes=(10 - i) * 10**6) for i in range(10)]
    b: Bound = bound(ops, ROOFS)
    assert b.bound_ms >= max(b.flops_ms, b.bytes_ms)
    assert b.bound_ms <= b.flops_ms + b.bytes_ms


def test_roofs_must_be_positive():
    with pytest.raises(ValueError, match="must be positive"):
        Roofs("x", 0.0, 1.0, "p")


def _cli(capsys, *argv):
    from isaprof.cli import main

    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_predict_json_keys_and_consistency(capsys):
    code, out, _ = _cli(capsys, "predict", "isa", "--gpu", "H100-SXM", "--size", "16x16", "--channels", "32",
                        "--factor", "4x4", "--json")  # fmt: skip
    assert code == 0
    r = json.loads(out)
    keys = {"bound_ms", "compute_ms", "memory_ms", "flops", "bytes_moved", "device", "fits", "by_op"}
    assert keys <= set(r)
    assert r["device"] == "h100-sxm" and r["fits"] is True and "not a measurement" in r["what"]
    assert r["flops"] == r["flop_counter_flops"] > 0  # per-call FLOPs add up to FlopCounterMode's total
    assert r["bound_ms"] == pytest.approx(r["compute_ms"] + r["memory_ms"])
    assert r["bound_ms"] >= max(r["flops_ms"], r["bytes_ms"])
    assert r["peak_used"].startswith("FP32 (CUDA cores)") and r["matrix_tflops"] == 67.0
    code, out, _ = _cli(capsys, "predict", "dense", "--gpu", "a100-80gb", "--size", "8x8", "--channels", "16",
                        "--dtype", "bfloat16")  # fmt: skip
    assert code == 0 and out.startswith("LOWER BOUND (not a measurement)") and "BF16 tensor cores" in out


def test_cli_predict_bad_input_is_one_line(capsys):
    code, _, err = _cli(capsys, "predict", "dense", "--gpu", "b999", "--size", "8x8", "--channels", "16")
    assert code == 2 and err.count("\n") == 1 and "unknown GPU 'b999'; known:" in err
    code, _, err = _cli(capsys, "predict", "dense", "--gpu", "v100", "--size", "8x8", "--channels", "16",
                        "--dtype", "bfloat16")  # fmt: skip
    assert code == 2 and "v100 has no BF16" in err


# -- the algorithm rules: each conv bounded under the cheapest algorithm cuDNN may pick -------------------


def _conv(size: int, *, dilation: int = 1, padding: int = 1, kernel: int = 3, stride: int = 1, c: int = 64):
    """(OpCost, direct FLOPs) of one C -> C convolution on a size x size map, batch 1."""
    from isaprof.measure.traffic import ConvShape

    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    shape = ConvShape(1, c, size, size, c, out, out, (kernel, kernel), (stride, stride), (padding, padding),
                      (dilation, dilation), 1, False)  # fmt: skip
    flops = 2 * c * c * kernel * kernel * out * out  # 2 x C_in x C_out x k^2 x Ho x Wo
    return OpCost("aten.convolution", flops, bytes=1, conv=shape), flops


def test_winograd_rule_lowers_a_3x3_convolution_and_leaves_a_dilated_one():
    from isaprof.roofline.bound import cheapest

    plain, flops = _conv(8)  # 2 x 64 x 64 x 9 x 64 = 4_718_592 FLOPs
    assert flops == 4_718_592
    # F(4x4, 3x3): 36 multiplications per 16 outputs instead of 144: FLOPs / 4; the FFT floor here is
    # 2 x 3 x 64 x 64 x (10 x 6 bins) = 1_474_560, above it, so Winograd holds the bound
    assert cheapest(plain) == (1_179_648, "conv_winograd")
    dilated, dflops = _conv(8, dilation=2, padding=2)
    assert dflops == flops and cheapest(dilated) == (flops, "conv_direct")  # cuDNN: dilation 1 only
    strided, sflops = _conv(8, stride=2)
    assert cheapest(strided) == (sflops, "conv_direct")  # stride 1 only
    assert cheapest(plain, library="direct") == (flops, "conv_direct")  # CPU: oneDNN's direct algorithm
    b, d = bound([plain], ROOFS), bound([dilated], ROOFS)
    assert b.bound_ms == pytest.approx(1e3 * 1_179_648 / 100e9) and b.bound_ms == pytest.approx(
        d.bound_ms / 4
    )
    assert d.bound_ms == pytest.approx(d.flops_ms) and b.flops_ms == pytest.approx(d.flops_ms)
    assert b.by_class["conv_winograd"]["effective_flops"] == 1_179_648
    assert (
        "Lavin" in b.by_class["conv_winograd"]["source"]
        and "dilation 1" in d.by_class["conv_direct"]["source"]
    )


def test_fft_floor_holds_large_maps_and_never_a_1x1():
    from isaprof.roofline.bound import cheapest, fft_flops

    big, flops = _conv(128)
    # bins = 130 x (130 // 2 + 1) = 8580 per channel pair, 3 real FMAs each: 6 x 64 x 64 x 8580
    assert fft_flops(big.conv) == 210_862_080 and cheapest(big) == (210_862_080, "conv_fft")
    assert flops / 210_862_080 > 4  # more than Winograd's 4x at this size
    one, oflops = _conv(128, kernel=1, padding=0)
    assert cheapest(one) == (oflops, "conv_direct")  # the FFT floor of a 1x1 is above its direct MACs
    assert cheapest(_conv(8, padding=3)[0])[1] == "conv_winograd"  # filter not larger than padding: no FFT


def test_l2_proof_bound_deducts_the_cache_per_call():
    ops = [OpCost("aten.relu", 0, bytes=50_000_000), OpCost("aten.add", 0, bytes=5_000_000)]
    b = bound(ops, ROOFS, cache_bytes=10_000_000)
    assert b.bound_ms == pytest.approx(5.5) and b.l2_bound_ms == pytest.approx(3.0)  # (50 - 20) MB / 10 GB/s
    assert bound(ops, ROOFS).l2_bound_ms == pytest.approx(b.bound_ms)
    assert b.by_class["memory"]["calls"] == 2 and "DRAM" in b.by_class["memory"]["assumption"]


def test_predict_names_the_rule_of_each_op_class_on_a_network(capsys):
    code, out, _ = _cli(capsys, "predict", "fcn_r50_d8", "--gpu", "v100", "--size", "64x128", "--json")
    assert code == 0
    r = json.loads(out)
    assert {"conv_direct", "conv_fft", "memory"} <= set(r["by_class"]) and r["algorithms"] == "cudnn"
    assert sum(v["bound_ms"] for v in r["by_class"].values()) == pytest.approx(r["bound_ms"])
    assert r["effective_flops"] < r["flops"] and r["bound_ms"] < r["flops_ms"]  # FFT/Winograd below FLOPs
    assert r["l2_bound_ms"] <= r["bound_ms"] and r["cache_bytes"] == 6144 * 1024  # V100: 6 MiB L2
    assert all(v["assumption"] and v["source"] for v in r["by_class"].values())
    code, out, _ = _cli(capsys, "predict", "fcn_r50_d8", "--gpu", "v100", "--size", "64x128")
    assert "op classes (cudnn rules" in out and "FFT floor" in out
