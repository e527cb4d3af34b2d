"""Channelized axial attention: Huang, Kang, Jia et al., "CAA: Channelized Axial Attention for Semantic
Segmentation" (AAAI 2022, arXiv 2101.07434).

Reference code (TensorFlow): ``edwardyehuang/CAA`` ``models/modules/caa_head.py`` (``AxialAttentionBlock``,
``ChannelAttentionBlock``), the same module in ``edwardyehuang/iSeg`` (which fixes the hidden activation to
leaky ReLU), and ``iseg/utils/attention_utils.py`` (``get_axial_attention``: softmax(q k^T), no scaling).

What the reference computes, and we do in PyTorch (v = ConvBNReLU(x), C -> C):

1. column affinity A[b, w, i, j] = softmax_j(q_i . q_j) with q = k = ConvBNReLU_v(x) (C -> Ck, shared
   query/key), row affinity from a second ConvBNReLU_h(x), both from the block input;
2. column stage, for every query row i: M_i[b, c, j, w] = A[b, w, i, j] * v[b, c, j, w] is materialised;
   its channel gate g_i[b, c] = sigmoid(MLP(mean_{j, w} M_i[b, :, j, w])) (MLP: ``mlp_layers`` bias-free
   linear layers C -> C/4 -> ... -> C/4 with leaky ReLU (slope 0.2, TF's default), then C/4 -> C);
   y[b, c, i, w] = sum_j g_i[b, c] * M_i[b, c, j, w];
3. row stage, the same on y with the row affinity and a second MLP; no residual (the head adds convs around
   it).

The channel gate depends on the query row (column) and batch only, not on j: the reference still multiplies
it into the whole (j, w) weighted map before summing, and so do we (that materialised map is the block's
memory cost). ``groups`` is the reference's ``num_parallel_group_fn``: the L query rows (columns) are
processed in ``groups`` chunks of ceil(L / groups) rows, one chunk's weighted map alive at a time: same
output, lower peak memory. The reference uses 16 groups in training and one row per step at inference; we use
``groups`` in both modes, and ceil instead of the reference's floor (which divides by zero for L < groups and
pads a whole extra group).

Checked against the reference by reading only (no TensorFlow here): shapes, the affinity (no scale, shared q
= k), the gate's mean over the whole weighted map, sigmoid and MLP widths, the column-then-row order. Not
checked: numerics against a TF run, and the paper's equations beyond what the code does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets.blocks.common import ConvBNReLU, check_impl, check_input, check_value_width

LEAKY_SLOPE = 0.2  # tf.nn.leaky_relu default alpha


class ChannelizedAxial(nn.Module):
    """Channelized axial attention, (B, C, H, W) -> (B, C, H, W); ``value_channels`` must equal ``channels``.

    Options: ``groups`` (>= 1) chunks of query rows/columns; ``mlp_layers`` (>= 1) hidden layers of each gate
    MLP.
    """

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        groups: int = 16,
        mlp_layers: int = 5,
    ) -> None:
        super().__init__()
        why = "because the value map is the output (no output projection in the reference)"
        check_value_width("channelized_axial", channels, value_channels, why)
        check_impl("channelized_axial", impl, ("naive",))
        for name, val in (("groups", groups), ("mlp_layers", mlp_layers)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        self.channels, self.groups = channels, groups
        hidden = max(1, channels // 4)  # reference: int(filters * 0.25)
        self.qk_col = ConvBNReLU(channels, key_channels)
        self.qk_row = ConvBNReLU(channels, key_channels)
        self.value = ConvBNReLU(channels, channels)
        self.gate_col = _gate_mlp(channels, hidden, mlp_layers)
        self.gate_row = _gate_mlp(channels, hidden, mlp_layers)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "channelized_axial")
        qc = self.qk_col(x).permute(0, 3, 2, 1)  # (B, W, H, Ck)
        attn_col = F.softmax(torch.matmul(qc, qc.transpose(-1, -2)), dim=-1)  # (B, W, Hi, Hj)
        qr = self.qk_row(x).permute(0, 2, 3, 1)  # (B, H, W, Ck)
        attn_row = F.softmax(torch.matmul(qr, qr.transpose(-1, -2)), dim=-1)  # (B, H, Wi, Wj)
        v = self.value(x)  # (B, C, H, W)
        y = self.aggregate(attn_col.permute(0, 2, 3, 1), v, self.gate_col, sum_dim=3)  # (B, Hi, C, W)
        y = y.permute(0, 2, 1, 3)  # (B, C, H, W)
        z = self.aggregate(attn_row.permute(0, 2, 1, 3), y, self.gate_row, sum_dim=4)  # (B, Wi, C, H)
        return z.permute(0, 2, 3, 1)  # (B, C, H, W)

    def aggregate(self, attn: Tensor, v: Tensor, gate: nn.Module, sum_dim: int) -> Tensor:
        """Gated weighted sum for L queries, ``groups`` chunks of them at a time.

        attn: (B, L, H, W), the weight of key position (h, w) for query l; v: (B, C, H, W).
        Returns (B, L, C, W) for the column stage (``sum_dim=3``, sum over H) or (B, L, C, H) for the row
        stage.
        """
        size = math.ceil(attn.shape[1] / self.groups)
        outs = []
        for a in attn.split(size, dim=1):  # a: (B, G, H, W)
            m = a.unsqueeze(2) * v.unsqueeze(1)  # (B, G, C, H, W): weighted value maps
            g = torch.sigmoid(gate(m.mean(dim=(3, 4))))  # (B, G, C): channel gate per query row/column
            outs.append((m * g[..., None, None]).sum(dim=sum_dim))  # (B, G, C, W) or (B, G, C, H)
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)  # (B, L, C, W or H)


def _gate_mlp(channels: int, hidden: int, layers: int) -> nn.Sequential:
    """``layers`` bias-free Linear + leaky ReLU (C -> hidden -> ... -> hidden), then Linear hidden -> C."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(channels if i == 0 else hidden, hidden, bias=False), nn.LeakyReLU(LEAKY_SLOPE)]
    return nn.Sequential(*mods, nn.Linear(hidden, channels, bias=False))
