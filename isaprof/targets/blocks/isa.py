"""Interlaced Sparse Self-Attention (Huang et al., "Interlaced Sparse Self-Attention for Semantic
Segmentation", arXiv:1907.12273, Sec. 3.2, Fig. 2).

Reference code: openseg-group/openseg.pytorch, lib/models/modules/isa_block.py (``ISA_Block``) and
open-mmlab/mmsegmentation, mmseg/models/decode_heads/isa_head.py (``ISAHead`` forward). Notation of the
paper: H = P_h * Q_h, W = P_w * Q_w, ``factor = (P_h, P_w)`` (the references' ``down_factor``).

* long-range stage: the P_h * P_w groups of Q_h x Q_w positions a stride (P_h, P_w) apart each run a
  dense self-attention stage (C -> C), regrouped as ``view(n, c, Qh, Ph, Qw, Pw).permute(0, 3, 5, 1, 2, 4)``;
* short-range stage: the Q_h * Q_w windows of P_h x P_w contiguous positions each run a second stage with
  its own weights, ``view(n, Ph, Pw, c, Qh, Qw).permute(0, 4, 5, 3, 1, 2)``; then the map is put back.

The stage is :class:`isaprof.targets.blocks.common.SelfAttention2D` (see there for its layers and departures).
Sizes the factor does not divide: Q = ceil(H / P), the map is zero-padded to (Q_h P_h, Q_w P_w) with
``pad // 2`` rows/columns before and the rest after (exactly the references), and cropped back at the end.
``masked=False`` (reference): the padded positions take part as keys and values in both stages.
``masked=True`` (ours): padded positions are excluded as keys in both stages (their logits get the most
negative finite value); their own outputs are computed and then discarded by the crop. Same MACs.
A factor larger than the map is allowed (Q = 1 along that axis: the long-range stage degenerates to
single positions, the short-range stage spans the padded map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets.blocks.common import SelfAttention2D, check_input


def check_factor(factor: Any) -> tuple[int, int]:
    """``factor`` as a (P_h, P_w) tuple of positive ints; ``ValueError`` saying what is allowed."""
    ok = isinstance(factor, (tuple, list)) and len(factor) == 2
    ok = ok and all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in factor)
    if not ok:
        raise ValueError(f"isa: factor must be two positive integers (P_h, P_w), e.g. (8, 8); got {factor!r}")
    return int(factor[0]), int(factor[1])


def isa_geometry(height: int, width: int, factor: tuple[int, int]) -> tuple[int, int, int, int, int, int]:
    """(Q_h, Q_w, pad_top, pad_bottom, pad_left, pad_right) of ISA on an H x W map.

    Q = ceil(size / P); padded size = Q * P; ``pad // 2`` before and the rest after, as openseg's
    ``ISA_Block`` / mmseg's ``ISAHead``. (Duplicated in ``isaprof.formulas.isa``: formulas import nothing.)
    """
    ph, pw = check_factor(factor)
    qh, qw = math.ceil(height / ph), math.ceil(width / pw)
    pad_h, pad_w = qh * ph - height, qw * pw - width
    return qh, qw, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


class InterlacedSparseAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): long-range then short-range self-attention. No residual."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        factor: tuple[int, int] = (8, 8),
        masked: bool = False,
    ) -> None:
        super().__init__()
        self.factor = check_factor(factor)
        if not isinstance(masked, bool):
            raise ValueError(f"isa: masked must be True or False, got {masked!r}")
        self.channels, self.masked = channels, masked
        self.long_range = SelfAttention2D(channels, key_channels, value_channels, channels, impl)
        self.short_range = SelfAttention2D(channels, key_channels, value_channels, channels, impl)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "isa")
        n, c, h, w = x.shape
        part = Partition.of(h, w, self.factor)
        qh, qw, ph, pw = part.qh, part.qw, part.ph, part.pw
        feats = part.pad(x)  # (n, c, Qh*Ph, Qw*Pw)
        long_mask, short_mask = part.key_masks(n, x.device) if self.masked else (None, None)
        feats = feats.view(n, c, qh, ph, qw, pw).permute(0, 3, 5, 1, 2, 4)  # (n, Ph, Pw, c, Qh, Qw)
        feats = feats.reshape(n * ph * pw, c, qh, qw)  # (n Ph Pw, c, Qh, Qw), a copy
        feats = self.long_range(feats, long_mask)  # (n Ph Pw, c, Qh, Qw)
        feats = feats.view(n, ph, pw, c, qh, qw).permute(0, 4, 5, 3, 1, 2)  # (n, Qh, Qw, c, Ph, Pw)
        feats = feats.reshape(n * qh * qw, c, ph, pw)  # (n Qh Qw, c, Ph, Pw), a copy
        feats = self.short_range(feats, short_mask)  # (n Qh Qw, c, Ph, Pw)
        feats = feats.view(n, qh, qw, c, ph, pw).permute(0, 3, 1, 4, 2, 5)  # (n, c, Qh, Ph, Qw, Pw)
        feats = feats.reshape(n, c, qh * ph, qw * pw)  # (n, c, H', W'), a copy
        return part.crop(feats)  # (n, c, H, W), a view


@dataclass(frozen=True)
class Partition:
    """ISA's geometry on one H x W map, the one home of its pad, key masks and crop (the block and its
    fast path, ``blocks.fast``, both use it): factor (P_h, P_w), Q = ceil(size / P), padding per side."""

    height: int
    width: int
    ph: int
    pw: int
    qh: int
    qw: int
    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def of(cls, height: int, width: int, factor: tuple[int, int]) -> Partition:
        """The partition of an H x W map by ``factor`` (``ValueError`` for a bad factor)."""
        qh, qw, top, bottom, left, right = isa_geometry(height, width, factor)
        return cls(height, width, *check_factor(factor), qh, qw, top, bottom, left, right)

    @property
    def padded(self) -> bool:
        return self.top + self.bottom + self.left + self.right > 0

    def pad(self, x: Tensor) -> Tensor:
        """(n, c, H, W) -> (n, c, Q_h P_h, Q_w P_w), zero-padded (``x`` itself when nothing is padded)."""
        return F.pad(x, (self.left, self.right, self.top, self.bottom)) if self.padded else x

    def key_masks(self, n: int, device: torch.device) -> tuple[Tensor | None, Tensor | None]:
        """The two stages' boolean key masks (`_key_masks`), or (None, None) when nothing is padded."""
        if not self.padded:
            return None, None
        box = (self.top, self.left, self.height, self.width)
        return _key_masks(n, self.qh, self.qw, self.ph, self.pw, box, device)

    def crop(self, feats: Tensor) -> Tensor:
        """(n, c, H', W') -> (n, c, H, W): the view of the real positions (``feats`` when not padded)."""
        if not self.padded:
            return feats
        return feats[:, :, self.top : self.top + self.height, self.left : self.left + self.width]


def _key_masks(
    n: int, qh: int, qw: int, ph: int, pw: int, box: tuple[int, int, int, int], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Boolean key masks (True = real position) of the long- and short-range stages.

    Long: (n Ph Pw, 1, Qh Qw); short: (n Qh Qw, 1, Ph Pw), batch order as the regrouped features.
    """
    top, left, h, w = box
    valid = torch.zeros(qh * ph, qw * pw, dtype=torch.bool, device=device)  # (H', W')
    valid[top : top + h, left : left + w] = True
    grid = valid.view(qh, ph, qw, pw)  # (Qh, Ph, Qw, Pw)
    long = grid.permute(1, 3, 0, 2).reshape(1, ph * pw, 1, qh * qw).expand(n, -1, -1, -1)  # (n, PhPw, 1, M)
    short = grid.permute(0, 2, 1, 3).reshape(1, qh * qw, 1, ph * pw).expand(n, -1, -1, -1)  # (n, QhQw, 1, M)
    return long.reshape(n * ph * pw, 1, qh * qw), short.reshape(n * qh * qw, 1, ph * pw)
