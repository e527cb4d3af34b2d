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
    """Candidate peak sets inside `isaprof.targets.blocks.common.attend`, no_grad, its inputs not counted.

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


# ---- one stage's sizes, read by both modes' peak sets ----


def stage_spec(cfg: Config, maps: int, n: int, mask: bool = False, nhwc: bool = False) -> dict:
    """The size dict the stage's peak sets read: one stage of ``cfg``'s block on ``maps`` maps of ``n``
    positions; ``nhwc``: the stage input is laid out channels-last (`memory.is_channels_last`)."""
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, cfg.key_channels, cfg.value_channels)
    kind = "naive" if cfg.impl == "naive" else ("math" if kernel == "materialised" else "flash")
    c = cfg.channels
    return dict(maps=maps, n=n, cin=c, ck=cfg.key_channels, cv=cfg.value_channels, cout=c,
                b=cfg.dtype_bytes, kind=kind, mask=mask, nhwc=nhwc)  # fmt: skip


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
