"""Composite affinity of ISA: the product of its two stages' softmax affinities, mapped back to positions.

ISA's output at position i is ``W_2 sum_k A_short[i, k] V_2(W_1 sum_j A_long[k, j] V_1(x_j))``: with the
pointwise layers set aside, position j reaches i with weight ``(A_short @ A_long)[i, j]`` (positions of the
padded grid, row-major). With ``factor=(1, 1)`` the long-range stage is one group (the whole map) and the
short-range windows hold one position each (affinity 1), so the composite is the dense affinity itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from isaprof.flow.structural import isa_layout
from isaprof.targets.blocks.common import record_attention


def isa_positions(grid: tuple[int, int], factor: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Grid positions of the members of each group, in the order of the block's regrouping.

    Long-range: (P_h P_w, Q_h Q_w), group (ph, pw), member (qh, qw) at (qh P_h + ph, qw P_w + pw)
    (``view(n, c, Qh, Ph, Qw, Pw)``); short-range: (Q_h Q_w, P_h P_w), window (qh, qw), member (ph, pw).
    """
    (hp, wp), (ph, pw) = grid, factor
    qh, qw = hp // ph, wp // pw
    a, b, c, d = np.meshgrid(np.arange(qh), np.arange(ph), np.arange(qw), np.arange(pw), indexing="ij")
    pos = (a * ph + b) * wp + c * pw + d  # (Qh, Ph, Qw, Pw)
    long = pos.transpose(1, 3, 0, 2).reshape(ph * pw, qh * qw)  # (Ph Pw, Qh Qw)
    short = pos.transpose(0, 2, 1, 3).reshape(qh * qw, ph * pw)  # (Qh Qw, Ph Pw)
    return long, short


def isa_composite(module: nn.Module, x: Tensor) -> np.ndarray:
    """(N, N) float64 composite affinity ``A_short @ A_long`` of an ISA block on ``x`` (1, C, H, W), real
    positions only (row-major). Rows sum to 1 (over the padded grid) when nothing is masked."""
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"x must be one map (1, C, H, W), got shape {tuple(x.shape)}")
    h, w = x.shape[2:]
    factor = tuple(module.factor)
    (hp, wp), (top, left) = isa_layout(h, w, factor)
    with torch.no_grad(), record_attention() as maps:
        module(x)
    if len(maps) != 2:
        raise ValueError(f"expected 2 recorded affinities (long-range, short-range), got {len(maps)}")
    mats = []
    for aff, pos in zip(maps, isa_positions((hp, wp), factor), strict=True):
        full = np.zeros((hp * wp, hp * wp))  # (Np, Np)
        full[pos[:, :, None], pos[:, None, :]] = aff.double().cpu().numpy()  # groups (G, M, M) placed
        mats.append(full)
    comp = mats[1] @ mats[0]  # (Np, Np): short after long
    real = np.zeros((hp, wp), dtype=bool)
    real[top : top + h, left : left + w] = True
    real = real.reshape(-1)
    return comp[np.ix_(real, real)]  # (N, N)


def attention_map(module: nn.Module, x: Tensor) -> np.ndarray:
    """The one recorded (N, N) affinity of a single-stage block (e.g. ``dense``) on ``x`` (1, C, H, W)."""
    with torch.no_grad(), record_attention() as maps:
        module(x)
    if len(maps) != 1:
        raise ValueError(f"expected 1 recorded affinity, got {len(maps)}")
    return maps[0][0].double().cpu().numpy()  # (N, N)
