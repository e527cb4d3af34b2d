"""fast_inference computes the reference block's function: every block, float32 and float64, small shapes.

Tolerances: float32 atol = rtol = 1e-5 on outputs of magnitude ~1 (the fast path reorders the sums of the
GEMMs and uses the flash kernel's online softmax: differences of a few ulp, seen <= 5e-7); float64 atol 1e-12
(folding is computed in float64, so only summation order differs, seen <= 2e-15).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from torch import nn

import isaprof.targets as blocks
from isaprof.targets.fast import FastInference, fast_inference, fold_batchnorms, fold_conv_bn, specialised

# (block, options): every registered block at its defaults, plus options that change the fast path's shape.
CASES: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in blocks.names()] + [
    ("isa", {"factor": (3, 5)}),  # padded: 13 x 11 -> 15 x 15
    ("isa", {"factor": (3, 5), "masked": True}),  # padded keys masked (sdpa bias)
    ("isa", {"factor": (20, 1)}),  # factor larger than the map: Q_h = 1
    ("non_local", {"sub_sample": True}),  # folded reference forward kept
    ("sparse_nonlocal", {"k": 16, "sampling": "random"}),
]
SMALL = {"isa": {"factor": (4, 4)}, "sparse_nonlocal": {"k": 16}, "channelized_axial": {"groups": 4}}


def _reference(name: str, options: dict[str, Any], dtype: torch.dtype, channels: int = 16) -> nn.Module:
    """An eval block with moderate random BN statistics and non-zero residual gains (zero hides bugs)."""
    torch.manual_seed(0)
    opts = {**SMALL.get(name, {}), **options}
    block = blocks.build(name, channels, **opts).to(dtype)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
        for pname, p in block.named_parameters():
            if "gamma" in pname:
                p.fill_(0.7)
    return block.eval()


def _check(block: nn.Module, fast: nn.Module, x: torch.Tensor, atol: float, rtol: float) -> None:
    with torch.no_grad():
        ref = block(x)
    out = fast(x)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=atol, rtol=rtol)


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda v: str(v))
def test_fast_equals_reference_float32(name: str, options: dict[str, Any]) -> None:
    block = _reference(name, options, torch.float32)
    fast = fast_inference(block)
    x = torch.randn(2, 16, 13, 11)
    _check(block, fast, x, atol=1e-5, rtol=1e-5)
    _check(block, fast, torch.randn(1, 16, 8, 12), atol=1e-5, rtol=1e-5)  # new shape: workspace re-made
    _check(block, fast, x, atol=1e-5, rtol=1e-5)  # back again: reused buffers give the same answer


@pytest.mark.parametrize(("name", "options"), CASES, ids=lambda v: str(v))
def test_fast_equals_reference_float64(name: str, options: dict[str, Any]) -> None:
    block = _reference(name, options, torch.float64)
    x = torch.randn(2, 16, 9, 10, dtype=torch.float64)
    _check(block, fast_inference(block), x, atol=1e-12, rtol=0)
    _check(block, fast_inference(block, gemm=False), x, atol=1e-12, rtol=0)  # generic path alone


def test_specialised_blocks_really_take_their_fast_path() -> None:
    assert set(specialised()) >= {"dense", "isa", "axial", "non_local", "sparse_nonlocal"}
    assert set(specialised()) <= set(blocks.names())
    for name in specialised():
        fast = fast_inference(_reference(name, {}, torch.float32))
        assert not isinstance(fast.inner, blocks.spec(name).cls), name  # a token-major module, not the block
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules()), name


def test_bn_folding_is_exact_in_float64() -> None:
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv2d(6, 5, 1), nn.BatchNorm2d(5), nn.ReLU()).double()
    with torch.no_grad():
        bn = seq[1]
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.1, 3), bn.weight.uniform_(-2, 2)
    seq.eval()
    x = torch.randn(3, 6, 4, 7, dtype=torch.float64)
    conv = fold_conv_bn(seq[0], seq[1])
    torch.testing.assert_close(conv(x), seq[1](seq[0](x)), atol=1e-13, rtol=0)
    # by hand, one output channel: (w x + b - mean) * gain / sqrt(var + eps) + shift
    s = bn.weight[2] / torch.sqrt(bn.running_var[2] + bn.eps)
    torch.testing.assert_close(conv.bias[2], (seq[0].bias[2] - bn.running_mean[2]) * s + bn.bias[2])
    folded = nn.Sequential(*[m for m in seq]).eval()
    assert fold_batchnorms(folded) == 1 and isinstance(folded[1], nn.Identity)
    torch.testing.assert_close(folded(x), seq(x), atol=1e-13, rtol=0)


def test_fold_without_bias_and_without_running_stats() -> None:
    conv, bn = nn.Conv2d(3, 4, 1, bias=False).double(), nn.BatchNorm2d(4).double().eval()
    with torch.no_grad():
        bn.running_mean.fill_(0.5)
    x = torch.randn(1, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(fold_conv_bn(conv, bn)(x), bn(conv(x)), atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="running statistics"):
        fold_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False))


def test_fast_module_refuses_training_and_leaves_the_reference_alone() -> None:
    block = _reference("isa", {}, torch.float32)
    before = {k: v.clone() for k, v in block.state_dict().items()}
    fast = fast_inference(block)
    assert isinstance(fast, FastInference) and not fast.training and fast.block_name == "isa"
    with pytest.raises(ValueError, match="inference-only"):
        fast.train()
    fast.eval()  # allowed: a no-op
    assert block.long_range.impl == "naive" and any(isinstance(m, nn.BatchNorm2d) for m in block.modules())
    assert all(torch.equal(v, block.state_dict()[k]) for k, v in before.items())
    x = torch.randn(1, 16, 8, 8, requires_grad=True)
    assert not fast(x).requires_grad  # forward runs under no_grad


@pytest.mark.parametrize("name", ["isa", "non_local"])
def test_fast_module_moves_with_to(name: str) -> None:
    block = _reference(name, {}, torch.float32)
    fast = fast_inference(block).to(torch.float64)  # every weight must follow (no stale tensor references)
    x = torch.randn(1, 16, 8, 8, dtype=torch.float64)
    out = fast(x)
    assert out.dtype == torch.float64
    with torch.no_grad():
        torch.testing.assert_close(out, block.double()(x), atol=1e-5, rtol=1e-5)  # float32-rounded weights


def test_bad_arguments_raise_value_error() -> None:
    block = _reference("dense", {}, torch.float32)
    with pytest.raises(ValueError, match="eval mode"):
        fast_inference(block.train())
    with pytest.raises(ValueError, match="nn.Module"):
        fast_inference("isa")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="compile must be True or False"):
        fast_inference(block.eval(), compile=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        fast_inference(block)(torch.randn(1, 8, 4, 4))


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("ISAPROF_TEST_COMPILE"), reason="torch.compile takes minutes on 2 cores"
)
def test_compiled_fast_path_equals_reference() -> None:
    block = _reference("isa", {}, torch.float32)
    x = torch.randn(1, 16, 8, 8)
    _check(block, fast_inference(block, compile=True), x, atol=1e-5, rtol=1e-5)
