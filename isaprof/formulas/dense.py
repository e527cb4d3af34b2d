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
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula


def stage_params(cin: int, ck: int, cv: int, cout: int) -> int:
    """Parameters of one stage: query and key (2 x conv + BN each), value conv, out conv + BN; no biases."""
    key = (
        fc.conv1x1_params(cin, ck, bias=False) + fc.conv1x1_params(ck, ck, bias=False) + 2 * fc.bn_params(ck)
    )
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
    inference, train_peak = dense_inference_peak(cfg), dense_train_peak(cfg)
    return Cost(
        params=stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=stage_elementwise("", cfg.batch, n, ck, c),
        peak_bytes={"inference": inference.bytes, "train": train_peak.bytes},
        padded=(cfg.height, cfg.width),
        peak_tolerance=fp.tolerances(inference=fp.tolerance(inference), train=fp.tolerance(train_peak)),
    )


# ---- peak bytes, inference: the peak set (see isaprof/formulas/peak.py) ----


def attention_moments(s: dict) -> list[fp.Moment]:
    """Candidate peak sets inside `isaprof.blocks.common.attend`, no_grad, its inputs not counted.

    naive: matmul, out-of-place scale (+ ``masked_fill`` with ``~mask``), softmax, matmul: two (maps, N, M)
    buffers at once, then the softmax beside the output. sdpa: q, k, v copied contiguous where the
    transposed views need it (and the additive mask bias), then flash: output + logsumexp, no N M term;
    math: scaled q, scaled k and the logits, then two (N, M) buffers beside scaled q, then softmax + output.
    """
    maps, n, ck, cv, b, kind, mask = (s[k] for k in ("maps", "n", "ck", "cv", "b", "kind", "mask"))
    m, nhwc = s.get("m", n), s.get("nhwc", False)
    logits, out = maps * n * m * b, maps * n * cv * b
    if kind == "naive":
        if mask:
            first = fp.moment(
                "attention: masked_fill",
                scaled_logits=logits,
                not_mask=maps * m * fm.BOOL_BYTES,
                masked_logits=logits,
            )
        else:
            first = fp.moment("attention: out-of-place scale", logits=logits, scaled_logits=logits)
        return [first, fp.moment("attention: A V", softmax=logits, attention_output=out)]
    bias = {"mask bias": maps * m * b} if mask else {}
    copies = {
        "q copy": maps * n * ck * b if fm.transpose_copies(ck, n) and not nhwc else 0,
        "v copy": maps * m * cv * b if fm.transpose_copies(cv, m) and not nhwc else 0,
        "k copy": maps * m * ck * b if fm.transpose_copies(ck, m) and not nhwc else 0,
    }
    copies = {k: v for k, v in copies.items() if v}
    found = []
    if mask:  # mask_bias: zeros, ~mask, masked_fill, before the copies
        found.append(
            fp.moment(
                "attention: mask bias",
                zeros=maps * m * b,
                not_mask=maps * m * fm.BOOL_BYTES,
                mask_bias=maps * m * b,
            )
        )
    if kind == "flash":
        lse = maps * n * fm.acc_bytes(b)
        return [
            *found,
            fp.Moment(
                "attention: flash kernel", {**bias, **copies, "attention output": out, "logsumexp": lse}
            ),
        ]
    qs, ks = maps * n * ck * b, maps * m * ck * b
    held = {**bias, **copies, "scaled q": qs}
    two = ("logits", "biased logits") if mask else ("logits", "softmax")
    return [
        *found,
        fp.Moment("attention: math kernel Q K^T", {**held, "scaled k": ks, "logits": logits}),
        fp.Moment("attention: math kernel logits", {**held, two[0]: logits, two[1]: logits}),
        fp.Moment("attention: math kernel A V", {**held, "softmax": logits, "attention output": out}),
    ]


def stage_inference_moments(s: dict) -> list[fp.Moment]:
    """Candidate peak sets of one `SelfAttention2D` forward under no_grad, its input not counted.

    Value, query, key (the stage's locals) live from their projection to the stage's return: beside the last
    key layer's conv and BN (projections); beside the attention; beside the contiguous context copy and the
    output layer's conv and BN (there they are ``movable``: see `peak.LOCALS`). Every other moment holds a
    subset of one of these (a ReLU or BN output replaces the input it was computed from).
    """
    pos, ck, cv, cout, b = s["maps"] * s["n"], s["ck"], s["cv"], s["cout"], s["b"]
    value, qk = pos * cv * b, pos * ck * b
    local = {"value": value, "query": qk, "key": qk}
    movable = tuple(local)
    found = [
        fp.moment(
            "projections: last key layer", value=value, query=qk, key_layer_1=qk, key_conv=qk, key_bn=qk
        )
    ]
    found += [m.plus(local) for m in attention_moments(s)]
    if fm.transpose_copies(s["n"], cv):
        found.append(
            fp.Moment("context copy", {**local, "attention output": value, "context": value}, movable)
        )
    found.append(
        fp.Moment(
            "output layer BN",
            {**local, "context": value, "out conv": pos * cout * b, "out bn": pos * cout * b},
            movable,
        )
    )
    return found


def dense_inference_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``dense`` inference: the stage's largest moment (`stage_inference_moments`).

    With naive attention and N large it is value, query, key (B N (Cv + 2 Ck) b) plus the (B, N, N) logits
    and their out-of-place scaled copy (2 B N^2 b), because the scale runs while the logits are alive and
    nothing else comes near two N^2 buffers; sdpa math adds the contiguous q/k/v copies and scaled q; flash
    (no N^2 buffer) peaks at its output + logsumexp or at the output layer's conv + BN.
    """
    return fp.peak_set(stage_inference_moments(stage_spec(cfg, cfg.batch, cfg.height * cfg.width)))


# ---- the stage's allocation events: the replay the peak sets are cross-checked against (tests) ----


def _layer_forward(t: fm.Trace, p: str, pos: int, cout: int, b: int, train: bool) -> str:
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


def _layer_backward(
    t: fm.Trace, p: str, grad: str, free: tuple, pos: int, cin: int, cout: int, b: int
) -> str:
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


def _attention_forward(t: fm.Trace, p: str, s: dict, train: bool) -> str:
    """softmax(Q K^T / sqrt(Ck) [+ mask]) V of `isaprof.blocks.common.attend`; returns the output's name.

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


def _attention_backward(t: fm.Trace, p: str, s: dict, grad: str) -> tuple[str, str, str]:
    """Backward of `_attention_forward` given ``grad`` (maps, N, Cv); returns (dq, dk, dv) names."""
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


def stage_forward(t: fm.Trace, p: str, s: dict, train: bool) -> str:
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
    out = _attention_forward(t, p, s, train)
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


def stage_backward(t: fm.Trace, p: str, s: dict, grad: str, free: tuple) -> tuple[str, ...]:
    """Events of the stage's backward given ``grad`` of its output; ``free``: what dies after the first op
    (the gradient unless the caller holds it, the output unless the caller holds it).

    Returns the input gradient's parts in arrival order (key, query, value paths): the caller sums them
    (`memory.grad_sum`) and frees the stage input, which the three input convs saved."""
    pos, ck, cv, cin, b = s["maps"] * s["n"], s["ck"], s["cv"], s["cin"], s["b"]
    d_ctx = _layer_backward(t, p + "w_", grad, free, pos, cv, s["cout"], b)
    t.free(s["ctx"] if s["ctx"] == p + "context" else None)
    dq, dk, dv = _attention_backward(t, p, s, d_ctx)
    parts = []
    for proj, d in (("k", dk), ("q", dq)):
        d1 = _layer_backward(t, f"{p}{proj}2_", d, (d, s[proj]), pos, ck, ck, b)
        parts.append(_layer_backward(t, f"{p}{proj}1_", d1, (d1, f"{p}{proj}1_relu"), pos, cin, ck, b))
        if len(parts) == 2:
            parts = [fm.grad_sum(t, p + "d_x", parts, pos * cin * b)]
    d_v = t.alloc(p + "value_d_in", pos * cin * b)
    t.alloc(p + "value_d_w", cin * cv * b)
    t.free(dv)
    return (*parts, d_v)


def stage_spec(cfg: Config, maps: int, n: int, mask: bool = False, nhwc: bool = False) -> dict:
    """The size dict the stage events read: one stage of ``cfg``'s block on ``maps`` maps of ``n``
    positions; ``nhwc``: the stage input is laid out channels-last (`memory.is_channels_last`)."""
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, cfg.key_channels, cfg.value_channels)
    kind = "naive" if cfg.impl == "naive" else ("math" if kernel == "materialised" else "flash")
    c = cfg.channels
    return dict(maps=maps, n=n, cin=c, ck=cfg.key_channels, cv=cfg.value_channels, cout=c,
                b=cfg.dtype_bytes, kind=kind, mask=mask, nhwc=nhwc)  # fmt: skip


def dense_peak(cfg: Config, train: bool) -> fm.Trace:
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
    t = fm.Trace()
    s = stage_spec(cfg, cfg.batch, cfg.height * cfg.width)
    y = stage_forward(t, "", s, train)
    if train:
        seed = t.alloc("seed", cfg.batch * cfg.height * cfg.width * cfg.channels * cfg.dtype_bytes)
        parts = stage_backward(t, "", s, seed, ())  # the seed and the output live on to the end
        fm.grad_sum(t, "d_x", parts, s["maps"] * s["n"] * s["cin"] * s["b"])
    del y
    return t


# ---- peak bytes, train: the peak set (see isaprof/formulas/train_sets.py) ----


def dense_train_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``dense`` train: the largest of the stage's candidates (`train_sets.stage_forward`,
    `train_sets.stage_backward`, the input gradient's last sum), beside the seed in the backward.

    With naive / math attention and N large it is the softmax backward: softmax, d_attn and d_softmax
    (3 B N^2 b) beside the saved activations (4 projection layers, value or its copy, context, output layer),
    the seed, d_v and the output layer's weight gradients; flash (no N^2 buffer) peaks at the output
    layer's BN backward.
    """
    s = stage_spec(cfg, cfg.batch, cfg.height * cfg.width)
    found, live = ts.stage_forward("", s, {})
    seed = {"seed": s["maps"] * s["n"] * s["cout"] * s["b"]}  # ones_like(out): held to the end, like out
    back, live, parts = ts.stage_backward("", s, {**live, **seed}, "seed", ())
    last, _ = ts.grad_sum("d_x", live, parts, s["maps"] * s["n"] * s["cin"] * s["b"])
    return fp.peak_set([*found, *back, *last])
