"""Closed-form costs of ``non_local`` (blocks/non_local.py; Wang et al. CVPR 2018, embedded Gaussian,
eq. 2-3).

N = H W queries, M keys (M = N, or floor(H/2) floor(W/2) with ``sub_sample``):
  params = 2 (C Ck + Ck) + (C Cv + Cv) + Cv C + 2 C           [theta, phi, g with bias; conv_out, BN]
  MACs   = B N C (2 Ck + Cv) + B N Cv C + B N M (Ck + Cv)     [convs on all N positions; Q K^T, A V]
Leaves out: bias adds, max-pool, BN, scaling, softmax, the residual add (``elementwise``).
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula


def keys(cfg: Config) -> int:
    """M, the number of key/value positions."""
    if cfg.option("sub_sample", False):
        return (cfg.height // 2) * (cfg.width // 2)
    return cfg.height * cfg.width


@formula("non_local")
def non_local(cfg: Config) -> Cost:
    """Costs of ``non_local`` (see module docstring)."""
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, m = cfg.height * cfg.width, keys(cfg)
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    convs = {
        "theta_conv": fc.conv1x1_macs(b * n, c, ck),
        "phi_conv": fc.conv1x1_macs(b * n, c, ck),
        "g_conv": fc.conv1x1_macs(b * n, c, cv),
        "out_conv": fc.conv1x1_macs(b * n, cv, c),
    }
    qk, av = fc.attention_macs(b, n, m, ck, cv)
    train = {k: 3 * v for k, v in convs.items()}
    train["attention"] = qk + av + fc.attention_backward_macs(qk, av, kernel)
    params = 2 * fc.conv1x1_params(c, ck) + fc.conv1x1_params(c, cv)
    params += fc.conv1x1_params(cv, c, bias=False) + fc.bn_params(c)
    elementwise = {
        "scale": b * n * m,
        "softmax": fc.softmax_ops(b * n * m),
        "out_bn": fc.BN_OPS * b * n * c,
        "residual": b * n * c,
    }
    if cfg.option("sub_sample", False):
        elementwise["max_pool"] = fc.POOL2X2_OPS * b * m * (ck + cv)
    return Cost(
        params=params,
        macs={**convs, "qk": qk, "av": av},
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={},  # NOT DERIVED YET (see fc.PEAK_BYTES_TODO)
        notes=(fc.PEAK_BYTES_TODO,),
        padded=(cfg.height, cfg.width),
    )
