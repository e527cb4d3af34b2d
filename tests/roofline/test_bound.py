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
