"""Criss-cross attention: CCNet (Huang et al., "CCNet: Criss-Cross Attention for Semantic Segmentation", ICCV
2019).

Reference code: mmcv ``mmcv/ops/cc_attention.py`` (``CrissCrossAttention``, the pure-PyTorch einsum version
that replaced the CUDA op in mmcv 1.3.13) and CCNet's own pure-PyTorch port (``speedinghzl/CCNet``, branch
``pure-python``, ``networks/ccnet.py``), whose ``RCCAModule`` loops ``for i in range(recurrence): output =
self.cca(output)``.

Each position attends to the H + W - 1 positions of its row and its column (the centre once, the -inf
diagonal on the H branch), with one joint softmax over the H + W energies; no 1/sqrt(Ck) scaling (as the
reference). ``out = gamma * attention + x``, applied ``recurrence`` times with the same weights (R = 2 in the
paper, which then connects every pair of positions; R = 1 does not).

Where we depart from mmcv, and why:

* the H-branch diagonal is set to -inf in place (``diagonal().fill_``) instead of adding a freshly built (H,
  H) ``NEG_INF_DIAG`` matrix: same values and gradients, one (B, W, H, H) temporary fewer;
* ``gamma`` is zero-initialised as in the reference (the block starts as the identity); profiling and the
  Jacobian checks re-draw it, since a zero gamma hides every connection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets.blocks.common import check_impl, check_input, check_value_width


class CrissCross(nn.Module):
    """Recurrent criss-cross attention, (B, C, H, W) -> (B, C, H, W).

    ``value_channels`` must equal ``channels`` (the residual adds the value aggregate to the input).
    ``recurrence`` R >= 1: the number of times the one criss-cross module is applied.
    """

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        recurrence: int = 2,
    ) -> None:
        super().__init__()
        check_value_width(
            "criss_cross", channels, value_channels, "because of the residual out = gamma * attention + x"
        )
        check_impl("criss_cross", impl, ("naive",))
        if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 1:
            raise ValueError(f"recurrence must be an integer >= 1 (CCNet uses 2), got {recurrence!r}")
        self.channels = channels
        self.recurrence = recurrence
        self.query = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))  # mmcv `Scale(0.)`: the block starts as the identity

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "criss_cross")
        for _ in range(self.recurrence):
            x = self.criss_cross(x)
        return x

    def criss_cross(self, x: Tensor) -> Tensor:
        """One criss-cross step: gamma * sum over row + column of softmax(q . k) v, plus x."""
        h = x.shape[2]
        q = self.query(x)  # (B, Ck, H, W)
        k = self.key(x)  # (B, Ck, H, W)
        v = self.value(x)  # (B, C, H, W)
        energy_h = torch.einsum("bchw,bciw->bwhi", q, k)  # (B, W, H, H): column energies, bmm over (B, W)
        energy_h.diagonal(dim1=-2, dim2=-1).fill_(float("-inf"))  # centre counted on the W branch only
        energy_w = torch.einsum("bchw,bchj->bhwj", q, k)  # (B, H, W, W): row energies, bmm over (B, H)
        energy = torch.cat([energy_h.transpose(1, 2), energy_w], dim=-1)  # (B, H, W, H + W)
        attn = F.softmax(energy, dim=-1)  # (B, H, W, H + W): joint softmax over row and column
        out = torch.einsum("bciw,bhwi->bchw", v, attn[..., :h])  # (B, C, H, W): column aggregate
        out += torch.einsum("bchj,bhwj->bchw", v, attn[..., h:])  # (B, C, H, W): + row aggregate
        return self.gamma * out + x  # (B, C, H, W)
