"""Blocks criss_cross, channelized_axial, sparse_nonlocal, linear: shapes, gradients, determinism, and each
against an independent formulation of its paper's equation (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets import build
from isaprof.targets.blocks.channelized_axial import ChannelizedAxial

BLOCKS = {
    "criss_cross": {"recurrence": 2},
    "channelized_axial": {"groups": 3},
    "sparse_nonlocal": {"k": 10},
    "linear": {},
}
C = 16


def redraw(module: nn.Module, seed: int = 0, std: float = 0.3) -> nn.Module:
    """Every parameter drawn N(0, std^2) (zero-initialised gammas and BN weights would hide paths)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * std)
    return module


def build64(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return redraw(build(name, C, **options).double()).eval()


@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("size", [(7, 9), (5, 6)])
def test_output_shape(name: str, size: tuple[int, int]) -> None:
    x = torch.randn(2, C, *size)
    assert build(name, C, **BLOCKS[name])(x).shape == x.shape


# Parameters whose gradient is zero whatever their values (up to rounding, ~1e-15 here). A key-side bias b
# adds q . b to every logit of one query, which the softmax over that query's keys cancels:
KEY_BIASES = {"criss_cross": {"key.bias"}, "sparse_nonlocal": {"phi.bias"}}
# In train mode a BatchNorm subtracts its batch mean, which removes any per-channel constant before it: a conv
# bias right before it, or sparse non-local's value bias (the attention weights sum to one, so it reaches the
# bias-free conv_out, then the BN, as a constant per channel).
BEFORE_TRAIN_BN = {
    "channelized_axial": {"qk_col.0.bias", "qk_row.0.bias", "value.0.bias"},  # ConvBNReLU convs
    "sparse_nonlocal": {"g.bias"},
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", BLOCKS)
def test_gradients_reach_every_parameter(name: str, train: bool) -> None:
    # a gradient at rounding level (below 1e-9 of the largest) is no gradient: every parameter gets a real
    # one except the structural zeros, which are checked to be zero (the claim above, not an excuse)
    m = redraw(build(name, C, **BLOCKS[name]).double()).train(train)
    zeros = KEY_BIASES.get(name, set()) | (BEFORE_TRAIN_BN.get(name, set()) if train else set())
    x = torch.randn(2, C, 7, 9, dtype=torch.float64, requires_grad=True)
    (m(x) ** 2).sum().backward()
    grads = {pname: p.grad.abs().max().item() for pname, p in m.named_parameters() if p.grad is not None}
    assert set(grads) == {pname for pname, _ in m.named_parameters()}
    tiny = 1e-9 * max(grads.values())
    assert {pname for pname, g in grads.items() if g <= tiny} == zeros
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", BLOCKS)
def test_float64_deterministic(name: str) -> None:
    m = build64(name, **BLOCKS[name])
    x = torch.randn(2, C, 5, 6, dtype=torch.float64)
    assert torch.equal(m(x), m(x))


def conv(layer: nn.Conv2d, x: Tensor) -> Tensor:
    return F.conv2d(x, layer.weight, layer.bias)


# --- criss-cross: dense attention restricted to each position's row and column, centre once -------------


def criss_cross_dense(m: nn.Module, x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    rows = torch.arange(h * w) // w
    cols = torch.arange(h * w) % w
    allowed = (rows[:, None] == rows[None, :]) | (cols[:, None] == cols[None, :])  # (N, N), diagonal once
    for _ in range(m.recurrence):
        q = conv(m.query, x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        k = conv(m.key, x).flatten(2)  # (B, Ck, N)
        v = conv(m.value, x).flatten(2).transpose(1, 2)  # (B, N, C)
        attn = torch.softmax((q @ k).masked_fill(~allowed, float("-inf")), dim=-1)  # (B, N, N)
        x = m.gamma * (attn @ v).transpose(1, 2).reshape(b, c, h, w) + x
    return x


@pytest.mark.parametrize("recurrence", [1, 2])
def test_criss_cross_equals_masked_dense_attention(recurrence: int) -> None:
    m = build64("criss_cross", recurrence=recurrence)
    x = torch.randn(2, C, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), criss_cross_dense(m, x), rtol=1e-10, atol=1e-10)


def test_criss_cross_recurrence_one_is_not_fully_connected() -> None:
    m = build64("criss_cross", recurrence=1)
    x = torch.randn(1, C, 5, 6, dtype=torch.float64, requires_grad=True)
    m(x)[0, :, 0, 0].sum().backward()
    reach = x.grad[0].abs().sum(0)  # (H, W)
    assert reach[0].all() and reach[:, 0].all() and reach[1:, 1:].sum() == 0
    x.grad = None
    build64("criss_cross", recurrence=2)(x)[0, :, 0, 0].sum().backward()
    assert x.grad[0].abs().sum(0).min() > 0  # R = 2 reaches every position


# --- channelized axial: einsum form with the gate factored out of the sum --------------------------------


def caa_reference(m: ChannelizedAxial, x: Tensor) -> Tensor:
    """y_i = g_i * sum_j A_ij v_j with g_i = sigmoid(MLP(mean over (j, w) of A_ij v_j)), column then row."""
    h, w = x.shape[2:]
    qc, qr, v = m.qk_col(x), m.qk_row(x), m.value(x)  # (B, Ck, H, W), (B, Ck, H, W), (B, C, H, W)
    a_col = torch.softmax(torch.einsum("bciw,bcjw->bwij", qc, qc), dim=-1)  # (B, W, H, H)
    a_row = torch.softmax(torch.einsum("bchi,bchj->bhij", qr, qr), dim=-1)  # (B, H, W, W)
    u = torch.einsum("bwij,bcjw->bciw", a_col, v)  # (B, C, H, W) ungated column sums
    gate = torch.sigmoid(m.gate_col(u.sum(dim=3).transpose(1, 2) / (h * w)))  # (B, H, C)
    y = u * gate.transpose(1, 2)[..., None]  # (B, C, H, W)
    u = torch.einsum("bhij,bchj->bchi", a_row, y)  # (B, C, H, W) ungated row sums
    gate = torch.sigmoid(m.gate_row(u.sum(dim=2).transpose(1, 2) / (h * w)))  # (B, W, C)
    return u * gate.transpose(1, 2)[:, :, None, :]


@pytest.mark.parametrize("groups", [1, 2, 16])
def test_channelized_axial_equals_einsum_reference(groups: int) -> None:
    m = build64("channelized_axial", groups=groups)
    x = torch.randn(2, C, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), caa_reference(m, x), rtol=1e-10, atol=1e-12)


def test_channelized_axial_groups_do_not_change_output() -> None:
    m = build64("channelized_axial", groups=1)
    x = torch.randn(2, C, 6, 5, dtype=torch.float64)
    ref = m(x)
    for groups in (2, 4, 7):
        m.groups = groups
        torch.testing.assert_close(m(x), ref, rtol=0, atol=1e-13)


# --- sparse non-local: dense non-local with every unsampled key masked out --------------------------------


def sparse_nonlocal_dense(m: nn.Module, x: Tensor) -> Tensor:
    b, _, h, w = x.shape
    keep = torch.zeros(h * w, dtype=torch.bool)
    keep[m.positions(h * w)] = True
    q = conv(m.theta, x).flatten(2).transpose(1, 2)  # (B, N, Ck)
    k = conv(m.phi, x).flatten(2)  # (B, Ck, N)
    v = conv(m.g, x).flatten(2).transpose(1, 2)  # (B, N, Cv)
    logits = (q @ k) / q.shape[-1] ** 0.5  # (B, N, N)
    y = torch.softmax(logits.masked_fill(~keep, float("-inf")), dim=-1) @ v  # (B, N, Cv)
    return x + m.norm(m.conv_out(y.transpose(1, 2).reshape(b, -1, h, w)))


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
@pytest.mark.parametrize("sampling", ["grid", "random"])
def test_sparse_nonlocal_equals_masked_dense(impl: str, sampling: str) -> None:
    m = build64("sparse_nonlocal", impl=impl, k=10, sampling=sampling, seed=3)
    x = torch.randn(2, C, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), sparse_nonlocal_dense(m, x), rtol=1e-10, atol=1e-10)


def test_sparse_nonlocal_naive_and_sdpa_agree() -> None:
    x = torch.randn(2, C, 7, 9, dtype=torch.float64)
    a = build64("sparse_nonlocal", k=20, impl="naive")
    b = build64("sparse_nonlocal", k=20, impl="sdpa")
    torch.testing.assert_close(a(x), b(x), rtol=1e-10, atol=1e-10)


def test_sparse_nonlocal_positions() -> None:
    grid = build("sparse_nonlocal", C, k=4)
    assert grid.positions(63) == [0, 15, 31, 47]  # (i * 63) // 4
    assert grid.positions(3) == [0, 1, 2]  # k > H * W: clamped, every position
    r1 = build("sparse_nonlocal", C, k=8, sampling="random", seed=1)
    r2 = build("sparse_nonlocal", C, k=8, sampling="random", seed=2)
    assert r1.positions(63) == r1.positions(63) != r2.positions(63)
    assert len(set(r1.positions(63))) == 8 and max(r1.positions(63)) < 63


def test_sparse_nonlocal_unsampled_positions_reach_only_through_residual() -> None:
    m = build64("sparse_nonlocal", k=5)
    x = torch.randn(1, C, 4, 5, dtype=torch.float64, requires_grad=True)
    m(x)[0, :, 2, 2].sum().backward()
    reach = x.grad[0].abs().sum(0).flatten()  # (N,)
    sampled = set(m.positions(20)) | {2 * 5 + 2}
    assert all((reach[i] > 0) == (i in sampled) for i in range(20))


# --- linear attention: the dense first-order-Taylor kernel, O(N^2) ---------------------------------------


def linear_dense(m: nn.Module, x: Tensor) -> Tensor:
    b, c, h, w = x.shape
    q = F.normalize(conv(m.query, x).flatten(2), dim=1)  # (B, Ck, N)
    k = F.normalize(conv(m.key, x).flatten(2), dim=1)  # (B, Ck, N)
    v = conv(m.value, x).flatten(2)  # (B, C, N)
    kernel = 1 + q.transpose(1, 2) @ k  # (B, N, N): 1 + q_n . k_j
    denom = kernel.sum(-1) + m.eps * q.sum(1)  # (B, N): eps added to sum_j k_j as the reference
    out = (v @ kernel.transpose(1, 2)) / denom[:, None, :]  # (B, C, N)
    return x + m.gamma * out.reshape(b, c, h, w)


def test_linear_equals_dense_taylor_kernel() -> None:
    m = build64("linear")
    x = torch.randn(2, C, 7, 9, dtype=torch.float64)
    torch.testing.assert_close(m(x), linear_dense(m, x), rtol=1e-10, atol=1e-10)


# --- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("criss_cross", {"recurrence": 0}, "recurrence must be an integer >= 1"),
        ("criss_cross", {"value_channels": 8}, "value_channels == channels"),
        ("linear", {"value_channels": 8}, "value_channels == channels"),
        ("channelized_axial", {"value_channels": 8}, "value_channels == channels"),
        ("channelized_axial", {"groups": 0}, "groups must be an integer >= 1"),
        ("channelized_axial", {"mlp_layers": 0}, "mlp_layers must be an integer >= 1"),
        ("sparse_nonlocal", {"sampling": "dense"}, "unknown sampling 'dense'; allowed: grid, random"),
        ("sparse_nonlocal", {"k": 0}, "k .* must be an integer >= 1"),
        ("linear", {"impl": "sdpa"}, "no impl 'sdpa'"),
    ],
)
def test_bad_arguments(name: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build(name, C, **kwargs)


@pytest.mark.parametrize("name", BLOCKS)
def test_bad_input_shape(name: str) -> None:
    m = build(name, C)
    with pytest.raises(ValueError, match="4-D"):
        m(torch.randn(C, 5, 6))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(1, C + 1, 5, 6))
