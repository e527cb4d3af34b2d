"""Blocks dense, non_local, isa, axial: shapes, gradients, determinism, impl agreement, ISA's regrouping and
padding, axial and non-local against independent einsum references, bad input. float64, small sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets import build
from isaprof.targets.blocks.common import SelfAttention2D, record_attention
from isaprof.targets.blocks.isa import isa_geometry

BLOCKS = [("dense", {}), ("non_local", {}), ("non_local", {"sub_sample": True}), ("isa", {"factor": (3, 4)})]
BLOCKS += [("isa", {"factor": (3, 4), "masked": True}), ("axial", {})]
SHAPES = [(7, 9), (8, 8), (12, 10)]


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """Moderate random parameters and BN statistics (the references zero-init some, which hides paths)."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.weight.shape, generator=g, dtype=m.weight.dtype)
            m.bias.data = 0.3 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype)
            m.running_mean = 0.2 * torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype)
            m.running_var = 0.5 + torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype)
        elif isinstance(m, nn.Conv2d):
            m.weight.data = 0.4 * torch.randn(m.weight.shape, generator=g, dtype=m.weight.dtype)
            if m.bias is not None:
                m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype)
    return module


def make(name: str, impl: str = "naive", c: int = 8, **opts) -> nn.Module:
    return randomize(build(name, c, impl=impl, **opts).double()).eval()


def rand(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("name,opts", BLOCKS)
def test_shape_grads_determinism(name: str, opts: dict) -> None:
    m = make(name, **opts).train()
    x = rand(2, 8, 7, 9).requires_grad_(True)
    out = m(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    for pname, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches {pname}"
    assert x.grad is not None and bool((x.grad != 0).all())
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))


@pytest.mark.parametrize("name,opts", BLOCKS)
@pytest.mark.parametrize("shape", SHAPES)
def test_naive_and_sdpa_agree(name: str, opts: dict, shape: tuple[int, int]) -> None:
    naive = make(name, "naive", **opts)
    sdpa = build(name, 8, impl="sdpa", **opts).double().eval()
    sdpa.load_state_dict(naive.state_dict())
    x = rand(2, 8, *shape)
    with torch.no_grad():
        torch.testing.assert_close(sdpa(x), naive(x), rtol=1e-10, atol=1e-12)


def _value_path(stage: SelfAttention2D, x: Tensor) -> Tensor:
    """What a stage returns when each map has one position: softmax over one key is 1, context = value."""
    return stage.W(stage.f_value(x))


def test_isa_factor_1x1_long_range_is_dense() -> None:
    isa, dense = make("isa", factor=(1, 1)), make("dense")
    dense.attention.load_state_dict(isa.long_range.state_dict())
    x = rand(2, 8, 7, 9)
    with torch.no_grad():
        expected = _value_path(isa.short_range, dense(x))  # long range = one group = the whole map
        torch.testing.assert_close(isa(x), expected, rtol=1e-12, atol=1e-12)


def test_isa_factor_hw_short_range_is_dense() -> None:
    isa, dense = make("isa", factor=(7, 9)), make("dense")
    dense.attention.load_state_dict(isa.short_range.state_dict())
    x = rand(2, 8, 7, 9)
    with torch.no_grad():
        expected = dense(_value_path(isa.long_range, x))  # groups of one position, then one window = the map
        torch.testing.assert_close(isa(x), expected, rtol=1e-12, atol=1e-12)


def test_isa_groups_follow_the_reference_regrouping() -> None:
    """Long-range group (i, j) = positions (i + P_h a, j + P_w b); short-range window = a P_h x P_w tile."""
    m = make("isa", factor=(2, 3))
    x = rand(1, 8, 4, 6)  # Q = (2, 2)
    with torch.no_grad():
        long_in = x.view(1, 8, 2, 2, 2, 3).permute(0, 3, 5, 1, 2, 4).reshape(6, 8, 2, 2)
        assert torch.equal(
            long_in[1 * 3 + 2], x[0, :, 1::2, 2::3]
        )  # group (ph=1, pw=2): a stride-(2, 3) grid
        mid = m.long_range(long_in)  # (6, 8, 2, 2)
        full = mid.view(1, 2, 3, 8, 2, 2).permute(0, 3, 4, 1, 5, 2).reshape(1, 8, 4, 6)  # back on the map
        tiles = [
            m.short_range(full[:, :, 2 * a : 2 * a + 2, 3 * b : 3 * b + 3])
            for a in range(2)
            for b in range(2)
        ]
        expected = torch.cat([torch.cat(tiles[2 * a : 2 * a + 2], dim=3) for a in range(2)], dim=2)
        torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_isa_padding_is_pad_run_crop(impl: str) -> None:
    m = make("isa", impl, factor=(3, 4))
    x = rand(2, 8, 7, 9)
    qh, qw, top, bottom, left, right = isa_geometry(7, 9, (3, 4))
    assert (qh, qw, top, bottom, left, right) == (3, 3, 1, 1, 1, 2)  # 7 -> 9 (1 + 1), 9 -> 12 (1 + 2)
    with torch.no_grad():
        padded = m(F.pad(x, (left, right, top, bottom)))  # (2, 8, 9, 12): divisible, no further padding
        torch.testing.assert_close(m(x), padded[:, :, top : top + 7, left : left + 9], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_isa_padded_keys_unmasked_vs_masked(impl: str) -> None:
    x = rand(1, 8, 7, 9)
    unmasked, masked = make("isa", impl, factor=(3, 4)), make("isa", impl, factor=(3, 4), masked=True)
    masked.load_state_dict(unmasked.state_dict())
    qh, qw, top, _, left, _ = isa_geometry(7, 9, (3, 4))
    valid = torch.zeros(qh * 3, qw * 4, dtype=torch.bool)
    valid[top : top + 7, left : left + 9] = True
    short_valid = valid.view(qh, 3, qw, 4).permute(0, 2, 1, 3).reshape(qh * qw, 1, 12)  # keys per window
    with torch.no_grad(), record_attention() as maps_u:
        out_u = unmasked(x)
    with torch.no_grad(), record_attention() as maps_m:
        out_m = masked(x)
    short_u, short_m = maps_u[1], maps_m[1]  # (Qh Qw, 12, 12): stage 2 affinities
    pad_u = short_u.masked_select(~short_valid.expand_as(short_u))
    assert bool((pad_u > 0).all())  # unmasked: zero-padded positions are keys with positive weight
    assert torch.equal(short_m.masked_select(~short_valid.expand_as(short_m)), torch.zeros_like(pad_u))
    torch.testing.assert_close(short_m.sum(-1), torch.ones_like(short_m.sum(-1)))
    assert not torch.allclose(out_u, out_m)
    assert out_m.shape == x.shape and bool(torch.isfinite(out_m).all())


def _stage_reference(stage: SelfAttention2D, x: Tensor, axis: str) -> Tensor:
    """Independent einsum form of a stage applied along rows (``axis="w"``) or columns (``"h"``)."""
    q, k = stage.f_query(x), stage.f_key(x)  # (B, Ck, H, W) each, separate weights
    v = stage.f_value(x)  # (B, Cv, H, W)
    scale = k.shape[1] ** -0.5
    if axis == "w":
        a = torch.einsum("bchi,bchj->bhij", q, k).mul(scale).softmax(-1)  # (B, H, W, W)
        ctx = torch.einsum("bhij,bchj->bchi", a, v)
    else:
        a = torch.einsum("bciw,bcjw->bwij", q, k).mul(scale).softmax(-1)  # (B, W, H, H)
        ctx = torch.einsum("bwij,bcjw->bciw", a, v)
    return stage.W(ctx)  # (B, C, H, W)


@pytest.mark.parametrize("impl", ["naive", "sdpa"])
def test_axial_against_einsum_reference(impl: str) -> None:
    m = make("axial", impl)
    x = rand(2, 8, 7, 9)
    with torch.no_grad():
        expected = _stage_reference(m.column, _stage_reference(m.row, x, "w"), "h")
        torch.testing.assert_close(m(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sub_sample", [False, True])
def test_non_local_against_einsum_reference(sub_sample: bool) -> None:
    m = make("non_local", sub_sample=sub_sample)
    x = rand(2, 8, 7, 9)
    with torch.no_grad():
        theta = m.theta(x).flatten(2)  # (B, Ck, N)
        phi, g = m.phi(x), m.g(x)
        if sub_sample:
            phi, g = F.max_pool2d(phi, 2), F.max_pool2d(g, 2)  # (B, *, 3, 4)
        a = torch.einsum("bcn,bcm->bnm", theta, phi.flatten(2)).div(theta.shape[1] ** 0.5).softmax(-1)
        y = torch.einsum("bnm,bcm->bcn", a, g.flatten(2)).reshape(2, -1, 7, 9)
        torch.testing.assert_close(m(x), x + m.norm(m.conv_out(y)), rtol=1e-12, atol=1e-12)


def test_non_local_reference_init_is_identity() -> None:
    m = build("non_local", 8).double().eval()  # mmcv init: the BN after conv_out is zero
    x = rand(1, 8, 5, 5)
    with torch.no_grad():
        assert torch.equal(m(x), x)


def test_recorder_sees_every_stage() -> None:
    for name, count in [("dense", 1), ("non_local", 1), ("isa", 2), ("axial", 2)]:
        with torch.no_grad(), record_attention() as maps:
            make(name)(rand(1, 8, 6, 8))
        assert len(maps) == count, name
        for a in maps:
            torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))


@pytest.mark.parametrize(
    "factor", [(0, 8), (-1, 2), (2, 2, 2), (2,), (2.0, 2), (True, 2), "8x8", 8], ids=lambda f: repr(f)
)
def test_isa_bad_factor(factor: object) -> None:
    with pytest.raises(ValueError, match=r"factor must be two positive integers"):
        build("isa", 8, factor=factor)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"has no option\(s\) factor; allowed: sub_sample=False"):
        build("non_local", 8, factor=(2, 2))
    with pytest.raises(ValueError, match=r"allowed: naive, sdpa"):
        build("dense", 8, impl="flash")
    for name in ("dense", "non_local", "isa", "axial"):
        m = build(name, 8)
        with pytest.raises(ValueError, match=r"input has 6 channels, the block was built for 8"):
            m(torch.randn(1, 6, 4, 4))
        with pytest.raises(ValueError, match=r"input must be 4-D"):
            m(torch.randn(8, 4, 4))
    with pytest.raises(ValueError, match=r"masked must be True or False"):
        build("isa", 8, masked="yes")
    with pytest.raises(ValueError, match=r"sub_sample needs H, W >= 2"):
        build("non_local", 8, sub_sample=True)(torch.randn(1, 8, 1, 5))
