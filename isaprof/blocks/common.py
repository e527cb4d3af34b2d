"""Pieces shared by several blocks: the attention core and the 1x1 conv + BN + ReLU projection."""

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

    Used by ``isaprof.verify`` to compose the affinities of a block's stages. The affinity is
    recomputed explicitly, so this works for both impls (and costs an extra matmul: never profile
    inside it).
    """
    maps: list[Tensor] = []
    _RECORDERS.append(maps)
    try:
        yield maps
    finally:
        _RECORDERS.remove(maps)


def attend(q: Tensor, k: Tensor, v: Tensor, *, impl: str, scale: float | None = None) -> Tensor:
    """softmax(q k^T * scale) v over the last two dims.

    q: (..., N, Ck), k: (..., M, Ck), v: (..., M, Cv) -> (..., N, Cv). ``scale`` defaults to Ck**-0.5.
    ``impl="naive"`` materialises the (..., N, M) affinity exactly as the papers' code does
    (matmul, scale, softmax, matmul); ``impl="sdpa"`` calls
    ``F.scaled_dot_product_attention``, whose kernel (math / flash / efficient) the caller picks
    with ``torch.nn.attention.sdpa_kernel``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    if _RECORDERS:
        affinity = F.softmax(scale * torch.matmul(q, k.transpose(-1, -2)), dim=-1).detach()  # (..., N, M)
        for maps in _RECORDERS:
            maps.append(affinity)
    if impl == "naive":
        sim = torch.matmul(q, k.transpose(-1, -2))  # (..., N, M)
        sim = scale * sim  # out of place, as openseg's SelfAttentionBlock2D
        sim = F.softmax(sim, dim=-1)  # (..., N, M)
        return torch.matmul(sim, v)  # (..., N, Cv)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, scale=scale)  # (..., N, Cv)
    raise ValueError(f"unknown attention impl {impl!r}; allowed: {', '.join(IMPLS)}")


class ConvBNReLU(nn.Sequential):
    """1x1 convolution (with bias, as the reference code) + BatchNorm2d + ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=False),
        )
