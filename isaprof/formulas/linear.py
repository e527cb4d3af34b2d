"""Closed-form costs of ``linear`` (blocks/linear.py; Li, Su, Duan et al. 2020, arXiv 2007.14902, eq. 11).

N = H W positions:
  params = 2 (C Ck + Ck) + (C C + C) + 1                  [query, key, value convs with bias; gamma]
  MACs   = B N C (2 Ck + C)                                [the three 1x1 convs]
         + B N Ck                                          [denominator q_n . sum_j k_j]
         + B N Ck C                                        [sum_j k_j v_j^T: (Ck, N) x (N, C)]
         + B N Ck C                                        [numerator (K V^T)^T q_n]
linear in N: 2 B N Ck C replaces dense attention's 2 B N^2 C (the paper's O(N) claim).
NB: torch.einsum lowers a product whose contracted dimension has size 1 to an element-wise ``mul`` that the
counters do not count: with Ck = 1 the denominator and numerator, with N = 1 the K V^T term count 0.
Training (input requires grad): train MACs = 3 x forward MACs.
Leaves out (``elementwise``): L2 norms, the sums over positions, the divisions, gamma, the residual.
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula


@formula("linear")
def linear(cfg: Config) -> Cost:
    """Costs of ``linear`` (see module docstring)."""
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    n = h * w
    macs = {
        "qkv_conv": fc.conv1x1_macs(b * n, c, 2 * ck + c),
        "denominator": b * n * ck * (ck > 1),
        "kv": b * n * ck * c * (n > 1),
        "numerator": b * n * ck * c * (ck > 1),
    }
    elementwise = {
        "l2_norm": 2 * (3 * b * n * ck + b * n),  # square, add, divide per element; one sqrt per position
        "key_sum": b * n * ck,
        "value_sum": b * n * c,
        "denominator_add": b * n,
        "numerator_add": b * n * c,
        "divide": b * n * c,
        "gamma_scale": b * n * c,
        "residual": b * n * c,
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
    """Peak bytes of one ``no_grad`` forward: reached at the final residual add.

    Live then: v, the numerator, its quotient, gamma * quotient and the output (5 B N C), the normalised
    q and k (2 B N Ck), the denominator (B N), K V^T (B Ck C) and sum_j k_j (B Ck).
    """
    b, c, ck, n = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width
    return (5 * b * n * c + 2 * b * n * ck + b * n + b * ck * c + b * ck) * cfg.dtype_bytes


def peak_train(cfg: Config) -> int:
    """Estimated peak bytes of forward + backward (tests hold it to 15%, not exact).

    Reached in the backward of the final division. Per B N: saved q, k before and after normalisation
    (4 Ck), their norms (2), v, the numerator and the quotient (3 C); the output and its gradient (2 C);
    the division's backward temporaries (4 C).
    """
    b, c, ck, n = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width
    return (b * n * (4 * ck + 2 + 9 * c) + b * ck * c) * cfg.dtype_bytes
