"""Linear attention: Li, Su, Duan et al., "Linear Attention Mechanism: An Efficient Attention for Semantic
Segmentation" (arXiv 2007.14902, 2020).

Reference code: ``lironui/Linear-Attention-Mechanism``, ``Linear-Attention-Mechanism.py``
(``PositionLinearAttention``, the position branch; the DANet ``PAM_Module`` it replaces).

The softmax kernel exp(q . k) is replaced by its first-order Taylor expansion 1 + q . k with L2-normalised q
and k (so the kernel stays >= 0), which lets the sums be reordered and the cost is linear in N = H * W:

    out_n = x_n + gamma * (sum_j v_j + (K V^T)^T q_n) / (N + q_n . (sum_j k_j + eps))      (paper eq. 11)

with q_n = Q_n / ||Q_n||, k_j = K_j / ||K_j|| (norms over channels), query/key 1x1 convs C -> Ck (C // 8 as
the reference), value 1x1 conv C -> C.

Where we depart from the reference, and why:

* the numerator follows the paper: sum_j k_j v_j^T contracted with q_n. The reference computes V Q^T first and
  then multiplies by K (query and key roles swapped in the numerator, but not in the denominator); the cost is
  identical, the paper's form is the one that approximates softmax attention;
* L2 normalisation and the final per-position division are written as broadcast ``/`` and ``*`` instead of
  ``einsum('bcn,bn->bcn', ...)``: same values; in torch 2.13 the einsum lowers to the same ``mul`` anyway;
* ``eps`` (1e-6) is added to sum_j k_j as in the reference;
* ``gamma`` is zero-initialised as in the reference (identity at init); profiling and the Jacobian checks
  re-draw it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isaprof.targets.blocks.common import check_impl, check_input, check_value_width


class LinearAttention(nn.Module):
    """Position linear attention, (B, C, H, W) -> (B, C, H, W); ``value_channels`` must equal ``channels``."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        check_value_width(
            "linear", channels, value_channels, "because of the residual out = x + gamma * attention"
        )
        check_impl("linear", impl, ("naive",))
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
            raise ValueError(f"eps must be a number >= 0, got {eps!r}")
        self.channels = channels
        self.eps = float(eps)
        self.query = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.key = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.value = nn.Conv2d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(
            torch.zeros(1)
        )  # reference: zero-initialised, the block starts as the identity

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "linear")
        b, c, h, w = x.shape
        n = h * w
        q = self.query(x).view(b, -1, n)  # (B, Ck, N)
        k = self.key(x).view(b, -1, n)  # (B, Ck, N)
        v = self.value(x).view(b, c, n)  # (B, C, N)
        q = q / torch.norm(q, p=2, dim=1, keepdim=True)  # (B, Ck, N): unit columns
        k = k / torch.norm(k, p=2, dim=1, keepdim=True)  # (B, Ck, N)
        k_sum = k.sum(dim=-1) + self.eps  # (B, Ck)
        denom = n + torch.einsum("bcn,bc->bn", q, k_sum)  # (B, N): N + q_n . sum_j k_j   (bmm)
        kv = torch.einsum("bcn,bdn->bcd", k, v)  # (B, Ck, C): sum_j k_j v_j^T   (bmm)
        num = v.sum(dim=-1, keepdim=True) + torch.einsum("bcd,bcn->bdn", kv, q)  # (B, C, N)   (bmm)
        out = num / denom.unsqueeze(1)  # (B, C, N)
        return x + self.gamma * out.view(b, c, h, w)  # (B, C, H, W)
