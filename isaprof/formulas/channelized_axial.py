"""Closed-form costs of ``channelized_axial`` (blocks/channelized_axial.py; CAA, Huang et al. AAAI 2022).

N = H W positions, h = max(1, C // 4) gate width, L = ``mlp_layers`` (default 5), G = ``groups`` (default 16):
  params = 2 (C Ck + Ck + 2 Ck) + (C C + C + 2 C)          [two ConvBNReLU C -> Ck, ConvBNReLU C -> C]
         + 2 (C h + (L - 1) h h + h C)                      [two bias-free gate MLPs]
  MACs   = B N C (2 Ck + C)                                 [the three 1x1 convs]
         + B N (H + W) Ck                                   [column and row affinities q_i . q_j]
         + B (H + W) (2 C h + (L - 1) h h)                  [one gate MLP per query row / column]
The aggregation sum_j g_i A_ij v_j is an element-wise multiply and a sum in the reference (and here): it is
*not* a matrix product, so the counters see no MACs for it; it appears in ``elementwise`` (B N C (H + W) per
step: weight, gate mean, gate multiply, sum), which is what dominates this block's real cost.
Training (input requires grad): train MACs = 3 x forward MACs.
Peak bytes depend on ``groups``: one chunk of ceil(L / G) query rows materialises a (B, ceil(L / G), C, H, W)
weighted map (twice: before and after the gate).
"""

from __future__ import annotations

import math

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula


@formula("channelized_axial")
def channelized_axial(cfg: Config) -> Cost:
    """Costs of ``channelized_axial`` (see module docstring)."""
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    layers, hid = cfg.option("mlp_layers", 5), max(1, c // 4)
    bn = b * h * w
    mlp = 2 * c * hid + (layers - 1) * hid * hid
    macs = {
        "qk_conv": fc.conv1x1_macs(bn, c, 2 * ck),
        "value_conv": fc.conv1x1_macs(bn, c, c),
        "affinity": bn * (h + w) * ck,
        "gate_mlp": b * (h + w) * mlp,
    }
    work = bn * c * (h + w)  # (query, key, channel) triples over both steps
    elementwise = {
        "bn_relu": (fc.BN_OPS + fc.RELU_OPS) * bn * (2 * ck + c),
        "softmax": fc.softmax_ops(bn * (h + w)),
        "weighted_values": work,
        "gate_mean": work,
        "gate_multiply": work,
        "sum": work,
        "gate_activations": b * (h + w) * (layers * hid + c),  # leaky ReLUs, sigmoid
    }
    params = 2 * (fc.conv1x1_params(c, ck) + fc.bn_params(ck)) + fc.conv1x1_params(c, c) + fc.bn_params(c)
    params += 2 * mlp
    return Cost(
        params=params,
        macs=macs,
        train_macs={k: 3 * v for k, v in macs.items()},
        elementwise=elementwise,
        peak_bytes={"inference": peak_inference(cfg), "train": peak_train(cfg)},
        padded=(h, w),
    )


def chunks(length: int, groups: int) -> list[int]:
    """Sizes of the chunks ``Tensor.split(ceil(length / groups))`` makes of ``length`` query rows."""
    size = math.ceil(length / groups)
    return [min(size, length - i) for i in range(0, length, size)]


def _aggregate_peak(live: int, length: int, groups: int, b: int, c: int, n: int, per: int, hid: int) -> int:
    """Peak elements of one gated aggregation step over ``length`` queries (``ChannelizedAxial.aggregate``).

    ``live``: elements alive throughout; ``per``: output elements per query and channel (W or H).
    Candidates per chunk j of g queries (m: weighted map b g c n, gate b g c, outputs so far):
    new map while the previous map and gate live; inside the MLP (mean + two hidden activations, or one
    and the output); sigmoid (MLP output + gate); gated map + sum. Then the concatenation of the outputs.
    """
    peak, done, prev_m, prev_gate = 0, 0, 0, 0  # the previous chunk's map and gate live until rebound
    sizes = chunks(length, groups)
    for g in sizes:
        m, gate, now = b * g * c * n, b * g * c, live + done
        peak = max(
            peak,
            now + prev_m + prev_gate + m,
            now + m + prev_gate + gate + max(2 * b * g * hid, b * g * hid + gate),
            now + m + prev_gate + 2 * gate,
            now + m + gate + m + b * g * c * per,
        )
        done += b * g * c * per
        prev_m, prev_gate = m, gate
    if len(sizes) > 1:
        peak = max(peak, live + done + prev_m + prev_gate + b * length * c * per)
    return peak


def peak_inference(cfg: Config) -> int:
    """Peak bytes of one ``no_grad`` forward (storage-lifetime tracker).

    Projections: q_col (B Ck N) and its affinity (B W H H), q_row and its affinity (B H W W), v (B C N)
    stay alive to the end; ``matmul`` copies both permuted operands (not for B = 1, where the batch merges
    as a view). Then the column step with v live, and the row step with v and the column result y live.
    """
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    groups, hid, n = cfg.option("groups", 16), max(1, c // 4), h * w
    q, col, row = b * ck * n, b * w * h * h, b * h * w * w
    copies = 2 * q if b > 1 else 0
    proj = max(
        2 * q,
        q + copies + col,
        q + 2 * col,
        q + col + 2 * q,
        q + col + q + copies + row,
        q + col + q + 2 * row,
        2 * q + col + row + 2 * b * c * n,
    )
    live = 2 * q + col + row + b * c * n
    step_col = _aggregate_peak(live, h, groups, b, c, n, w, hid)
    step_row = _aggregate_peak(live + b * c * n, w, groups, b, c, n, h, hid)
    return max(proj, step_col, step_row) * cfg.dtype_bytes


def peak_train(cfg: Config) -> int:
    """Estimated peak bytes of forward + backward (tests hold it to 15%, not exact).

    Autograd keeps every chunk's weighted map (the gate multiply saves it): B N C (H + W) in all, whatever
    ``groups`` (grouping lowers the inference peak, not the training one). Per B N besides: the affinities
    (H + W), the three ConvBNReLU's conv, BN and ReLU outputs (3 (2 Ck + C)), matmul's copies of q (4 Ck),
    the column result (C), the output and its gradient (2 C), and a backward chunk's two map gradients.
    """
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    size = math.ceil(max(h, w) / cfg.option("groups", 16))
    units = c * (h + w) + 2 * (h + w) + 3 * (2 * ck + c) + 4 * ck + 3 * c + 2 * size * c
    return units * b * h * w * cfg.dtype_bytes
