"""Formulas of criss_cross, channelized_axial, sparse_nonlocal, linear against the counters and the tracker.

MACs: exact integers, FlopCounterMode FLOPs / 2, forward (inference protocol) and forward + backward (train
protocol). Params: exact. Peak bytes (storage-lifetime tracker, real CPU float32 and fake tensors): inference
exact; train exact too (event traces, isaprof/formulas/memory.py), except criss_cross at H = 1 or W = 1,
held to ``criss_cross.DEGENERATE_TRAIN_TOLERANCE`` (reason beside the constant).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.formulas import cost
from isaprof.formulas.criss_cross import DEGENERATE_TRAIN_TOLERANCE
from isaprof.measure.flops import count_flops, fvcore_count
from isaprof.measure.memory import track_peak
from isaprof.measure.protocol import step
from isaprof.targets import build, resolve_channels
from tests.formulas import config

# (batch, channels, H, W): the brief's 7x9, a square, B = 1 and B > 1 (einsum / matmul copy their operands
# only for B > 1). 33x65 runs on fake tensors (same counts and bytes, no arithmetic) in its own test.
SHAPES = [(2, 16, 7, 9), (1, 8, 8, 8)]
CASES = [
    ("criss_cross", {"recurrence": 1}),
    ("criss_cross", {"recurrence": 2}),
    ("criss_cross", {"recurrence": 3}),
    ("linear", {}),
    ("sparse_nonlocal", {"k": 16}),
    ("sparse_nonlocal", {"k": 64, "sampling": "random", "impl": "sdpa"}),
    ("sparse_nonlocal", {"k": 20, "impl": "sdpa", "value_channels": 4}),  # Ck != Cv: sdpa math kernel
    ("channelized_axial", {"groups": 16}),
    ("channelized_axial", {"groups": 1}),
    ("channelized_axial", {"groups": 3, "mlp_layers": 2}),
]


def setup(name: str, options: dict, shape: tuple[int, int, int, int]):
    b, c, h, w = shape
    opts = dict(options)
    impl = opts.pop("impl", "naive")
    ck, cv = resolve_channels(name, c, opts.pop("key_channels", None), opts.pop("value_channels", None))
    torch.manual_seed(0)
    module = build(name, c, ck, cv, impl=impl, **opts)
    cfg = config(
        name,
        (h, w),
        batch=b,
        channels=c,
        key_channels=ck,
        value_channels=cv,
        impl=impl,
        options=tuple(sorted(opts.items())),
    )
    return module, torch.randn(b, c, h, w), cfg


def case_id(case: tuple[str, dict]) -> str:
    return case[0] + "".join(f"-{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_formula_matches_counters_and_tracker(case: tuple[str, dict], shape: tuple[int, ...]) -> None:
    module, x, cfg = setup(*case, shape)
    c = cost(cfg)
    assert c.params == sum(p.numel() for p in module.parameters())
    assert c.padded == (cfg.height, cfg.width)
    infer = step(module, x, "inference")
    infer()  # warm-up: first-call allocations (e.g. thread pools) are not the block's
    assert count_flops(infer).macs == c.total_macs
    assert track_peak(infer).tensor_peak == c.peak_bytes["inference"]
    train = step(module, x, "train")
    train()
    assert count_flops(train).macs == c.total_train_macs
    assert track_peak(train).tensor_peak == c.peak_bytes["train"]


LARGE = [
    ("criss_cross", {"recurrence": 1}),
    ("criss_cross", {"recurrence": 2}),
    ("criss_cross", {"recurrence": 3}),
    ("linear", {}),
    ("sparse_nonlocal", {"k": 64}),
    ("sparse_nonlocal", {"k": 64, "impl": "sdpa"}),
    ("channelized_axial", {"groups": 2}),
]


@pytest.mark.parametrize("case", LARGE, ids=case_id)
def test_formula_matches_counters_on_fake_33x65(case: tuple[str, dict]) -> None:
    with FakeTensorMode(allow_non_fake_inputs=True):
        module, x, cfg = setup(*case, (1, 16, 33, 65))
        c = cost(cfg)
        infer = step(module, x, "inference")
        assert count_flops(infer).macs == c.total_macs
        assert track_peak(infer).tensor_peak == c.peak_bytes["inference"]
        train = step(module, x, "train")
        assert count_flops(train).macs == c.total_train_macs
        assert track_peak(train).tensor_peak == c.peak_bytes["train"]


# Train peaks off the main grid, on fake tensors: B = 3, Ck = 1 (criss-cross energies lower to mul), Ck = 3,
# single-column maps, CAA with 1 and 3 MLP layers, uneven chunks and 1-channel gates (C = 4), k = 1, sdpa
# with Ck = 1 (q, k views: no contiguous copies), Ck != Cv, random sampling.
TRAIN_EXTRA = [
    ("criss_cross", {"recurrence": 2, "key_channels": 1}, (2, 8, 5, 6)),
    ("criss_cross", {"recurrence": 3, "key_channels": 3}, (3, 8, 4, 4)),
    ("criss_cross", {"recurrence": 1}, (1, 16, 8, 8)),
    ("linear", {"key_channels": 12}, (2, 8, 5, 6)),
    ("linear", {}, (2, 16, 4, 1)),
    ("channelized_axial", {"groups": 2, "mlp_layers": 3, "key_channels": 1}, (3, 4, 5, 2)),
    ("channelized_axial", {"groups": 4, "mlp_layers": 1, "key_channels": 3}, (2, 12, 7, 6)),
    ("channelized_axial", {"groups": 3}, (2, 16, 5, 6)),  # a one-row chunk: its v gradient needs no sum
    ("sparse_nonlocal", {"k": 1}, (2, 8, 5, 6)),
    ("sparse_nonlocal", {"k": 3, "impl": "sdpa", "key_channels": 1, "value_channels": 2}, (2, 8, 5, 6)),
    ("sparse_nonlocal", {"k": 7, "impl": "sdpa", "sampling": "random", "value_channels": 3}, (1, 8, 8, 8)),
    ("sparse_nonlocal", {"k": 500, "impl": "sdpa"}, (2, 16, 7, 9)),  # k clamped: the dense non-local block
]


@pytest.mark.parametrize(("name", "options", "shape"), TRAIN_EXTRA)
def test_train_peak_exact_on_fake(name: str, options: dict, shape: tuple[int, ...]) -> None:
    with FakeTensorMode(allow_non_fake_inputs=True):
        module, x, cfg = setup(name, options, shape)
        assert track_peak(step(module, x, "train")).tensor_peak == cost(cfg).peak_bytes["train"]


@pytest.mark.parametrize(
    ("name", "options", "shape"),
    [
        ("criss_cross", {"key_channels": 1}, (2, 8, 5, 6)),  # Ck = 1: energies lower to mul (uncounted)
        ("criss_cross", {}, (2, 16, 1, 5)),  # H = 1: the column aggregate lowers to mul
        ("linear", {"key_channels": 1}, (2, 8, 4, 3)),
        ("channelized_axial", {"groups": 2}, (2, 16, 1, 5)),
    ],
)
def test_formula_degenerate_sizes(name: str, options: dict, shape: tuple[int, ...]) -> None:
    module, x, cfg = setup(name, options, shape)
    c = cost(cfg)
    infer = step(module, x, "inference")
    assert count_flops(infer).macs == c.total_macs
    assert track_peak(infer).tensor_peak == c.peak_bytes["inference"]
    train = step(module, x, "train")
    assert count_flops(train).macs == c.total_train_macs
    measured, analytic = track_peak(train).tensor_peak, c.peak_bytes["train"]
    if name == "criss_cross" and 1 in shape[2:]:  # H = 1: einsum lowers an aggregate to mul (see formula)
        assert 0 <= analytic / measured - 1 < DEGENERATE_TRAIN_TOLERANCE, (measured, analytic)
        assert c.peak_tolerance["train"].admits(measured, analytic)  # the same bound, as Cost carries it
    else:
        assert measured == analytic


def test_criss_cross_closed_form() -> None:
    # B=2, C=16, Ck=2, 7x9 (N=63), R=2: 2 * [126*16*20 + 126*16*2 + 126*16*16] = 2 * 76608
    c = cost(
        config(
            "criss_cross",
            (7, 9),
            batch=2,
            channels=16,
            key_channels=2,
            value_channels=16,
            options=(("recurrence", 2),),
        )
    )
    assert c.macs == {"qkv_conv": 80640, "energy": 8064, "aggregate": 64512}
    assert c.total_train_macs == 3 * 153216
    assert c.params == 2 * (16 * 2 + 2) + 16 * 16 + 16 + 1 == 341


def test_sparse_nonlocal_k_is_clamped_to_positions() -> None:
    cfg = config("sparse_nonlocal", (4, 5), batch=1, channels=16, key_channels=8, value_channels=8)
    dense, over = (cost(replace(cfg, options=(("k", k),))) for k in (20, 1000))
    assert dense == over and dense.macs["qk"] == 20 * 20 * 8


def test_channelized_axial_groups_lower_inference_peak_only() -> None:
    cfg = config("channelized_axial", (12, 12), batch=2, channels=16, key_channels=2, value_channels=16)
    one, many = (cost(replace(cfg, options=(("groups", g),))) for g in (1, 12))
    assert one.macs == many.macs
    assert many.peak_bytes["inference"] < one.peak_bytes["inference"] / 4


def test_criss_cross_fvcore_rounds_einsum() -> None:
    """fvcore counts convs exactly; its einsum handle takes numpy's einsum_path estimate, off by a few."""
    module, x, cfg = setup("criss_cross", {"recurrence": 1}, (2, 16, 7, 9))
    c = cost(cfg)
    with torch.no_grad():
        fv = fvcore_count(module.eval(), (x,))
    assert fv.by_op["conv"] == c.macs["qkv_conv"]
    einsum = c.macs["energy"] + c.macs["aggregate"]
    assert abs(fv.by_op["einsum"] - einsum) <= einsum // 1000
