"""Closed-form costs of ``sparse_nonlocal`` (blocks/sparse_nonlocal.py; SSANet's sparse non-local block,
Liu & Yin 2021, read as: every query attends to the same K = min(k, H W) sampled key/value positions).

N = H W queries, K sampled keys:
  params = 2 (C Ck + Ck) + (C Cv + Cv) + Cv C + 2 C       [theta, phi, g with bias; conv_out; BN]
  MACs   = B N C Ck + B K C (Ck + Cv) + B N Cv C          [theta on N, phi and g on K positions, conv_out]
         + B N K (Ck + Cv)                                 [Q K^T, A V over the K samples]
so the attention term is K / N of the dense non-local block's B N^2 (Ck + Cv).
Training (input requires grad): convs 3x; attention backward per ``formulas.common.attention_backward_macs``
(materialised: 2 (QK + AV); CPU fused sdpa: 3 QK + 2 AV).
Leaves out (``elementwise``): bias adds, the gather of the samples, scaling, softmax, BN, the residual.
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula

INDEX_BYTES = 8  # the (K,) int64 index of the sampled positions: live through forward, saved for backward


def samples(cfg: Config) -> int:
    """K, the number of sampled key/value positions: the ``k`` option (default 64) clamped to H W."""
    return min(cfg.option("k", 64), cfg.height * cfg.width)


@formula("sparse_nonlocal")
def sparse_nonlocal(cfg: Config) -> Cost:
    """Costs of ``sparse_nonlocal`` (see module docstring)."""
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, k = cfg.height * cfg.width, samples(cfg)
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    convs = {
        "theta_conv": fc.conv1x1_macs(b * n, c, ck),
        "phi_g_conv": fc.conv1x1_macs(b * k, c, ck + cv),
        "out_conv": fc.conv1x1_macs(b * n, cv, c),
    }
    qk, av = fc.attention_macs(b, n, k, ck, cv)
    train = {name: 3 * v for name, v in convs.items()}
    train["attention"] = qk + av + fc.attention_backward_macs(qk, av, kernel)
    params = 2 * fc.conv1x1_params(c, ck) + fc.conv1x1_params(c, cv)
    params += fc.conv1x1_params(cv, c, bias=False) + fc.bn_params(c)
    elementwise = {
        "scale": b * n * k,
        "softmax": fc.softmax_ops(b * n * k),
        "out_bn": fc.BN_OPS * b * n * c,
        "residual": b * n * c,
    }
    return Cost(
        params=params,
        macs={**convs, "qk": qk, "av": av},
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={"inference": peak_inference(cfg, kernel), "train": peak_train(cfg, kernel)},
        padded=(cfg.height, cfg.width),
    )


def peak_inference(cfg: Config, kernel: str) -> int:
    """Peak bytes of one ``no_grad`` forward (assumes Ck, Cv, K > 1: otherwise some copies are views).

    Live throughout: the (K,) int64 index, the gathered samples (B C K), theta (B N Ck), phi (B K Ck), g (B K
    Cv). On top, the largest of: the attention (naive: logits and scaled logits, 2 B N K, then softmax and
    output; sdpa copies q, k, v contiguous first, then math: scaled q, logits, softmax; fused: output and
    logsumexp), and the tail: attention output (B N Cv), conv_out and BN outputs (2 B N C), the same with the
    residual.
    """
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, k = cfg.height * cfg.width, samples(cfg)
    base = c * k + n * ck + k * (ck + cv)
    tail = n * cv + 2 * n * c
    if cfg.impl == "naive":
        attention = max(2 * n * k, n * k + n * cv)
    else:
        copies = n * ck + k * (ck + cv)
        if kernel == "fused":
            attention = copies + n * cv + n  # output (B, 1, N, Cv) and logsumexp (B, 1, N)
        else:
            attention = copies + max(n * ck + k * ck + n * k, n * ck + 2 * n * k)
    return b * (base + max(attention, tail)) * cfg.dtype_bytes + INDEX_BYTES * k


def peak_train(cfg: Config, kernel: str) -> int:
    """Estimated peak bytes of forward + backward (tests hold it to 15%, not exact): the larger of two.

    At the output BN's backward (exact for naive when it is the larger). Saved: the samples, theta, phi, g
    (as in ``peak_inference``), the attention's saved state (softmax B N K; sdpa: contiguous copies of q, k,
    v, and fused: the logsumexp B N; math: scaled q and k and the softmax), the attention output (B N Cv),
    conv_out's output (B N C) and the BN statistics (2 C). Live too: the output, its gradient, BN's input
    gradient (3 B N C) and BN's parameter gradients (2 C). At the softmax backward (naive, math): the saved
    softmax, its gradient and the logits' gradient (3 B N K), the residual's gradient held for x (B N C), the
    attention output's gradient (B N Cv), g's (B K Cv).
    """
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, k = cfg.height * cfg.width, samples(cfg)
    base = c * k + n * ck + k * (ck + cv)
    if cfg.impl == "naive":
        attention = n * k
    elif kernel == "fused":
        attention = n * ck + k * (ck + cv) + n
    else:
        attention = 2 * n * ck + k * (2 * ck + cv) + n * k
    at_bn = b * (base + attention + n * cv + 4 * n * c) + 4 * c
    at_softmax = b * (base + 3 * n * k + n * c + n * cv + k * cv) if kernel == "materialised" else 0
    return max(at_bn, at_softmax) * cfg.dtype_bytes + INDEX_BYTES * k
