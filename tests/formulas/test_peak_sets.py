"""Peak sets (isaprof.formulas.peak): the closed-form peak holds when the code frees its locals earlier.

A harmless change, ``del value, query, key`` right after the attention in
``SelfAttention2D.forward`` (and ``del theta, phi, g`` in ``non_local``), changes no output and no MAC;
it may lower a peak reached after the attention. The formula must still agree: exactly where its peak
set holds no movable local, else within its named ``stage locals`` tolerance, and never above."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import isaprof
from isaprof.formulas import Tolerance, cost
from isaprof.formulas.peak import LOCALS, moment, peak_set, tolerance
from isaprof.measure import step, track_peak
from isaprof.targets.blocks import common, non_local
from tests.formulas import config


def _stage_forward_early_free(self, x, key_mask=None):
    b, _, h, w = x.shape
    value = self.f_value(x).flatten(2).transpose(1, 2)  # (B, N, Cv)
    query = self.f_query(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
    key = self.f_key(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
    context = common.attend(query, key, value, impl=self.impl, mask=key_mask)  # (B, N, Cv)
    del value, query, key
    context = context.transpose(1, 2).contiguous().view(b, self.value_channels, h, w)
    return self.W(context)


def _non_local_forward_early_free(self, x):
    b, _, h, w = x.shape
    theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
    phi = self.pool(self.phi(x)).flatten(2).transpose(1, 2)  # (B, M, Ck)
    g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, M, Cv)
    y = common.attend(theta, phi, g, impl=self.impl)  # (B, N, Cv)
    del theta, phi, g
    y = y.transpose(1, 2).reshape(b, self.value_channels, h, w)
    return x + self.norm(self.conv_out(y))


def _measured(name, size, c, ck, cv, impl, mode, options) -> int:
    with torch.device("meta"):
        block = isaprof.build(name, c, ck, cv, impl=impl, **options)
    with FakeTensorMode(allow_non_fake_inputs=True):
        block = block.to_empty(device="cpu")
        return track_peak(step(block, torch.empty(2, c, *size), mode)).tensor_peak  # (B, C, H, W), fake


# small maps, so that the output layer (after the attention) is the peak in some of them
CASES = [
    ("dense", (8, 8), 32, 16, 16, {}),
    ("dense", (9, 11), 32, 8, 16, {}),
    ("dense", (3, 3), 8, 4, 64, {}),  # train sdpa: the context copy beside value (movable) is the peak
    ("isa", (8, 8), 32, 16, 16, {"factor": (2, 2)}),
    ("isa", (9, 11), 32, 16, 16, {"factor": (3, 2), "masked": True}),
    ("axial", (9, 11), 32, 8, 16, {}),
    ("non_local", (8, 8), 32, 16, 16, {}),
    ("non_local", (9, 11), 32, 16, 16, {"sub_sample": True}),
]


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1][0]}x{c[1][1]}-{len(c[5])}")
def test_formula_survives_early_free(monkeypatch, case, impl, mode):
    name, size, c, ck, cv, options = case
    cfg = config(
        name,
        size,
        batch=2,
        channels=c,
        key_channels=ck,
        value_channels=cv,
        impl=impl,
        options=tuple(sorted(options.items())),
    )
    analytic, tol = cost(cfg).peak_bytes[mode], cost(cfg).peak_tolerance.get(mode)
    assert _measured(name, size, c, ck, cv, impl, mode, options) == analytic  # the code as it is: exact
    monkeypatch.setattr(common.SelfAttention2D, "forward", _stage_forward_early_free)
    monkeypatch.setattr(non_local.NonLocal, "forward", _non_local_forward_early_free)
    early = _measured(name, size, c, ck, cv, impl, mode, options)
    if tol is None:
        assert early == analytic
    else:
        assert tol.name == LOCALS and tol.admits(early, analytic), (early, analytic, tol.bytes)


def test_early_free_lowers_a_post_attention_peak_within_the_tolerance(monkeypatch):
    # isa 8x8 factor 2x2, naive: the peak is the short-range output layer beside value, query, key
    cfg = config(
        "isa", (8, 8), batch=2, channels=32, key_channels=16, value_channels=16, options=(("factor", (2, 2)),)
    )
    analytic, tol = cost(cfg).peak_bytes["inference"], cost(cfg).peak_tolerance["inference"]
    assert tol.bytes == 2 * 64 * (16 + 2 * 16) * 4  # B N' (Cv + 2 Ck) b
    monkeypatch.setattr(common.SelfAttention2D, "forward", _stage_forward_early_free)
    early = _measured("isa", (8, 8), 32, 16, 16, "naive", "inference", {"factor": (2, 2)})
    assert early == analytic - tol.bytes  # the tolerance is used in full here: it is not too loose


def test_peak_set_names_the_dense_logits():
    # dense naive inference, N = 32 x 32: the peak set is the (B, N, N) logits and their scaled copy
    # beside value, query and key; the tolerance is None (the locals are needed at that moment)
    cfg = config("dense", (32, 32), batch=1, channels=64, key_channels=32, value_channels=32)
    from isaprof.formulas.dense import dense_inference_peak

    peak = dense_inference_peak(cfg)
    n = 32 * 32
    assert peak.live == {
        "logits": n * n * 4,
        "scaled logits": n * n * 4,
        "value": n * 32 * 4,
        "query": n * 32 * 4,
        "key": n * 32 * 4,
    }
    assert peak.bytes == cost(cfg).peak_bytes["inference"] and "inference" not in cost(cfg).peak_tolerance


def test_peak_set_and_tolerance_helpers():
    a = moment("a", x=4, y=0)  # zero-byte entries (views) are dropped
    b = moment("b", movable=("x",), x=3, z=2)
    assert a.live == {"x": 4} and peak_set([a, b]) is b and peak_set([a, moment("c", w=4)]) is a
    assert tolerance(a) is None and tolerance(b) == Tolerance(3, LOCALS, tolerance(b).reason)
    assert b.plus({"held": 1}).bytes == 6 and b.plus({"held": 1}).movable_bytes == 3
    tol = Tolerance(10, "t", "why")
    assert tol.admits(90, 100) and tol.admits(100, 100)
    assert not tol.admits(89, 100) and not tol.admits(101, 100)
    with pytest.raises(ValueError):
        peak_set([])


def test_check_accepts_a_peak_within_its_named_tolerance_only():
    import dataclasses

    from isaprof.studies import check

    rec = isaprof.profile("dense", (4, 4), 8, batch=1, mode="inference", device="meta", latency=None)
    tol = Tolerance(100, LOCALS, "why")
    rec = dataclasses.replace(rec, peak_bytes_analytic=rec.peak_bytes + 100, peak_tolerance=tol)
    assert check.compare(rec, {}) == []  # measured 100 B below the formula: within the tolerance
    beyond = dataclasses.replace(rec, peak_bytes_analytic=rec.peak_bytes + 101)
    (found,) = check.compare(beyond, {})
    assert found.metric == "peak_bytes" and LOCALS in found.message
    above = dataclasses.replace(rec, peak_bytes_analytic=rec.peak_bytes - 1)  # never above the formula
    assert [d.metric for d in check.compare(above, {})] == ["peak_bytes"]


@pytest.mark.parametrize(
    "size,ck,cv,impl,k",
    [
        ((8, 7), 1, 16, "sdpa", 64),
        ((4, 6), 8, 16, "sdpa", 1),
        ((6, 13), 3, 8, "sdpa", 4),
        ((5, 5), 8, 8, "naive", 9),
    ],
)
def test_sparse_nonlocal_inference_peak_set_is_exact_with_unit_widths(size, ck, cv, impl, k):
    # the peak set reuses non-local's attention moments: exact also where a width or K is 1 (views, no copies)
    cfg = config(
        "sparse_nonlocal",
        size,
        batch=2,
        channels=16,
        key_channels=ck,
        value_channels=cv,
        impl=impl,
        options=(("k", k),),
    )
    assert (
        _measured("sparse_nonlocal", size, 16, ck, cv, impl, "inference", {"k": k})
        == (cost(cfg).peak_bytes["inference"])
    )


def test_inference_peak_sets_equal_the_event_replay_on_many_shapes():
    # pure Python, no torch: the closed-form peak sets against the event replay of the same code
    # (tests/formulas/replays/, pinned to the tracker by the measured tests) over odd sizes, widths 1,
    # fp16, every kernel and ISA factor
    import itertools

    from tests.formulas.replays import INFERENCE as replay

    kernels = [("naive", None), ("sdpa", None), ("sdpa", "math"), ("sdpa", "flash")]
    options = {
        "dense": [()],
        "axial": [()],
        "non_local": [(("sub_sample", False),), (("sub_sample", True),)],
        "isa": [(("factor", f), ("masked", m)) for f in ((2, 3), (5, 5), (1, 4)) for m in (False, True)],
    }
    n = 0
    for name, (h, w), (ck, cv), (impl, backend), dtype in itertools.product(
        replay, [(1, 5), (7, 9), (4, 4)], [(1, 3), (4, 4), (8, 2)], kernels, ["float32", "float16"]
    ):
        if backend == "flash" and ck != cv:
            continue
        for opts in options[name]:
            if dict(opts).get("sub_sample") and min(h, w) < 2:
                continue
            cfg = config(
                name,
                (h, w),
                batch=2,
                channels=8,
                key_channels=ck,
                value_channels=cv,
                dtype=dtype,
                impl=impl,
                backend=backend,
                options=opts,
            )
            assert cost(cfg).peak_bytes["inference"] == replay[name](cfg).peak, cfg
            n += 1
    assert n > 500


# ---- train: the closed-form train peak sets (isaprof.formulas.train_sets) ----

TRAIN_SETS = {  # block -> closed-form train peak set in isaprof.formulas.<block> (replay: replays.TRAIN)
    "dense": "dense_train_peak",
    "isa": "isa_train_peak",
    "axial": "axial_train_peak",
    "non_local": "non_local_train_peak",
    "sparse_nonlocal": "sparse_train_peak_set",
    "criss_cross": "criss_cross_train_peak_set",
    "linear": "linear_train_peak_set",
    "channelized_axial": "caa_train_peak_set",
}
NO_IMPL = {"criss_cross", "linear", "channelized_axial"}  # blocks without an attention impl option
TRAIN_OPTIONS = {
    "dense": [()],
    "axial": [()],
    "sparse_nonlocal": [(("k", k),) for k in (1, 4, 64, 1000)],
    "criss_cross": [(("recurrence", r),) for r in (1, 3)],
    "linear": [()],
    "channelized_axial": [(("groups", g), ("mlp_layers", k)) for g in (1, 3, 16) for k in (1, 5)],
    "non_local": [(("sub_sample", False),), (("sub_sample", True),)],
    "isa": [(("factor", f), ("masked", m)) for f in ((2, 3), (5, 5), (1, 4), (1, 1)) for m in (False, True)],
}


@pytest.mark.parametrize("name", sorted(TRAIN_SETS))
def test_train_peak_sets_equal_the_event_replay_on_many_shapes(name):
    # pure Python, no torch: each block's train peak set against formulas.memory's replay (pinned to the
    # tracker by the measured tests) over 1x1 and odd maps, widths 1 and wide, C below and above Ck, Cv,
    # batch 1 and 2, fp16, every kernel; the peak set's bytes are also its named terms' sum
    import importlib
    import itertools

    from tests.formulas.replays import TRAIN

    closed = getattr(importlib.import_module(f"isaprof.formulas.{name}"), TRAIN_SETS[name])
    kernels = [("naive", None), ("sdpa", None), ("sdpa", "math"), ("sdpa", "flash")]
    n = 0
    for (h, w), (ck, cv), (impl, backend), dtype, c, batch in itertools.product(
        [(1, 1), (1, 5), (7, 9), (4, 4), (3, 30)],
        [(1, 3), (4, 4), (8, 2), (40, 40), (2, 40)],
        kernels,
        ["float32", "float16"],
        [8, 100],
        [1, 2],
    ):
        if (backend == "flash" and ck != cv) or (name in NO_IMPL and impl != "naive"):
            continue
        for opts in TRAIN_OPTIONS[name]:
            if dict(opts).get("sub_sample") and min(h, w) < 2:
                continue
            cfg = config(
                name,
                (h, w),
                batch=batch,
                channels=c,
                key_channels=ck,
                value_channels=cv,
                dtype=dtype,
                impl=impl,
                backend=backend,
                options=opts,
            )
            peak = closed(cfg)
            replayed = TRAIN[name](cfg).peak
            assert peak.bytes == replayed == cost(cfg).peak_bytes["train"], cfg
            assert peak.bytes == sum(peak.live.values()) and peak.movable_bytes <= peak.bytes
            n += 1
    assert n > 150


def test_dense_train_peak_set_names_the_softmax_backward():
    # dense naive train, N = 16 x 16, C = Ck = Cv = 8: the three (B, N, N) buffers of the softmax backward
    # beside the saved activations; exact (no tolerance: every local is saved by autograd there)
    from isaprof.formulas.dense import dense_train_peak

    cfg = config("dense", (16, 16), batch=1, channels=8, key_channels=8, value_channels=8)
    peak = dense_train_peak(cfg)
    n, lg = 256, 256 * 256 * 4
    assert peak.name == "attention backward: d_softmax"
    assert {k: v for k, v in peak.live.items() if v == lg} == {"softmax": lg, "d_attn": lg, "d_softmax": lg}
    assert peak.live["seed"] == n * 8 * 4 and "value" not in peak.live  # the A V backward released value
    assert "train" not in cost(cfg).peak_tolerance


def test_isa_train_peak_set_is_the_long_range_softmax_backward():
    # isa naive train, 32 x 32, factor 2 x 2: long range is B P_h P_w = 4 maps of Q_h Q_w = 256 positions,
    # short range 256 maps of 4; the peak is the long-range softmax backward, three (4, 256, 256) buffers,
    # after the short-range stage's backward released its saved activations
    from isaprof.formulas.isa import isa_train_peak

    cfg = config(
        "isa", (32, 32), batch=1, channels=8, key_channels=8, value_channels=8, options=(("factor", (2, 2)),)
    )
    peak = isa_train_peak(cfg)
    lg = 4 * 256 * 256 * 4
    assert peak.name == "long-range attention backward: d_softmax"
    big = {k: v for k, v in peak.live.items() if v >= lg}
    assert big == {"long-range softmax": lg, "long-range d_attn": lg, "long-range d_softmax": lg}
    assert not any(k.startswith("short-range q1 conv") for k in peak.live)  # short range already done
    assert peak.bytes == cost(cfg).peak_bytes["train"] and "train" not in cost(cfg).peak_tolerance
