"""Axial attention: row attention then column attention.

Papers: Ho et al., "Axial Attention in Multidimensional Transformers" (arXiv:1912.12180, 2019), Sec. 3;
Wang et al., "Axial-DeepLab: Stand-Alone Axial-Attention for Panoptic Segmentation" (ECCV 2020).
Reference shape: two dense-style stages with separate weights
(:class:`isaprof.targets.blocks.common.SelfAttention2D`,
the openseg ``SelfAttentionBlock2D`` stage), stage 1 within each row (over W), stage 2 within each column
(over H): every output position reaches the whole map in two hops, as ISA does.
Departures from Axial-DeepLab: no position-sensitive terms (relative positional encodings in q, k and v
would add O(B H W (H + W) C) MACs; we profile the attention pattern alone), a single head, and the openseg
stage (conv + BN + ReLU projections) instead of Axial-DeepLab's multi-head BN'ed attention. No residual.
"""

from __future__ import annotations

from torch import Tensor, nn

from isaprof.targets.blocks.common import SelfAttention2D, check_input


class AxialAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): attention along each row (W keys), then each column (H keys)."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, *, impl: str = "naive") -> None:
        super().__init__()
        self.channels = channels
        self.row = SelfAttention2D(channels, key_channels, value_channels, channels, impl)
        self.column = SelfAttention2D(channels, key_channels, value_channels, channels, impl)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "axial")
        b, c, h, w = x.shape
        rows = x.permute(0, 2, 1, 3).reshape(b * h, c, 1, w)  # (B H, C, 1, W), a copy
        rows = self.row(rows).view(b, h, c, w)  # (B, H, C, W)
        cols = rows.permute(0, 3, 2, 1).reshape(b * w, c, h, 1)  # (B W, C, H, 1), a copy
        cols = self.column(cols).view(b, w, c, h)  # (B, W, C, H)
        return cols.permute(0, 2, 3, 1).contiguous()  # (B, C, H, W), a copy
