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
Peak bytes depend on ``groups`` in inference: one chunk of ceil(L / G) query rows materialises a
(B, ceil(L / G), C, H, W) weighted map (twice: before and after the gate). In training autograd keeps every
chunk's map; the train peak is the peak set `caa_train_peak_set` (exact against the tracker).
"""

from __future__ import annotations

import math

from isaprof.formulas import common as fc
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
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
    peak = {"inference": peak_inference(cfg), "train": peak_train(cfg)}
    return fc.cost_train_3x(params, macs, elementwise, peak, (h, w))


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
    """Peak bytes of forward + backward: the peak set `caa_train_peak_set` (exact against the tracker)."""
    return caa_train_peak_set(cfg).bytes


# ---- train peak: the peak set (see isaprof/formulas/train_sets.py) ----


def caa_train_peak_set(cfg: Config) -> fp.Moment:
    """Peak set of ``channelized_axial`` train: the largest of

    * forward: each ConvBNReLU projection's ReLU beside its BN output; each affinity's softmax beside its
      logits (and ``matmul``'s operand copies); per chunk of each stage, the sigmoid gate beside its logit
      and the gated map beside the chunk's sum; each stage's concatenation of the chunks' outputs;
    * backward, beside the seed, the output and what is still saved (every chunk's weighted map:
      B N C (H + W) in all): per chunk, grad * m and grad * gate; the sigmoid's and each Linear layer's
      gradients (and the MLP weight gradients' sums across chunks); the mean's; d_m; the value / affinity
      products and the chunk's d_v with its sum into v's gradient; the affinities' gradient cat; each
      softmax backward and q's two gradients; each projection's backward and x's gradient sums.

    The peak is usually in the backward of a chunk, on top of every chunk's saved weighted map.
    """
    b, c, ck, h, w, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width, cfg.dtype_bytes
    n, pos = h * w, b * h * w
    d = dict(b=b, c=c, ck=ck, e=e, n=n, pos=pos, hid=max(1, c // 4), layers=cfg.option("mlp_layers", 5),
             groups=cfg.option("groups", 16))  # fmt: skip
    live: ts.Live = {}
    found: list[fp.Moment] = []
    copies: dict[str, str | None] = {}
    for br, lead, rows, lead_s, rows_s in (("col", w, h, 1, w), ("row", h, w, w, 1)):
        more, live = ts.layer_forward(br + " ", live, pos, ck, e)
        found += more
        # operands (B, lead, rows, Ck) and (B, lead, Ck, rows) of the contiguous (B, Ck, H, W) map
        for name, shape, strides, new in (
            ("a", (b, lead, rows, ck), (ck * n, lead_s, rows_s, n), (b * lead, rows, ck)),
            ("b", (b, lead, ck, rows), (ck * n, lead_s, n, rows_s), (b * lead, ck, rows)),
        ):
            copies[br + name] = f"{br} copy {name}" if fm.view_copies(shape, strides, new) else None
            if copies[br + name]:
                live[f"{br} copy {name}"] = pos * ck * e
        area = b * lead * rows * rows * e
        found.append(ts.at(br + " affinity softmax", live, **{br + " logits": area, br + " attn": area}))
        live[br + " attn"] = area
    more, live = ts.layer_forward("v ", live, pos, c, e)
    found += more
    sizes = {}
    for p, length, per in (("col", h, w), ("row", w, h)):
        more, live, sizes[p] = _stage_forward_set(p, live, d, length, per)
        found += more
    live["seed"] = pos * c * e  # ones_like(out), held by the caller (as is the output)
    acc: dict[str, str] = {}
    more, live, d_row = _stage_backward_set("row", live, d, sizes["row"], None, "col out", acc)
    found += more
    more, live, d_col = _stage_backward_set("col", live, d, sizes["col"], acc["rowv"], None, acc)
    found += more
    xacc: dict[str, str] = {}
    more, live = ts.layer_backward("v ", live, (acc["colv"], "v relu"), pos, c, c, e, bias=True)
    found += more
    more, live = ts.accumulate("v", live, xacc, [("x", "v d_in", pos * c * e)])
    found += more
    for br, d_attn, area in (("row", d_row, b * h * w * w * e), ("col", d_col, b * w * h * h * e)):
        found.append(ts.at(br + " softmax backward", live, **{br + " d_sim": area}))
        live = {**ts.without(live, d_attn, br + " attn"), br + " d_sim": area}
        found.append(
            ts.at(br + " affinity backward", live, **{br + " d_qa": pos * ck * e, br + " d_qb": pos * ck * e})
        )
        live = ts.without(live, br + " d_sim", copies[br + "a"], copies[br + "b"])
        live.update({br + " d_qa": pos * ck * e, br + " d_qb": pos * ck * e})
        found.append(ts.at(br + " d_q", live, **{br + " d_q": pos * ck * e}))
        live = {**ts.without(live, br + " d_qa", br + " d_qb"), br + " d_q": pos * ck * e}
        more, live = ts.layer_backward(br + " ", live, (br + " d_q", br + " relu"), pos, c, ck, e, bias=True)
        found += more
        more, live = ts.accumulate(br, live, xacc, [("x", br + " d_in", pos * c * e)])
        found += more
    return fp.peak_set(found)


def _stage_forward_set(
    p: str, live: ts.Live, d: dict, length: int, per: int
) -> tuple[list, ts.Live, list[int]]:
    """Candidates of `ChannelizedAxial.aggregate` in train (`caa_train_peak_set`); output ``p + " out"``."""
    b, c, hid, n, e, layers = d["b"], d["c"], d["hid"], d["n"], d["e"], d["layers"]
    sizes, found, outs = chunks(length, d["groups"]), [], []
    for j, g in enumerate(sizes):
        q = f"{p} chunk {j} "
        live = {**live, q + "m": b * g * c * n * e, q + "mean": b * g * c * e}
        for i in range(layers):  # mm, leaky ReLU: both saved
            live.update({f"{q}h{i}": b * g * hid * e, f"{q}a{i}": b * g * hid * e})
        found.append(ts.at(q + "gate", live, **{q + "logit": b * g * c * e, q + "gate": b * g * c * e}))
        live[q + "gate"] = b * g * c * e
        found.append(
            ts.at(q + "sum", live, **{q + "gated": b * g * c * n * e, q + "sum": b * g * c * per * e})
        )
        live[q + "sum"] = b * g * c * per * e
        outs.append(q + "sum")
    if len(sizes) == 1:
        return found, {**ts.without(live, outs[0]), p + " out": live[outs[0]]}, sizes
    found.append(ts.at(p + " cat", live, **{p + " out": b * length * c * per * e}))
    return found, {**ts.without(live, *outs), p + " out": b * length * c * per * e}, sizes


def _stage_backward_set(
    p: str, live: ts.Live, d: dict, sizes: list[int], grad: str | None, v: str | None, acc: dict
) -> tuple[list, ts.Live, str]:
    """Candidates of one stage's backward (chunks last to first); returns them, the live set and the name
    of the affinity's gradient."""
    b, c, hid, n, e, layers = d["b"], d["c"], d["hid"], d["n"], d["e"], d["layers"]
    found, d_attn = [], []
    for j in reversed(range(len(sizes))):
        g, q, last = sizes[j], f"{p} chunk {j} ", j == 0
        big, small = b * g * c * n * e, b * g * c * e
        found.append(ts.at(q + "backward: gate product", live, **{q + "d gate full": big, q + "d m gate": big,
                           q + "d gate": small}))  # fmt: skip
        live = {**ts.without(live, grad if last else None, q + "m"), q + "d m gate": big, q + "d gate": small}
        found.append(ts.at(q + "backward: sigmoid", live, **{q + "d logit": small}))
        live = {**ts.without(live, q + "d gate", q + "gate"), q + "d logit": small}
        din, ins = [c] + [hid] * layers, [q + "mean"] + [f"{q}a{i}" for i in range(layers)]
        gin, width = q + "d logit", c
        for i in reversed(range(layers + 1)):  # the Linear layers, last first
            if i < layers:  # its leaky ReLU
                found.append(ts.at(f"{q}backward: leaky ReLU {i}", live, **{f"{q}d h{i}": b * g * hid * e}))
                live = {**ts.without(live, gin, f"{q}h{i}"), f"{q}d h{i}": b * g * hid * e}
                gin = f"{q}d h{i}"
            new = {f"{q}d w{i}": din[i] * width * e, f"{q}d in{i}": b * g * din[i] * e}
            found.append(ts.at(f"{q}backward: linear {i}", live, **new))
            live = {**ts.without(live, gin, ins[i]), **new}
            more, live = ts.accumulate(q, live, acc, [(f"{p}w{i}", f"{q}d w{i}", din[i] * width * e)])
            found += more
            gin, width = f"{q}d in{i}", hid
        found.append(ts.at(q + "backward: mean", live, **{q + "d mean": big}))
        live = {**ts.without(live, gin), q + "d mean": big}
        found.append(ts.at(q + "backward: d_m", live, **{q + "d m": big}))
        live = {**ts.without(live, q + "d m gate", q + "d mean"), q + "d m": big}
        prod = {q + "d mv": big, q + "d ma": big, q + "d a": b * g * n * e}
        found.append(ts.at(q + "backward: value / affinity products", live, **prod))
        live = {**live, q + "d mv": big, q + "d a": b * g * n * e}
        d_attn.append(q + "d a")
        dv = q + "d mv"
        if g > 1:  # summed over the chunk's queries
            found.append(ts.at(q + "backward: d_v", live, **{q + "d v": b * c * n * e}))
            live = {**ts.without(live, q + "d mv"), q + "d v": b * c * n * e}
            dv = q + "d v"
        live = ts.without(live, q + "d m", v if last else None)
        more, live = ts.accumulate(q, live, acc, [(p + "v", dv, b * c * n * e)])
        found += more
    if len(sizes) == 1:
        return found, live, d_attn[0]
    total = b * sum(sizes) * n * e
    found.append(ts.at(p + " affinity gradient cat", live, **{p + " d attn": total}))
    return found, {**ts.without(live, *d_attn), p + " d attn": total}, p + " d attn"
