"""Replay of ``dense`` (`SelfAttention2D`): the projection layers, the attention kernels (naive, sdpa math,
sdpa flash) and one stage's forward and backward, which isa and axial run per map group."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.dense import stage_spec
from tests.formulas.replays.trace import Trace, grad_sum


def _layer_forward(t: Trace, p: str, pos: int, cout: int, b: int, train: bool) -> str:
    """conv (no bias) + BN + ReLU over ``pos`` positions; returns the ReLU output's name."""
    conv = t.alloc(p + "conv", pos * cout * b)  # (P, Cout)
    bn = t.alloc(p + "bn", pos * cout * b)
    if train:
        t.alloc(p + "mean", cout * fm.acc_bytes(b)), t.alloc(p + "invstd", cout * fm.acc_bytes(b))
    else:
        t.free(conv)
    out = t.alloc(p + "relu", pos * cout * b)
    t.free(bn)
    return out


def _layer_backward(t: Trace, p: str, grad: str, free: tuple, pos: int, cin: int, cout: int, b: int) -> str:
    """Backward of `_layer_forward` given ``grad``; ``free``: what dies after the ReLU backward (the
    incoming gradient, the saved ReLU output). Returns the input gradient's name (the saved input is
    the caller's to free)."""
    tb = t.alloc(p + "d_relu", pos * cout * b)
    t.free(*free)
    gb = t.alloc(p + "d_bn", pos * cout * b)
    t.alloc(p + "d_bn_w", cout * b), t.alloc(p + "d_bn_b", cout * b)
    t.free(p + "conv", p + "mean", p + "invstd", tb)
    gi = t.alloc(p + "d_in", pos * cin * b)
    t.alloc(p + "d_conv_w", cin * cout * b)
    t.free(gb)
    return gi


def attention_forward(t: Trace, p: str, s: dict, train: bool) -> str:
    """softmax(Q K^T / sqrt(Ck) [+ mask]) V of `isaprof.targets.blocks.common.attend`; returns the
    output's name.

    ``s``: maps, n, ck, cv, b, kind ("naive" | "math" | "flash"), mask (bool), q, k, v (input names).
    """
    maps, n, ck, cv, b, kind, mask = (s[k] for k in ("maps", "n", "ck", "cv", "b", "kind", "mask"))
    m = s.get("m", n)  # keys
    logits = maps * n * m * b  # (maps, N, M)
    if kind == "naive":
        sim = t.alloc(p + "sim", logits)
        scaled = t.alloc(p + "scaled", logits)
        t.free(sim)
        if mask:
            t.alloc(p + "not_mask", maps * m * fm.BOOL_BYTES)  # ~mask, (maps, 1, N); saved in train
            filled = t.alloc(p + "filled", logits)
            t.free(scaled, None if train else p + "not_mask")
            scaled = filled
        t.alloc(p + "softmax", logits)
        t.free(scaled)
        out = t.alloc(p + "out", maps * n * cv * b)  # (maps, N, Cv)
        t.free(None if train else p + "softmax")
        return out
    if mask:  # mask_bias: zeros, ~mask, masked_fill -> (maps, 1, N) additive bias
        zeros = t.alloc(p + "bias_zeros", maps * m * b)
        nm = t.alloc(p + "bias_not", maps * m * fm.BOOL_BYTES)
        t.alloc(p + "bias", maps * m * b)
        t.free(zeros, nm)
    nhwc = s.get("nhwc", False)  # projections written NHWC: their (maps, N, C) views are contiguous
    cq = t.maybe(p + "clone_q", maps * n * ck * b, fm.transpose_copies(ck, n) and not nhwc)
    cvv = t.maybe(p + "clone_v", maps * m * cv * b, fm.transpose_copies(cv, m) and not nhwc)
    ckk = t.maybe(p + "clone_k", maps * m * ck * b, fm.transpose_copies(ck, m) and not nhwc)
    s["sdpa_q"], s["sdpa_k"] = cq or s["q"], ckk or s["k"]
    s["sdpa_v"] = cvv or s["v"]
    bias = p + "bias" if mask else None
    if kind == "flash":
        out = t.alloc(p + "out", maps * n * cv * b)
        lse = t.alloc(p + "lse", maps * n * fm.acc_bytes(b))  # logsumexp (maps, 1, N)
        if not train:
            t.free(lse, bias, cq, cvv, ckk)
        return out
    t.alloc(p + "q_scaled", maps * n * ck * b)  # math kernel: q, k^T each times sqrt(scale)
    ks = t.alloc(p + "k_scaled", maps * m * ck * b)
    sim = t.alloc(p + "sim", logits)
    t.free(None if train else ks)
    if mask:
        added = t.alloc(p + "biased", logits)
        t.free(sim)
        sim = added
    t.alloc(p + "softmax", logits)
    t.free(sim)
    out = t.alloc(p + "out", maps * n * cv * b)
    t.free(bias, cq, ckk, *(() if train else (p + "q_scaled", p + "softmax", cvv)))
    return out


def attention_backward(t: Trace, p: str, s: dict, grad: str) -> tuple[str, str, str]:
    """Backward of `attention_forward` given ``grad`` (maps, N, Cv); returns (dq, dk, dv) names."""
    maps, n, ck, cv, b, kind, mask = (s[k] for k in ("maps", "n", "ck", "cv", "b", "kind", "mask"))
    m, owned = s.get("m", n), s.get("qk_owned", False)  # owned: q, k held by the attention alone
    logits = maps * n * m * b
    if kind == "flash":
        dq = t.alloc(p + "d_q", maps * n * ck * b)
        dk = t.alloc(p + "d_k", maps * m * ck * b)
        dv = t.alloc(p + "d_v", maps * m * cv * b)
        clones = [t_ for t_ in (p + "clone_q", p + "clone_k", p + "clone_v") if t_ in t.live]
        t.free(*clones, p + "out", p + "lse", p + "bias" if mask else None, grad)
        if s["sdpa_v"] == s["v"]:
            t.free(s["v"])
        for name in ("q", "k"):
            t.free(s[name] if owned and s["sdpa_" + name] == s[name] else None)
        return dq, dk, dv
    dv = t.alloc(p + "d_v", maps * m * cv * b)
    da = t.alloc(p + "d_attn", logits)
    t.free(s["sdpa_v"] if kind == "math" else s["v"], grad)
    dsm = t.alloc(p + "d_softmax", logits)
    t.free(p + "softmax", da)
    if kind == "math":
        dks = t.alloc(p + "d_k_scaled", maps * m * ck * b)
        dqs = t.alloc(p + "d_q_scaled", maps * n * ck * b)
        t.free(p + "q_scaled", p + "k_scaled", dsm)
        dk = t.alloc(p + "d_k", maps * m * ck * b)
        t.free(dks)
        dq = t.alloc(p + "d_q", maps * n * ck * b)
        t.free(dqs)
        return dq, dk, dv
    if mask:
        dm = t.alloc(p + "d_filled", logits)
        t.free(p + "not_mask", dsm)
        dsm = dm
    dscaled = t.alloc(p + "d_scaled", logits)
    t.free(dsm)
    dk = t.alloc(p + "d_k", maps * m * ck * b)
    dq = t.alloc(p + "d_q", maps * n * ck * b)
    t.free(dscaled, *((s["q"], s["k"]) if owned else ()))
    return dq, dk, dv


def stage_forward(t: Trace, p: str, s: dict, train: bool) -> str:
    """Events of `SelfAttention2D.forward` on ``s["maps"]`` maps of N positions; returns the output name.

    ``s`` also holds cin, cout; the stage input is owned by the caller. In inference every local (value,
    query, key, context) dies when the stage returns; in train what autograd saves stays live.
    """
    pos, ck, cv, b = s["maps"] * s["n"], s["ck"], s["cv"], s["b"]
    s["v"] = t.alloc(p + "value", pos * cv * b)
    for proj in ("q", "k"):
        r1 = _layer_forward(t, f"{p}{proj}1_", pos, ck, b, train)
        s[proj] = _layer_forward(t, f"{p}{proj}2_", pos, ck, b, train)
        t.free(None if train else r1)
    out = attention_forward(t, p, s, train)
    ctx = t.maybe(p + "context", pos * cv * b, fm.transpose_copies(s["n"], cv))  # (maps, Cv, N)
    s["ctx"] = ctx or out
    if ctx is not None and (not train or s["kind"] != "flash"):
        t.free(out)  # flash saves its output; bmm's do not
    y = _layer_forward(t, p + "w_", pos, s["cout"], b, train)
    if not train:
        t.free(s["v"], s["q"], s["k"], s["ctx"])
    elif s["kind"] != "naive" and s["sdpa_v"] != s["v"]:
        t.free(s["v"])  # sdpa saved its contiguous copy instead
    return y


def stage_backward(t: Trace, p: str, s: dict, grad: str, free: tuple) -> tuple[str, ...]:
    """Events of the stage's backward given ``grad`` of its output; ``free``: what dies after the first op
    (the gradient unless the caller holds it, the output unless the caller holds it).

    Returns the input gradient's parts in arrival order (key, query, value paths): the caller sums them
    (`trace.grad_sum`) and frees the stage input, which the three input convs saved."""
    pos, ck, cv, cin, b = s["maps"] * s["n"], s["ck"], s["cv"], s["cin"], s["b"]
    d_ctx = _layer_backward(t, p + "w_", grad, free, pos, cv, s["cout"], b)
    t.free(s["ctx"] if s["ctx"] == p + "context" else None)
    dq, dk, dv = attention_backward(t, p, s, d_ctx)
    parts = []
    for proj, d in (("k", dk), ("q", dq)):
        d1 = _layer_backward(t, f"{p}{proj}2_", d, (d, s[proj]), pos, ck, ck, b)
        parts.append(_layer_backward(t, f"{p}{proj}1_", d1, (d1, f"{p}{proj}1_relu"), pos, cin, ck, b))
        if len(parts) == 2:
            parts = [grad_sum(t, p + "d_x", parts, pos * cin * b)]
    d_v = t.alloc(p + "value_d_in", pos * cin * b)
    t.alloc(p + "value_d_w", cin * cv * b)
    t.free(dv)
    return (*parts, d_v)


def dense_peak(cfg: Config, train: bool) -> Trace:
    """Events of ``dense`` under the measurement protocol; ``.peak`` is the peak in bytes (exact against
    the storage tracker, every impl, both modes).

    Closed form when the (B, N, N) logits dominate (b = dtype bytes, N = H W):
    * naive inference, at the out-of-place scale: value, query, key + logits and scaled logits,
      B N (Cv + 2 Ck) b + 2 B N^2 b; sdpa math: + the q/k/v copies and scaled q, at the softmax;
    * naive / math train, at the softmax backward: the softmax output, d_attn and d_softmax (3 B N^2 b)
      on top of the saved activations (``Trace.live_at_peak`` lists them);
    * flash: no N^2 term; the peak is at the out BN (inference) or its backward (train).
    Leaves out: scratch memory inside one kernel (the tracker cannot see it either).
    """
    t = Trace()
    s = stage_spec(cfg, cfg.batch, cfg.height * cfg.width)
    y = stage_forward(t, "", s, train)
    if train:
        seed = t.alloc("seed", cfg.batch * cfg.height * cfg.width * cfg.channels * cfg.dtype_bytes)
        parts = stage_backward(t, "", s, seed, ())  # the seed and the output live on to the end
        grad_sum(t, "d_x", parts, s["maps"] * s["n"] * s["cin"] * s["b"])
    del y
    return t
