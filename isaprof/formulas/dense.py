"""Closed-form costs of ``dense`` (blocks/dense.py) and of its stage, reused by ``isa`` and ``axial``.

One stage (openseg ``SelfAttentionBlock2D``) on ``maps`` maps of N positions, C_in -> C_out:
  params = 2 (C_in Ck + 2 Ck + Ck Ck + 2 Ck)   [f_query, f_key: 2 x (conv, no bias + BN) each]
         + C_in Cv + (Cv C_out + 2 C_out)         [f_value conv; W conv + BN; no biases]
  MACs   = maps N (2 (C_in Ck + Ck Ck) + C_in Cv + Cv C_out)   [query, key, value, out 1x1 convs]
         + maps N^2 (Ck + Cv)                                   [Q K^T, A V]
The dense block is one stage on the B maps of N = H W: with Ck = Cv = C/2 the attention is B N^2 C MACs,
the O((HW)^2 C) of dense self-attention in the ISA paper (Huang et al. 2019, Sec. 3.3).
Leaves out: bias adds, BN, ReLU, scaling and softmax (those are in ``elementwise``, see formulas/common.py).
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula


def stage_params(cin: int, ck: int, cv: int, cout: int) -> int:
    """Parameters of one stage: query and key (2 x conv + BN each), value conv, out conv + BN; no biases."""
    key = fc.conv1x1_params(cin, ck, bias=False) + fc.conv1x1_params(ck, ck, bias=False) + 2 * fc.bn_params(ck)
    value = fc.conv1x1_params(cin, cv, bias=False)
    out = fc.conv1x1_params(cv, cout, bias=False) + fc.bn_params(cout)
    return 2 * key + value + out


def stage_macs(
    prefix: str, maps: int, n: int, cin: int, ck: int, cv: int, cout: int, kernel: str
) -> tuple[dict[str, int], dict[str, int]]:
    """(forward, forward + backward) MACs of one stage by term, term names prefixed by ``prefix``.

    Every conv input descends from the block input, which requires grad: backward = grad_input + grad_weight.
    """
    convs = {
        "query_conv": fc.conv1x1_macs(maps * n, cin, ck) + fc.conv1x1_macs(maps * n, ck, ck),
        "key_conv": fc.conv1x1_macs(maps * n, cin, ck) + fc.conv1x1_macs(maps * n, ck, ck),
        "value_conv": fc.conv1x1_macs(maps * n, cin, cv),
        "out_conv": fc.conv1x1_macs(maps * n, cv, cout),
    }
    qk, av = fc.attention_macs(maps, n, n, ck, cv)
    fwd = {**convs, "qk": qk, "av": av}
    train = {name: 3 * v for name, v in convs.items()}
    train["attention"] = qk + av + fc.attention_backward_macs(qk, av, kernel)
    return {prefix + k: v for k, v in fwd.items()}, {prefix + k: v for k, v in train.items()}


def stage_elementwise(
    prefix: str, maps: int, n: int, ck: int, cout: int, masked: bool = False
) -> dict[str, int]:
    """Forward element-wise ops of one stage: query/key BN + ReLU (4 layers), logit scale (+ mask), softmax,
    out BN + ReLU."""
    logits = maps * n * n
    ops = {
        "query_key_bn_relu": 4 * (fc.BN_OPS + fc.RELU_OPS) * maps * n * ck,
        "scale": logits,
        "softmax": fc.softmax_ops(logits),
        "out_bn_relu": (fc.BN_OPS + fc.RELU_OPS) * maps * n * cout,
    }
    if masked:
        ops["mask"] = logits
    return {prefix + k: v for k, v in ops.items()}


@formula("dense")
def dense(cfg: Config) -> Cost:
    """Costs of ``dense``: one stage over the B maps of N = H W positions (see module docstring)."""
    c, ck, cv, n = cfg.channels, cfg.key_channels, cfg.value_channels, cfg.height * cfg.width
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    macs, train = stage_macs("", cfg.batch, n, c, ck, cv, c, kernel)
    return Cost(
        params=stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=stage_elementwise("", cfg.batch, n, ck, c),
        peak_bytes={},  # NOT DERIVED YET (see fc.PEAK_BYTES_TODO)
        notes=(fc.PEAK_BYTES_TODO,),
        padded=(cfg.height, cfg.width),
    )
