"""Replay of ``non_local``: theta, phi, g (max-pooled when sub-sampled), the attention, conv_out, BN."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.dense import stage_spec
from isaprof.formulas.non_local import INDEX_BYTES, keys
from tests.formulas.replays.dense import attention_backward, attention_forward
from tests.formulas.replays.trace import Trace


def _pooled(t: Trace, name: str, conv: str, pos: int, ch: int, b: int, pool: bool, train: bool) -> str:
    """``pool(conv)``: max-pool output (M C) and int64 indices (kept for the backward in train)."""
    if not pool:
        return conv
    out = t.alloc(name, pos * ch * b)
    idx = t.alloc(name + "_idx", pos * ch * INDEX_BYTES)
    t.free(*(() if train else (conv, idx)))
    return out


def non_local_peak(cfg: Config, train: bool) -> Trace:
    """Events of ``non_local`` under the measurement protocol; ``.peak`` is the peak in bytes.

    Forward: theta, phi (+ pool), g (+ pool) convs, the attention (`dense.attention_forward`), conv_out,
    BN, residual add. With naive / math attention the peak is at the (B, N, M) logits: two of them in
    inference (logits, scaled logits), three in train (softmax, d_attn, d_softmax), beside the saved
    activations; the residual passes the seed itself to x, so x's gradient is summed out of place 3 times.
    """
    b, c, ck, cv, nb = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, m, pool = cfg.height * cfg.width, keys(cfg), bool(cfg.option("sub_sample", False))
    s = stage_spec(cfg, b, n)
    s.update(m=m, qk_owned=True)
    t = Trace()
    theta = t.alloc("theta", b * n * ck * nb)
    phi_conv = t.alloc("phi_conv", b * n * ck * nb)
    s["q"], s["k"] = theta, _pooled(t, "phi", phi_conv, b * m, ck, nb, pool, train)
    g_conv = t.alloc("g_conv", b * n * cv * nb)
    s["v"] = _pooled(t, "g", g_conv, b * m, cv, nb, pool, train)
    y = attention_forward(t, "", s, train)
    conv = t.alloc("out_conv", b * n * c * nb)
    bn = t.alloc("bn", b * n * c * nb)
    if train:
        t.alloc("mean", c * fm.acc_bytes(nb)), t.alloc("invstd", c * fm.acc_bytes(nb))
    else:
        t.free(conv)
    t.alloc("result", b * n * c * nb)  # x + BN(conv_out(y))
    t.free(bn)
    if not train:
        return t
    if s["kind"] != "naive":  # the forward's locals die; sdpa saved its copies (math: scaled copies)
        for name, saved in ((theta, s["sdpa_q"]), (s["k"], s["sdpa_k"]), (s["v"], s["sdpa_v"])):
            dies = saved != name or (s["kind"] == "math" and name != s["v"])
            t.free(name if dies else None)  # a local only: the code may drop it after the attention
    t.alloc("seed", b * n * c * nb)  # ones_like(out), held by the caller; also x's first gradient part
    gb = t.alloc("d_bn", b * n * c * nb)
    t.alloc("d_bn_w", c * nb), t.alloc("d_bn_b", c * nb)
    t.free(conv, "mean", "invstd")
    d_y = t.alloc("d_out_conv", b * n * cv * nb)
    t.alloc("d_out_conv_w", cv * c * nb)
    t.free(y if y in t.live and s["kind"] != "flash" else None, gb)
    dq, dk, dv = attention_backward(t, "", s, d_y)
    acc = None
    for name, conv_out, ck_, d in (
        ("g", g_conv, cv, dv),
        ("phi", phi_conv, ck, dk),
        ("theta", theta, ck, dq),
    ):
        if pool and name != "theta":
            dp = t.alloc(f"d_{name}_pool", b * n * ck_ * nb)
            t.free(conv_out, name + "_idx", d)
            d = dp
        gi = t.alloc(f"d_{name}_in", b * n * c * nb)
        t.alloc(f"d_{name}_w", c * ck_ * nb), t.alloc(f"d_{name}_b", ck_ * nb)
        t.free(d)
        new = t.alloc(f"d_x_{name}", b * n * c * nb)  # seed + ... summed out of place
        t.free(acc, gi)
        acc = new
    return t
