"""Bytes moved (isaprof.measure.traffic): exact integers, the arithmetic in a comment."""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.measure.traffic import count_bytes_moved, tensor_bytes
from isaprof.profiling.profiler import profile

F32 = 4


def test_mm_reads_both_operands_and_writes_the_product():
    a, b = torch.randn(3, 4), torch.randn(4, 5)
    r = count_bytes_moved(lambda: a @ b)
    # reads 3*4 + 4*5 floats, writes 3*5 floats
    assert (r.reads, r.writes, r.total) == ((12 + 20) * F32, 15 * F32, 47 * F32)
    assert dict(r.by_op) == {"aten.mm": 47 * F32}
    assert [c.flops for c in r.calls] == [2 * 3 * 4 * 5]


def test_bmm_exact():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    r = count_bytes_moved(lambda: torch.bmm(a, b))
    assert dict(r.by_op) == {"aten.bmm": 2 * (12 + 20 + 15) * F32}


def test_conv_reads_input_weight_bias_writes_output():
    conv = torch.nn.Conv2d(3, 8, 3)
    x = torch.randn(2, 3, 10, 10)
    r = count_bytes_moved(lambda: conv(x))
    # input 2*3*10*10, weight 8*3*3*3, bias 8, output 2*8*8*8
    assert dict(r.by_op) == {"aten.convolution": (600 + 216 + 8 + 1024) * F32}
    assert r.reads == (600 + 216 + 8) * F32 and r.writes == 1024 * F32


def test_copy_reads_source_writes_destination_once():
    x, y = torch.randn(4, 5), torch.empty(4, 5)
    assert count_bytes_moved(lambda: y.copy_(x)).total == 2 * 20 * F32  # copy_ does not read y
    r = count_bytes_moved(lambda: x.t().contiguous())  # a transposed view materialised by clone
    assert dict(r.by_op) == {"aten.clone": 2 * 20 * F32} and r.free == {"aten.t": 1}


def test_views_move_nothing_and_broadcast_inputs_are_read_once():
    x = torch.randn(2, 3, 4)
    r = count_bytes_moved(lambda: x.view(6, 4).transpose(0, 1).unsqueeze(0).expand(3, 4, 6))
    assert r.total == 0 and set(r.free) == {"aten.view", "aten.transpose", "aten.unsqueeze", "aten.expand"}
    bias, y = torch.randn(1, 5), torch.randn(7, 5)
    assert tensor_bytes(bias.expand(7, 5)) == 5 * F32
    r = count_bytes_moved(lambda: y + bias.expand(7, 5))
    assert r.reads == (35 + 5) * F32 and r.writes == 35 * F32
    r = count_bytes_moved(lambda: y * y)  # the same tensor twice is read once
    assert r.reads == 35 * F32


def test_in_place_reads_and_writes_its_argument():
    x, y = torch.randn(10), torch.randn(10)
    r = count_bytes_moved(lambda: x.add_(y))
    assert (r.reads, r.writes) == (20 * F32, 10 * F32)
    assert count_bytes_moved(lambda: x.zero_()).total == 10 * F32  # write only


def test_backward_is_counted():
    a = torch.randn(3, 4, requires_grad=True)
    b = torch.randn(4, 5)
    g = torch.randn(3, 5)
    r = count_bytes_moved(lambda: (a @ b).backward(g))
    # forward mm 47 floats; backward dA = g b^T: reads 15 + 20, writes 12
    assert r.by_op["aten.mm"] == (47 + 47) * F32


def test_fake_and_real_tensors_count_the_same():
    with FakeTensorMode():
        a, b = torch.randn(3, 4), torch.randn(4, 5)
        fake = count_bytes_moved(lambda: a @ b)
    assert fake.total == 47 * F32


def test_profile_reports_bytes_moved_on_meta_and_cpu():
    meta = profile("dense", size=(4, 4), channels=8, mode="train")
    cpu = profile("dense", size=(4, 4), channels=8, mode="train", device="cpu", latency=None)
    assert meta.bytes_moved.total == cpu.bytes_moved.total > 0
    j = meta.to_json()["bytes_moved"]
    assert j["measured"] == sum(j["by_op"].values()) == j["reads"] + j["writes"]
    assert "aten.convolution_backward" in j["by_op"]
    row = [r for r in meta.rows() if r["metric"] == "bytes_moved"][0]
    assert (row["measured"], row["unit"]) == (meta.bytes_moved.total, "byte")
