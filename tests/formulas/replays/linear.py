"""Replay of ``linear`` (first-order Taylor attention) in train."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from tests.formulas.replays.trace import Trace


def _normalise_backward(t: Trace, p: str, grad: str, sizes: tuple[int, int, int], ck: int) -> str:
    """Backward of ``u / torch.norm(u, dim=1, keepdim=True)`` given ``grad`` (B, Ck, N); returns d_u's name.

    ``sizes`` = (B Ck N, B N, B N) bytes of u, of its norm and of the norm's zero mask (bool). The division's
    backward (``div_tensor_other_backward``: -grad (self / other) / other, then grad / other); the norm's
    (``norm_backward``: self / norm masked where norm == 0). With Ck = 1 no reduction is needed for d_norm.
    """
    full, col, mask = sizes
    tmp = [t.alloc(f"{p}div_a", full), t.alloc(f"{p}div_b", full), t.alloc(f"{p}neg", full)]
    d_norm = t.alloc(f"{p}d_norm_full", full)  # (B, Ck, N), reduced to (B, 1, N) below when Ck > 1
    t.free(*reversed(tmp))
    d_u = t.alloc(f"{p}d_u_div", full)
    if ck > 1:
        red = t.alloc(f"{p}d_norm", col)  # (B, 1, N)
        t.free(d_norm, grad)
        d_norm = red
    else:
        t.free(grad)
    t.alloc(f"{p}nb_div", full), t.alloc(f"{p}nb_eq", mask)
    nb = t.alloc(f"{p}nb_mul", full)
    t.free(f"{p}nb_eq", f"{p}nb_div", d_norm, f"{p}conv", f"{p}norm")
    out = t.alloc(f"{p}d_conv", full)
    t.free(d_u, nb)
    return out


def linear_train_peak(cfg: Config) -> Trace:
    """Events of ``linear`` under the train protocol (torch 2.x CPU, read off a dispatch-mode log).

    Reached in the backward of the final division ``num / denom``: beside the saved activations
    (q, k convs and norms and normalised q, k: 4 B N Ck + 2 B N; v, the denominator, numerator:
    B N (C + 1) + B N C; K V^T, sum_j k_j), the output, the seed and the gradient of the quotient
    (3 B N C) and the division's -grad (num / denom) / denom temporaries (3 B N C, the neg one the last).
    """
    b, c, ck, n, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width, cfg.dtype_bytes
    fk, fc_, col = b * n * ck * e, b * n * c * e, b * n * e
    t = Trace()
    for p in ("q_", "k_"):
        t.alloc(p + "conv", fk)  # (B, Ck, H, W)
    t.alloc("v", fc_)  # (B, C, H, W)
    for p in ("q_", "k_"):
        t.alloc(p + "norm", col)  # (B, 1, N)
        t.alloc(p + "unit", fk)  # (B, Ck, N)
    t.alloc("k_sum0", b * ck * e)
    t.alloc("k_sum", b * ck * e)  # + eps
    t.free("k_sum0")
    t.alloc("qk", col)  # bmm (B, N, 1)
    t.alloc("denom", col)  # N + ...
    t.free("qk")
    t.alloc("kv", b * ck * c * e)  # (B, Ck, C)
    t.alloc("v_sum", b * c * e)  # (B, C, 1)
    t.alloc("kvq", fc_)  # (B, C, N)
    t.alloc("num", fc_)
    t.free("v_sum", "kvq")
    t.alloc("quot", fc_)  # (B, C, N), saved by gamma *
    t.alloc("scaled", fc_)
    t.alloc("out", fc_)  # the output, held by the caller
    t.free("scaled")
    t.alloc("seed", fc_)  # ones_like(out), held by the caller
    t.alloc("d_quot", fc_)  # grad * gamma
    t.alloc("d_gamma_full", fc_)
    t.alloc("d_gamma", e)  # (1,) after the sum to gamma's shape
    t.free("d_gamma_full", "quot")
    tmp = [t.alloc("div_a", fc_), t.alloc("div_b", fc_), t.alloc("neg", fc_)]
    t.alloc("d_denom_full", fc_)  # the peak: -grad * (num / denom) / denom
    t.free(*reversed(tmp))
    t.alloc("d_num", fc_)
    t.alloc("d_denom", col)  # (B, 1, N)
    t.free("d_denom_full", "d_quot", "denom", "num")
    t.alloc("d_v_sum", b * c * e)  # (B, C, 1)
    if ck == 1:  # einsum lowered to mul: (B, C, N, 1) products, then sums
        t.alloc("d_q_num_mul", fc_), t.alloc("d_kv_mul", fc_)
        t.alloc("d_kv", b * ck * c * e)
        t.free("d_kv_mul")
        t.alloc("d_q_num", fk)
        t.free("d_q_num_mul")
    else:
        t.alloc("d_q_num", fk), t.alloc("d_kv", b * ck * c * e)
    t.free("d_num", "kv")
    t.alloc("d_v_kv", fc_), t.alloc("d_k_kv", fk)  # (B, N, C), (B, Ck, N)
    t.free("d_kv", "v", "k_unit")
    t.alloc("d_v", fc_)
    t.free("d_v_sum", "d_v_kv")
    if ck == 1:
        t.alloc("d_k_sum_mul", col), t.alloc("d_q_den", col)
        t.alloc("d_k_sum", b * ck * e)
        t.free("d_k_sum_mul", "d_denom", "k_sum", "q_unit")
    else:
        t.alloc("d_k_sum", b * ck * e), t.alloc("d_q_den", fk)
        t.free("d_denom", "k_sum", "q_unit")
    t.alloc("d_q_unit", fk)
    t.free("d_q_num", "d_q_den")
    t.alloc("d_k_unit", fk)
    t.free("d_k_kv", "d_k_sum")
    sizes = (fk, col, b * n * fm.BOOL_BYTES)
    d_k = _normalise_backward(t, "k_", "d_k_unit", sizes, ck)
    d_q = _normalise_backward(t, "q_", "d_q_unit", sizes, ck)
    acc = None  # d_x: the residual's gradient is the seed itself (no allocation); each conv adds to it
    for p, d, cout in (("v_", "d_v", c), ("k_", d_k, ck), ("q_", d_q, ck)):
        part = t.alloc(p + "d_x", b * n * c * e)
        t.alloc(p + "d_w", c * cout * e), t.alloc(p + "d_b", cout * e)
        t.free(d)
        new = t.alloc(p + "d_x_sum", b * n * c * e)
        t.free(acc, part)
        acc = new
    return t
