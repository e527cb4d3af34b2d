"""Closed-form costs of ``criss_cross`` (blocks/criss_cross.py; CCNet, Huang et al. ICCV 2019).

N = H W positions, R recurrences of the same module. Per recurrence:
  params = 2 (C Ck + Ck) + (C C + C) + 1                   [query, key, value convs with bias; gamma]
  MACs   = B N C (2 Ck + C)                                 [the three 1x1 convs]
         + B N (H + W) Ck + B N (H + W) C                   [energies and aggregation over row + column]
The paper counts (H + W - 1) keys per position (CCNet sec. 3.1, the centre once); the code computes the
full H + W products and masks the duplicated centre with -inf, so the counters see H + W: we count that.
NB: torch.einsum lowers a product whose contracted dimension has size 1 to an element-wise ``mul``, which
the counters do not count: with Ck = 1 the energies, with H = 1 (W = 1) the column (row) aggregate count 0.
Training (input requires grad): every conv and bmm costs 3x its forward (grad input + grad weight / both
bmm operands), so train MACs = 3 x forward MACs.
Leaves out (``elementwise``): bias adds, the -inf mask, softmax, the in-place sum of the two aggregates,
gamma scaling, the residual.
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula


@formula("criss_cross")
def criss_cross(cfg: Config) -> Cost:
    """Costs of ``criss_cross`` (see module docstring); option ``recurrence`` (default 2)."""
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    r = cfg.option("recurrence", 2)
    bn = b * h * w
    macs = {
        "qkv_conv": r * fc.conv1x1_macs(bn, c, 2 * ck + c),
        "energy": r * bn * (h + w) * ck * (ck > 1),
        "aggregate": r * bn * (h * (h > 1) + w * (w > 1)) * c,
    }
    elementwise = {
        "diag_mask": r * bn,
        "softmax": r * fc.softmax_ops(bn * (h + w)),
        "aggregate_add": r * bn * c,
        "gamma_scale": r * bn * c,
        "residual": r * bn * c,
    }
    params = 2 * fc.conv1x1_params(c, ck) + fc.conv1x1_params(c, c) + 1
    return Cost(
        params=params,
        macs=macs,
        train_macs={k: 3 * v for k, v in macs.items()},
        elementwise=elementwise,
        peak_bytes={"inference": peak_inference(cfg), "train": peak_train(cfg)},
        padded=(h, w),
    )


def peak_inference(cfg: Config) -> int:
    """Peak bytes of one ``no_grad`` forward (storage-lifetime tracker; see module docstring of base).

    Live through one step, in units of B N elements: q, k (Ck each), v (C), energy_h (H), energy_w (W),
    their concatenation and softmax (H + W each). On top: the column einsum's copies of v and of the
    column slice of the affinity plus its output (2 C + H), or, later, the running sum, the row einsum's
    copy of v and its output (3 C), equally the final gamma * out + x. From the second step on the
    previous step's output (C) is live too. einsum copies its permuted operands (torch lowers it to bmm
    on contiguous operands); with B = 1 the (b, w) batch merges without a copy of v or of the slice.
    """
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    r = cfg.option("recurrence", 2)
    base = 2 * ck + c + 3 * (h + w)
    column = (2 * c + h) if b > 1 else c
    units = base + max(column, 3 * c) + (c if r > 1 else 0)
    return units * b * h * w * cfg.dtype_bytes


def peak_train(cfg: Config) -> int:
    """Estimated peak bytes of forward + backward (tests hold it to 15%, not exact).

    Saved per step, in units of B N: einsum's contiguous copies of q and k (2 Ck), the softmax (H + W),
    two copies of v (B = 1: v itself) and the column slice of the affinity (2 C + H; B = 1: C + H), the
    attention sum for gamma (C), the step's output (C). At the start of backward add the output's gradient
    and the softmax backward's two (H + W) temporaries and two C-sized gradients.
    """
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    r = cfg.option("recurrence", 2)
    saved = r * (2 * ck + 2 * h + w + (4 * c if b > 1 else 3 * c))  # B = 1: v is a view, not copied
    return (saved + 2 * c + 2 * (h + w)) * b * h * w * cfg.dtype_bytes
