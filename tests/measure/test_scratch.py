"""measure.scratch: each rule equals the allocations torch's profiler records inside the real kernel; the
tracker holds the scratch at the op (peak, tensor_peak, scratch, scratch_ops); ops that allocate inside
without a rule are listed; the fast path of nn.TransformerEncoderLayer / nn.MultiheadAttention at 64x64
tokens predicts the rise of a fresh process's memory high-water mark within 5 %.
"""

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.profiler import ProfilerActivity
from torch.profiler import profile as torch_profile

from isaprof.measure import track_peak
from isaprof.measure.cuda_memory import CudaAllocatorModel
from isaprof.measure.scratch import KNOWN_ALLOCATING, RULES, onednn_convolution

MiB = 2**20


def profiler_peak(fn) -> int:
    """Peak bytes held during ``fn()`` above its start, from the allocator events of torch's profiler."""
    with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted(prof.profiler.kineto_results.events(), key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        if e.name() == "[memory]":
            live += e.nbytes()
            peak = max(peak, live)
    del out
    return peak


def _mha(need_weights: bool, average: bool):
    torch.manual_seed(0)
    m = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    x = torch.randn(2, 37, 16)  # (B, T, D)
    return lambda: m(x, x, x, need_weights=need_weights, average_attn_weights=average)


def _layer(norm_first: bool, activation: str):
    torch.manual_seed(0)
    m = nn.TransformerEncoderLayer(16, 4, 40, batch_first=True, norm_first=norm_first, activation=activation)
    x = torch.randn(2, 37, 16)
    return lambda: m.eval()(x)


def _flash(n: int, d: int, backward: bool):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, d) for _ in range(3))  # (B, H, L, E)
    fwd = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    if not backward:
        return lambda: fwd(q, k, v)
    o, lse = fwd(q, k, v)
    g = torch.randn_like(o)
    return lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        g, q, k, v, o, lse, 0.0, False
    )


CASES = {
    "mha": _mha(False, True),
    "mha-weights-averaged": _mha(True, True),
    "mha-weights-per-head": _mha(True, False),
    "layer-relu": _layer(False, "relu"),
    "layer-gelu-norm-first": _layer(True, "gelu"),
    "flash-short": _flash(100, 16, False),
    "flash-mid": _flash(300, 8, False),
    "flash-long": _flash(800, 16, False),
    "flash-backward": _flash(300, 16, True),
    "flash-backward-long": _flash(1000, 8, True),
}


@pytest.mark.parametrize("case", CASES)
def test_rule_equals_the_kernels_allocations(case: str) -> None:
    """Real CPU tensors: the tracker's peak (tensors + the rule's scratch) is exactly the peak of what the
    allocator handed out inside the call, as torch's profiler records it."""
    fn = CASES[case]
    with torch.no_grad():
        fn()  # warm-up
        res = track_peak(fn)
        truth = profiler_peak(fn)
    assert res.scratch_ops and not res.unmodelled
    assert res.peak == truth, (res, truth)
    assert res.peak > res.tensor_peak  # the blind figure was low


def test_mha_by_hand() -> None:
    # B = 1, T = 8, D = 4, 2 heads, fp32: (B, T, 3D) projection beside the packed q k v = 6 * 128 B = 768;
    # q k v + scores (1 * 2 * 8 * 8 * 4 = 512 B) = 384 + 512 = 896 (the peak); output 128 B.
    m = nn.MultiheadAttention(4, 2, batch_first=True).eval()
    x = torch.randn(1, 8, 4)
    with torch.no_grad():
        res = track_peak(lambda: m(x, x, x, need_weights=False)[0])
    assert (res.peak, res.tensor_peak, res.scratch, res.end) == (896, 128, 896 - 128, 128)
    assert res.scratch_ops == {"aten._native_multi_head_attention": 1}


def test_flash_scratch_is_per_thread() -> None:
    """Per-thread buffers: (qSplit kvSplit + 2 qSplit + qSplit Ev) floats each; L = 100 -> qSplit 32,
    kvSplit 100, E = 16: (3200 + 64 + 512) * 4 B = 15104 B per thread."""
    q = torch.randn(1, 2, 100, 16)
    threads = torch.get_num_threads()
    try:
        peaks = {}
        for n in (1, 2):
            torch.set_num_threads(n)
            peaks[n] = track_peak(lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q))
    finally:
        torch.set_num_threads(threads)
    assert peaks[2].peak - peaks[1].peak == 15104 and peaks[1].scratch == 15104
    assert peaks[1].tensor_peak == peaks[2].tensor_peak == 1 * 2 * 100 * 16 * 4 + 1 * 2 * 100 * 4


def test_same_on_fake_tensors_and_through_the_cuda_model() -> None:
    with torch.device("meta"):
        m = nn.TransformerEncoderLayer(64, 4, batch_first=True)
    with FakeTensorMode(allow_non_fake_inputs=True):
        m = m.to_empty(device="cpu").eval()
        x = torch.empty(1, 4096, 64)  # 64x64 tokens
        with torch.no_grad():
            res = track_peak(lambda: m(x))
            with CudaAllocatorModel() as model:
                m(x)
    # q k v packed (3 MiB) beside the (1 * 4, 4096, 4096) fp32 scores (256 MiB); output 1 MiB
    assert (res.peak, res.tensor_peak) == (259 * MiB, 1 * MiB)
    assert model.result().peak >= 259 * MiB and model.result().scratch_ops


def test_unmodelled_ops_are_listed_never_zero() -> None:
    q = torch.randn(1, 2, 50, 8, dtype=torch.bfloat16)
    res = track_peak(lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, q, q))
    assert res.unmodelled == {"aten._scaled_dot_product_flash_attention_for_cpu": 1}  # oneDNN packing
    x, w = torch.randn(2, 4, 8, 8), torch.randn(4, 4, 3, 3)  # batch 2: ATen hands it to oneDNN
    res = track_peak(lambda: torch.nn.functional.conv2d(x, w))
    if torch.backends.mkldnn.is_available():
        assert res.unmodelled == {"aten.convolution": 1} and res.peak == res.tensor_peak
    with FakeTensorMode():
        q = torch.empty(1, 2, 64, 64, device="cuda", dtype=torch.float16)  # fake: no GPU needed
        eff = track_peak(lambda: torch.ops.aten._scaled_dot_product_efficient_attention(q, q, q, None, False))
        big = torch.empty(8, 64, 64, 64, device="cuda", dtype=torch.float16)  # (B, H, L, E)
        flash_big = track_peak(lambda: torch.ops.aten._scaled_dot_product_flash_attention(big, big, big))
    assert eff.unmodelled == {"aten._scaled_dot_product_efficient_attention": 1}
    # 8 * 64 query blocks (of 64) fill any GPU: one split, no accumulators; out + fp32 logsumexp only
    assert flash_big.scratch_ops and flash_big.scratch == 0


def _conv(batch: int, k: int, stride: int, padding: int, dilation: int, dtype: torch.dtype):
    torch.manual_seed(0)
    x, w = torch.randn(batch, 3, 9, 12, dtype=dtype), torch.randn(5, 3, k, k, dtype=dtype)
    return lambda: torch.nn.functional.conv2d(x, w, None, stride, padding, dilation)


CONVS = {  # CPU convolutions ATen runs with its native kernels (float64, or float32 it keeps from oneDNN)
    "1x1": _conv(1, 1, 1, 0, 1, torch.float32),  # the input is its own unfolding: nothing inside
    "1x1-padded": _conv(1, 1, 1, 1, 1, torch.float32),
    "1x1-strided": _conv(2, 1, 2, 0, 1, torch.float64),
    "3x3": _conv(1, 3, 1, 1, 1, torch.float32),
    "3x3-batch": _conv(3, 3, 1, 1, 1, torch.float64),  # finput of the whole batch
    "3x3-strided": _conv(2, 3, 2, 1, 1, torch.float64),
    "3x3-dilated": _conv(3, 3, 1, 2, 2, torch.float64),  # one sample's columns, reused
    "5x5-dilated": _conv(1, 5, 1, 6, 3, torch.float64),
}


@pytest.mark.parametrize("case", CONVS)
def test_convolution_rule_equals_the_native_kernels_allocations(case: str) -> None:
    """CPU convolution through ATen's native kernels (slow_conv2d's finput, slow_conv_dilated2d's columns):
    the tracker's peak equals what the allocator handed out inside the call (torch's profiler)."""
    fn = CONVS[case]
    with torch.no_grad():
        fn()
        res = track_peak(fn)
        truth = profiler_peak(fn)
    assert res.scratch_ops == {"aten.convolution": 1} and not res.unmodelled
    assert res.peak == truth, (res, truth)
    assert (res.peak > res.tensor_peak) == (case not in ("1x1",))


def test_convolution_by_hand() -> None:
    # x (2, 3, 6, 7) float64, w (5, 3, 3, 3), padding 1: output (2, 5, 6, 7) = 420 x 8 B = 3360 B;
    # finput (2, 3 * 9, 6 * 7) = 2268 x 8 B = 18144 B beside it: 21504 B.
    x, w = torch.randn(2, 3, 6, 7, dtype=torch.float64), torch.randn(5, 3, 3, 3, dtype=torch.float64)
    res = track_peak(lambda: torch.nn.functional.conv2d(x, w, padding=1))
    assert (res.peak, res.tensor_peak, res.scratch) == (21504, 3360, 18144)


def test_onednn_choice_follows_aten() -> None:
    """ConvParams::use_mkldnn: float32, one thread or more, batch 1, ungrouped 3x3 on at most 20480 input
    elements stays native; batch 2, more elements, a 5x5 kernel or groups go to oneDNN."""
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN in this build")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        w3, w5 = torch.empty(8, 16, 3, 3), torch.empty(8, 16, 5, 5)
        small, large, pair = torch.empty(1, 16, 32, 40), torch.empty(1, 16, 40, 40), torch.empty(2, 16, 8, 8)
        assert not onednn_convolution(small, w3, (1, 1), (1, 1), 1)  # 20480 elements
        assert onednn_convolution(large, w3, (1, 1), (1, 1), 1)  # 25600
        assert onednn_convolution(pair, w3, (1, 1), (1, 1), 1)
        assert onednn_convolution(small, w5, (1, 1), (1, 1), 1)
        assert not onednn_convolution(small.double(), w3.double(), (1, 1), (1, 1), 1)
        with torch.backends.mkldnn.flags(enabled=False):
            assert not onednn_convolution(large, w3, (1, 1), (1, 1), 1)
    finally:
        torch.set_num_threads(threads)


def test_cuda_prediction_lists_convolution_as_cudnn_workspace() -> None:
    """The CPU rule is the native kernels' unfolding: the CUDA model lists the convolution instead."""
    x, w = torch.randn(1, 3, 6, 7), torch.randn(5, 3, 3, 3)
    with CudaAllocatorModel() as model:
        torch.nn.functional.conv2d(x, w, padding=1)
    assert model.result().unmodelled == {"aten.convolution": 1} and not model.result().scratch_ops


def test_every_rule_is_of_a_known_allocating_op() -> None:
    assert set(RULES) <= KNOWN_ALLOCATING


RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from torch import nn

    def high_water():  # bytes: ru_maxrss, or this address space's own VmHWM where ru_maxrss was inherited
        own = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
        return max(own, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) if OWN else own

    torch.manual_seed(0)
    kind = sys.argv[1]
    if kind == "layer":
        m = nn.TransformerEncoderLayer(64, 4, batch_first=True).eval()
        f = lambda x: m(x)
    else:
        m = nn.MultiheadAttention(64, 4, batch_first=True).eval()
        f = lambda x: m(x, x, x, need_weights=False)[0]
    x = torch.randn(1, 64 * 64, 64)
    with torch.no_grad():
        f(torch.randn(1, 8, 64))  # warm-up: kernels loaded, nothing large cached
        own_now = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
        OWN = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss <= own_now  # not inherited from the parent
        before = high_water()
        y = f(x)
        after = high_water()
    print(after - before, int(OWN))
    """
)


@pytest.mark.parametrize("kind", ["layer", "mha"])
def test_fast_path_peak_predicts_a_fresh_process(kind: str) -> None:
    """nn.TransformerEncoderLayer(d_model=64, nhead=4) / nn.MultiheadAttention at 64x64 tokens, eval,
    no_grad, batch_first, no mask (the fast path): the fake-tensor peak is within 5 % of the rise of the
    memory high-water mark (ru_maxrss, Linux) over one call in a fresh process."""
    with torch.device("meta"):
        m = (
            nn.TransformerEncoderLayer(64, 4, batch_first=True)
            if kind == "layer"
            else nn.MultiheadAttention(64, 4, batch_first=True)
        )
    with FakeTensorMode(allow_non_fake_inputs=True):
        m = m.to_empty(device="cpu").eval()
        x = torch.empty(1, 64 * 64, 64)
        call = (lambda: m(x)) if kind == "layer" else (lambda: m(x, x, x, need_weights=False)[0])
        with torch.no_grad():
            predicted = track_peak(call).peak
    if not sys.platform.startswith("linux"):
        pytest.skip("ru_maxrss in KiB is Linux's unit")
    # Linux carries a parent's high-water mark into a child across exec (ru_maxrss is the larger of the two):
    # where it did, the child reads its own address space's high-water mark (VmHWM), the same measure.
    done = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, kind], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    rise = int(done.stdout.split()[-2])
    assert abs(predicted - rise) <= 0.05 * rise, (predicted / MiB, rise / MiB)
    assert predicted > 250 * MiB  # the (4, 4096, 4096) scores: the blind figure was 1 MiB
