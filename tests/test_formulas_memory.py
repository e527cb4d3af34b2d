"""Closed-form peak bytes (isaprof.formulas) against the storage tracker on fake tensors (meta device)."""

import pytest

import isaprof
from isaprof.formulas import Config, cost
from isaprof.formulas.memory import Trace, permute_reshape_copies, view_copies

# (size, channels, key, value, batch): an odd size, Ck != Cv, a single row, unit key width.
DENSE_GRID = [((7, 9), 8, 4, 4, 2), ((3, 5), 8, 2, 3, 1), ((1, 5), 4, 1, 2, 1), ((4, 4), 6, 3, 3, 2)]
IMPLS = [("naive", None), ("sdpa", "math"), ("sdpa", "flash")]


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("impl,backend", IMPLS)
@pytest.mark.parametrize("size,c,ck,cv,batch", DENSE_GRID)
def test_dense_peak_equals_tracker(size, c, ck, cv, batch, impl, backend, mode):
    if backend == "flash" and ck != cv:
        pytest.skip("the fused kernel needs Ck == Cv")
    rec = isaprof.profile("dense", size, c, ck, cv, batch=batch, impl=impl, backend=backend, mode=mode,
                          device="meta", latency=None)  # fmt: skip
    assert rec.peak_bytes_analytic == rec.peak_bytes


def test_dense_naive_inference_by_hand():
    # 128x128, C=512 (Ck = Cv = 256), fp32: the affinity alone is 128^4 * 4 B = 1 GiB; at the peak (the
    # out-of-place scale) logits and scaled logits (2 GiB) live beside value, query, key (N * 768 * 4 B).
    n = 128 * 128
    assert n * n * 4 == 2**30
    peak = cost(Config("dense", 1, 512, 256, 256, 128, 128)).peak_bytes["inference"]
    assert peak == 2 * 2**30 + n * 3 * 256 * 4


def test_dense_train_dominated_by_three_affinities():
    n = 64 * 64
    c = cost(Config("dense", 1, 64, 32, 32, 64, 64))
    assert 3 * n * n * 4 < c.peak_bytes["train"] < 3 * n * n * 4 * 1.1  # softmax, d_attn, d_softmax
    flash = cost(Config("dense", 1, 64, 32, 32, 64, 64, impl="sdpa", backend="flash"))
    assert flash.peak_bytes["train"] < n * n * 4  # no N^2 buffer


def test_trace_peak_and_live_set():
    t = Trace()
    t.alloc("a", 400), t.alloc("b", 200)
    t.free("a")
    t.alloc("c", 40)
    assert (t.peak, t.current, t.peak_at, t.live_at_peak) == (600, 240, "b", {"a": 400, "b": 200})
    with pytest.raises(ValueError, match="already live"):
        t.alloc("b", 1)


def test_view_copies_matches_torch_rules():
    assert not view_copies([2, 3, 4], [12, 4, 1], [6, 4])  # contiguous: always a view
    assert view_copies([3, 2], [1, 3], [6])  # a transpose cannot be flattened
    assert not view_copies([3, 1], [1, 3], [3])  # ... unless a side is 1
    # ISA's long-range regrouping (n, c, Qh, Ph, Qw, Pw) -> (n Ph Pw, c, Qh, Qw) copies; with P = 1 it does not.
    assert permute_reshape_copies([1, 4, 3, 2, 3, 2], [0, 3, 5, 1, 2, 4], [4, 4, 3, 3])
    assert not permute_reshape_copies([1, 4, 3, 1, 3, 1], [0, 3, 5, 1, 2, 4], [1, 4, 3, 3])
