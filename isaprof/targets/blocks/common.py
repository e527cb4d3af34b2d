"""Pieces shared by several blocks: the attention core, the 1x1 conv + BN + ReLU projection and the
dense-style self-attention stage (openseg.pytorch ``SelfAttentionBlock2D``) used by dense, ISA and axial."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMPLS = ("naive", "sdpa")

# Affinity recorders (see `record_attention`): every `attend` call appends its softmax matrix.
_RECORDERS: list[list[Tensor]] = []


@contextlib.contextmanager
def record_attention() -> Iterator[list[Tensor]]:
    """Collect the (..., N, M) softmax affinity of every `attend` call made inside the block.

    Used by ``isaprof.flow`` to compose the affinities of a block's stages. The affinity is
    recomputed explicitly (masked keys included, exactly as the block computes it), so this works for
    both impls (and costs an extra matmul: never profile inside it).
    """
    maps: list[Tensor] = []
    _RECORDERS.append(maps)
    try:
        yield maps
    finally:
        _RECORDERS.remove(maps)


def mask_bias(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """Additive bias of a boolean key mask: 0 where ``mask`` is True, the dtype's most negative finite
    value where False. Finite (not -inf) so a row with every key masked gives a uniform, finite softmax
    instead of NaN, identically in both impls (such rows only occur at positions a block discards)."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    impl: str,
    scale: float | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """softmax(q k^T * scale [masked]) v over the last two dims.

    q: (..., N, Ck), k: (..., M, Ck), v: (..., M, Cv) -> (..., N, Cv). ``scale`` defaults to Ck**-0.5.
    ``mask``: optional boolean, broadcastable to (..., N, M), True where key m takes part for query n
    (the sdpa convention); masked logits are set to the most negative finite value (see `mask_bias`).
    ``impl="naive"`` materialises the (..., N, M) affinity exactly as the papers' code does
    (matmul, scale, softmax, matmul); ``impl="sdpa"`` calls ``F.scaled_dot_product_attention``, whose
    kernel (math / flash / efficient) the caller picks with ``torch.nn.attention.sdpa_kernel``. 3-D
    inputs get a unit head dim and q, k, v are made contiguous for sdpa (one copy when k is q): the CPU
    fused (flash) kernel accepts only 4-D inputs with unit last stride, and only if Ck == Cv; otherwise
    torch falls back to the math kernel (plain bmm's).
    """
    if impl not in IMPLS:
        raise ValueError(f"unknown attention impl {impl!r}; allowed: {', '.join(IMPLS)}")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if _RECORDERS:
        logits = scale * torch.matmul(q, k.transpose(-1, -2))  # (..., N, M)
        if mask is not None:
            logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        affinity = F.softmax(logits, dim=-1).detach()  # (..., N, M)
        for maps in _RECORDERS:
            maps.append(affinity)
    if impl == "naive":
        sim = torch.matmul(q, k.transpose(-1, -2))  # (..., N, M)
        sim = scale * sim  # out of place, as openseg's SelfAttentionBlock2D
        if mask is not None:
            sim = sim.masked_fill(~mask, torch.finfo(sim.dtype).min)  # (..., N, M)
        sim = F.softmax(sim, dim=-1)  # (..., N, M)
        return torch.matmul(sim, v)  # (..., N, Cv)
    bias = None if mask is None else mask_bias(mask, q.dtype)  # broadcastable to (..., N, M)
    shared = k is q
    q, v = q.contiguous(), v.contiguous()  # fused kernels need stride(-1) == 1 (copies if transposed)
    k = q if shared else k.contiguous()
    if q.dim() == 3:
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)  # (B, 1, N|M, C)
        if bias is not None and bias.dim() == 3:
            bias = bias.unsqueeze(1)  # (B|1, 1, N|1, M)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale).squeeze(1)  # (B, N, Cv)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)  # (..., N, Cv)


class ConvBNReLU(nn.Sequential):
    """1x1 convolution + BatchNorm2d + ReLU (openseg ``ModuleHelper.BNReLU`` after a conv)."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=False),
        )


def key_projection(in_channels: int, key_channels: int) -> nn.Sequential:
    """openseg ``f_key`` / ``f_query``: two (1x1 conv without bias + BN + ReLU) layers, C_in -> Ck -> Ck."""
    return nn.Sequential(
        ConvBNReLU(in_channels, key_channels, bias=False), ConvBNReLU(key_channels, key_channels, bias=False)
    )


class SelfAttention2D(nn.Module):
    """Dense self-attention over the H*W positions of each map of a (B, C_in, H, W) batch.

    openseg.pytorch ``SelfAttentionBlock2D`` (lib/models/modules/isa_block.py, the ISA reference code):
    query = f_query(x), key = f_key(x), each two (1x1 conv without bias + BN + ReLU) layers C_in -> Ck -> Ck
    with *separate* weights (OCNet's older ``_SelfAttentionBlock`` shares one single-layer projection
    between query and key; the ISA code does not), value = conv1x1(x) (C_in -> Cv, no bias, no norm),
    context = softmax(Q K^T Ck^-0.5) V, output = ReLU(BN(conv1x1(context))) (Cv -> C_out, no bias).
    No residual. The context is made contiguous before the output conv, as the reference does.
    ``key_mask``: optional boolean (B | 1, 1, H*W), True where a position takes part as a key.
    """

    def __init__(
        self, in_channels: int, key_channels: int, value_channels: int, out_channels: int, impl: str
    ):
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"unknown attention impl {impl!r}; allowed: {', '.join(IMPLS)}")
        self.key_channels, self.value_channels, self.impl = key_channels, value_channels, impl
        self.f_key = key_projection(in_channels, key_channels)
        self.f_query = key_projection(in_channels, key_channels)
        self.f_value = nn.Conv2d(in_channels, value_channels, kernel_size=1, bias=False)
        self.W = ConvBNReLU(value_channels, out_channels, bias=False)

    def forward(self, x: Tensor, key_mask: Tensor | None = None) -> Tensor:
        b, _, h, w = x.shape
        value = self.f_value(x).flatten(2).transpose(1, 2)  # (B, N, Cv)
        query = self.f_query(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        key = self.f_key(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        context = attend(query, key, value, impl=self.impl, mask=key_mask)  # (B, N, Cv)
        context = context.transpose(1, 2).contiguous().view(b, self.value_channels, h, w)  # (B, Cv, H, W)
        return self.W(context)  # (B, C_out, H, W)


def check_value_width(block: str, channels: int, value_channels: int, why: str) -> None:
    """``ValueError`` unless ``value_channels == channels`` (blocks whose value map is added to, or is, the
    output); ``why`` completes the message, e.g. ``"because of the residual out = x + ..."``."""
    if value_channels != channels:
        got = f"got value_channels={value_channels}"
        raise ValueError(f"{block} needs value_channels == channels ({channels}) {why}; {got}")


def check_impl(block: str, impl: str, allowed: tuple[str, ...]) -> None:
    """``ValueError`` unless ``impl`` is one of ``allowed`` (the registry checks this for ``build``; this
    covers direct construction)."""
    if impl not in allowed:
        raise ValueError(f"{block} has no impl {impl!r}; allowed: {', '.join(allowed)}")


def check_input(x: Tensor, channels: int, block: str) -> None:
    """``ValueError`` unless ``x`` is (B, channels, H, W) with B, H, W >= 1."""
    if x.dim() != 4:
        raise ValueError(f"{block}: input must be 4-D (B, C, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        raise ValueError(f"{block}: input has {x.shape[1]} channels, the block was built for {channels}")
    if min(x.shape) < 1:
        raise ValueError(f"{block}: input has an empty dimension: {tuple(x.shape)}")
