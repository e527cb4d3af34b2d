"""Closed-form peak bytes (isaprof.formulas) against the storage tracker on fake tensors: exact equality for
every block with a formula-side peak (dense, isa, axial, non_local) x impl x mode, plus hand-checked terms."""

from dataclasses import replace

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel

import isaprof
from isaprof.formulas import cost
from isaprof.formulas.memory import is_channels_last, permute_reshape_copies, view_copies
from isaprof.measure import step, track_peak
from tests.formulas import config
from tests.formulas.replays.trace import Trace

IMPLS = [("naive", None), ("sdpa", "math"), ("sdpa", "flash")]
MODES = ["inference", "train"]
KERNELS = {"math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}

# (block, (H, W), C, Ck, Cv, batch, options): odd sizes, Ck != Cv, a padded ISA factor (masked or not), a
# factor larger than the map (channels-last regrouped input), single rows/columns, sub-sampled non-local.
CASES = [
    ("dense", (7, 9), 8, 4, 4, 2, {}),
    ("dense", (3, 5), 8, 2, 3, 1, {}),
    ("isa", (7, 9), 4, 2, 2, 2, {"factor": (3, 2)}),
    ("isa", (7, 9), 4, 2, 2, 2, {"factor": (3, 2), "masked": True}),
    ("isa", (4, 4), 4, 2, 2, 1, {"factor": (8, 8)}),
    ("axial", (7, 9), 4, 2, 2, 1, {}),
    ("axial", (1, 5), 4, 3, 2, 2, {}),
    ("non_local", (3, 4), 4, 3, 3, 1, {}),
    ("non_local", (7, 9), 4, 2, 2, 1, {"sub_sample": True}),
]


def measured_peak(name, size, c, ck, cv, batch, impl, backend, mode, options) -> int:
    """Tracked peak of tensor storage of one protocol step on fake CPU tensors (the ``--device meta`` path);
    the formulas replay tensors, not the CPU flash kernel's per-thread scratch (measure.scratch)."""
    with torch.device("meta"):
        block = isaprof.build(name, c, ck, cv, impl=impl, **options)
    with FakeTensorMode(allow_non_fake_inputs=True):
        block = block.to_empty(device="cpu")
        run = step(block, torch.empty(batch, c, *size), mode)  # (B, C, H, W), fake
        if backend is None:
            return track_peak(run).tensor_peak
        with sdpa_kernel(KERNELS[backend]):
            return track_peak(run).tensor_peak


def analytic_peak(name, size, c, ck, cv, batch, impl, backend, mode, options) -> int:
    opts = tuple(sorted(options.items()))
    cfg = config(
        name,
        size,
        batch=batch,
        channels=c,
        key_channels=ck,
        value_channels=cv,
        impl=impl,
        backend=backend,
        options=opts,
    )
    return cost(cfg).peak_bytes[mode]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("impl,backend", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1][0]}x{c[1][1]}-{len(c[6])}")
def test_peak_equals_tracker(case, impl, backend, mode):
    name, size, c, ck, cv, batch, options = case
    if backend == "flash" and ck != cv:
        pytest.skip("the fused kernel needs Ck == Cv")
    args = (name, size, c, ck, cv, batch, impl, backend, mode, options)
    assert analytic_peak(*args) == measured_peak(*args)


def test_profile_reports_the_formula_peak():
    rec = isaprof.profile("isa", (5, 5), 4, 3, 2, batch=2, factor=(2, 2), masked=True, mode="train",
                          device="meta", latency=None)  # fmt: skip
    assert rec.peak_bytes_analytic == rec.peak_bytes == 31440


def test_dense_naive_inference_by_hand():
    # 128x128, C=512 (Ck = Cv = 256), fp32: the affinity alone is 128^4 * 4 B = 1 GiB; at the peak (the
    # out-of-place scale) logits and scaled logits (2 GiB) live beside value, query, key (N * 768 * 4 B).
    n = 128 * 128
    assert n * n * 4 == 2**30
    peak = cost(
        config("dense", (128, 128), batch=1, channels=512, key_channels=256, value_channels=256)
    ).peak_bytes["inference"]
    assert peak == 2 * 2**30 + n * 3 * 256 * 4


@pytest.mark.parametrize("name", ["dense", "non_local"])
def test_train_peak_dominated_by_three_affinities(name):
    n = 64 * 64  # softmax output, d_attn and d_softmax (B, N, N) are live at the softmax backward
    cfg = config(name, (64, 64), batch=1, channels=64, key_channels=32, value_channels=32)
    peak = cost(cfg).peak_bytes["train"]
    assert 3 * n * n * 4 < peak < 3 * n * n * 4 * 1.1
    flash = cost(replace(cfg, impl="sdpa", backend="flash")).peak_bytes["train"]
    assert flash < n * n * 4  # the fused kernel never materialises an (N, N) buffer


def test_isa_and_axial_attention_terms():
    # ISA 64x64, factor 8x8: 64 long-range maps of 64 positions, each (64, 64) logits: 64^3 * 4 B per buffer.
    cfg = config("dense", (64, 64), batch=1, channels=64, key_channels=32, value_channels=32)
    isa = cost(replace(cfg, block="isa", options=(("factor", (8, 8)),))).peak_bytes
    dense = cost(cfg).peak_bytes
    assert 2 * 64**3 * 4 < isa["inference"] < dense["inference"] / 16
    axial = cost(replace(cfg, block="axial")).peak_bytes  # 64 rows of (64, 64) logits
    assert 2 * 64**3 * 4 < axial["inference"] < dense["inference"] / 16


def test_trace_peak_live_set_and_shared_storage():
    t = Trace()
    t.alloc("a", 400), t.alloc("b", 200)
    t.free("a")
    t.alloc("c", 40)
    assert (t.peak, t.current, t.peak_at, t.live_at_peak) == (600, 240, "b", {"a": 400, "b": 200})
    t.share("c")  # a view holds c: freeing one holder keeps it
    t.free("c")
    assert t.current == 240
    t.free("c", None)
    assert t.current == 200
    with pytest.raises(ValueError, match="already live"):
        t.alloc("b", 1)


def test_layout_helpers_match_torch():
    assert not view_copies([2, 3, 4], [12, 4, 1], [6, 4])  # contiguous: always a view
    assert view_copies([3, 2], [1, 3], [6])  # a transpose cannot be flattened
    assert not view_copies([3, 1], [1, 3], [3])  # ... unless a side is 1
    # ISA's long-range regrouping (n, c, Qh, Ph, Qw, Pw) -> (n Ph Pw, c, Qh, Qw) copies; with P = 1 not.
    assert permute_reshape_copies([1, 4, 3, 2, 3, 2], [0, 3, 5, 1, 2, 4], [4, 4, 3, 3])
    assert not permute_reshape_copies([1, 4, 3, 1, 3, 1], [0, 3, 5, 1, 2, 4], [1, 4, 3, 3])
    x = torch.empty(2, 3, 4, 5)
    for t in (x, x.permute(0, 3, 1, 2), x.contiguous(memory_format=torch.channels_last)):
        nhwc = t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        assert is_channels_last(t.shape, t.stride()) == nhwc
