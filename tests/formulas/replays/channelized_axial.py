"""Replay of ``channelized_axial`` in train: projections, affinities, the gated column and row stages."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.channelized_axial import chunks
from tests.formulas.replays.trace import Trace, accumulate


def _proj_forward(t: Trace, p: str, pos: int, cout: int, e: int) -> str:
    """ConvBNReLU in train: conv, BN (output, save_mean, save_invstd), ReLU; returns the ReLU output."""
    t.alloc(p + "conv", pos * cout * e)
    t.alloc(p + "bn", pos * cout * e)
    t.alloc(p + "mean", cout * fm.acc_bytes(e)), t.alloc(p + "invstd", cout * fm.acc_bytes(e))
    out = t.alloc(p + "relu", pos * cout * e)
    t.free(p + "bn")
    return out


def _proj_backward(t: Trace, p: str, grad: str, d: dict, cout: int, acc: dict) -> None:
    """Backward of `_proj_forward` given ``grad``; x's gradient goes to ``acc["x"]``."""
    pos, c, e = d["pos"], d["c"], d["e"]
    t.alloc(p + "d_relu", pos * cout * e)
    t.free(grad, p + "relu")
    t.alloc(p + "d_bn", pos * cout * e), t.alloc(p + "d_bn_w", cout * e), t.alloc(p + "d_bn_b", cout * e)
    t.free(p + "d_relu", p + "conv", p + "mean", p + "invstd")
    dx = t.alloc(p + "d_x", pos * c * e)
    t.alloc(p + "d_w", c * cout * e), t.alloc(p + "d_b", cout * e)
    t.free(p + "d_bn")
    accumulate(t, acc, [("x", dx, pos * c * e)])


def _stage_forward(t: Trace, p: str, d: dict, length: int, per: int) -> tuple[str, list[int]]:
    """`ChannelizedAxial.aggregate` in train over ``length`` queries (output ``per`` wide); returns the
    output's name and the chunk sizes. Saved per chunk: the weighted map m, the MLP's input (the mean), its
    hidden pre- and post-activations, the sigmoid gate."""
    b, c, hid, n, e, layers = d["b"], d["c"], d["hid"], d["n"], d["e"], d["layers"]
    sizes = chunks(length, d["groups"])
    outs = []
    for j, g in enumerate(sizes):
        q = f"{p}{j}_"
        t.alloc(q + "m", b * g * c * n * e)  # (B, g, C, H, W)
        t.alloc(q + "mean", b * g * c * e)
        for i in range(layers):
            t.alloc(f"{q}h{i}", b * g * hid * e), t.alloc(f"{q}a{i}", b * g * hid * e)  # mm, leaky ReLU
        t.alloc(q + "logit", b * g * c * e)
        t.alloc(q + "gate", b * g * c * e)  # sigmoid (saved)
        t.free(q + "logit")
        t.alloc(q + "gated", b * g * c * n * e)
        outs.append(t.alloc(q + "sum", b * g * c * per * e))  # (B, g, C, W or H)
        t.free(q + "gated")
    if len(sizes) == 1:
        return outs[0], sizes
    out = t.alloc(p + "cat", b * length * c * per * e)
    t.free(*outs)
    return out, sizes


def _stage_backward(t: Trace, p: str, d: dict, sizes: list[int], grad: str | None, v: str | None) -> str:
    """Backward of `_stage_forward`, chunks last to first; ``grad``: the output's gradient buffer (``None``:
    the caller's seed), ``v``: the value map if this stage's mul's are its last holders. Gate MLP weight
    gradients and v's gradient are summed across chunks (`trace.accumulate`). Returns the name of the
    affinity's gradient (split's backward: a cat of the chunks' unless there is one chunk)."""
    b, c, hid, n, e, layers = d["b"], d["c"], d["hid"], d["n"], d["e"], d["layers"]
    acc: dict = d["acc"]
    d_attn = []
    for j in reversed(range(len(sizes))):
        g, q, last = sizes[j], f"{p}{j}_", j == 0
        big, small = b * g * c * n * e, b * g * c * e
        t.alloc(q + "d_gate_full", big), t.alloc(q + "d_m_gate", big)  # grad * m, grad * gate
        t.alloc(q + "d_gate", small)
        t.free(q + "d_gate_full", grad if last else None, q + "m")
        t.alloc(q + "d_logit", small)  # sigmoid backward
        t.free(q + "d_gate", q + "gate")
        din, ins = [c] + [hid] * layers, [q + "mean"] + [f"{q}a{i}" for i in range(layers)]
        gin, width = q + "d_logit", c
        for i in reversed(range(layers + 1)):  # the Linear layers, last first
            if i < layers:  # its leaky ReLU, whose output the next Linear consumed
                t.alloc(f"{q}d_h{i}", b * g * hid * e)
                t.free(gin, f"{q}h{i}")
                gin = f"{q}d_h{i}"
            dw = t.alloc(f"{q}d_w{i}", din[i] * width * e)
            dx = t.alloc(f"{q}d_in{i}", b * g * din[i] * e)
            t.free(gin, ins[i])
            accumulate(t, acc, [(f"{p}w{i}", dw, din[i] * width * e)])
            gin, width = dx, hid
        t.alloc(q + "d_mean", big)  # mean backward: expand / N
        t.free(gin)
        t.alloc(q + "d_m", big)
        t.free(q + "d_m_gate", q + "d_mean")
        t.alloc(q + "d_mv", big), t.alloc(q + "d_ma", big)  # grad * a (for v), grad * v (for a)
        d_attn.append(t.alloc(q + "d_a", b * g * n * e))  # (B, g, 1, H, W)
        t.free(q + "d_ma")
        if g > 1:  # summed over the chunk's queries; a one-query chunk's product is v's gradient as it is
            dv = t.alloc(q + "d_v", b * c * n * e)  # (B, 1, C, H, W)
            t.free(q + "d_mv")
        else:
            dv = q + "d_mv"
        t.free(q + "d_m", v if last else None)
        accumulate(t, acc, [(p + "v", dv, b * c * n * e)])
    if len(sizes) == 1:
        return d_attn[0]
    out = t.alloc(p + "d_attn", b * d["length"][p] * n * e)
    t.free(*d_attn)
    return out


def caa_train_peak(cfg: Config) -> Trace:
    """Events of ``channelized_axial`` under the train protocol (torch 2.x CPU, read off a dispatch-mode log).

    Forward: the column, row projections (ConvBNReLU) and their affinities (``matmul`` copies an operand whose
    (B, W) / (B, H) batch does not fold as a view), the value projection, the column then the row stage
    (`_stage_forward`). Backward, by autograd's order: the row stage, the column stage, the value projection,
    the row affinity and projection, the column ones. The peak sits in the backward of a chunk, on top of
    every chunk's saved weighted map (B N C (H + W) in all, whatever ``groups``).
    """
    b, c, ck, h, w, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width, cfg.dtype_bytes
    n, pos = h * w, b * h * w
    d = dict(b=b, c=c, ck=ck, e=e, n=n, pos=pos, hid=max(1, c // 4), layers=cfg.option("mlp_layers", 5),
             groups=cfg.option("groups", 16), acc={}, length={"col": h, "row": w})  # fmt: skip
    t = Trace()
    copies = {}
    for br, lead, rows, lead_s, rows_s in (("col", w, h, 1, w), ("row", h, w, w, 1)):
        _proj_forward(t, br + "_", pos, ck, e)
        # operands (B, lead, rows, Ck) and (B, lead, Ck, rows) of the contiguous (B, Ck, H, W) map
        for name, shape, strides, new in (
            ("a", (b, lead, rows, ck), (ck * n, lead_s, rows_s, n), (b * lead, rows, ck)),
            ("b", (b, lead, ck, rows), (ck * n, lead_s, n, rows_s), (b * lead, ck, rows)),
        ):
            copies[br + name] = t.maybe(
                f"{br}_copy_{name}", pos * ck * e, fm.view_copies(shape, strides, new)
            )
        t.alloc(br + "_sim", b * lead * rows * rows * e)
        t.alloc(br + "_attn", b * lead * rows * rows * e)  # softmax (saved)
        t.free(br + "_sim")
    _proj_forward(t, "v_", pos, c, e)
    y, col_sizes = _stage_forward(t, "col", d, h, w)
    _, row_sizes = _stage_forward(t, "row", d, w, h)
    t.alloc("seed", pos * c * e)  # ones_like(out), held by the caller (as is the output)
    d_row = _stage_backward(t, "row", d, row_sizes, None, y)
    d_col = _stage_backward(t, "col", d, col_sizes, d["acc"]["rowv"], None)
    acc = {}
    _proj_backward(t, "v_", d["acc"]["colv"], d, c, acc)
    for br, d_attn, area in (("row", d_row, b * h * w * w * e), ("col", d_col, b * w * h * h * e)):
        t.alloc(br + "_d_sim", area)  # softmax backward
        t.free(d_attn, br + "_attn")
        t.alloc(br + "_d_qa", pos * ck * e), t.alloc(br + "_d_qb", pos * ck * e)
        t.free(br + "_d_sim", copies[br + "a"], copies[br + "b"])
        t.alloc(br + "_d_q", pos * ck * e)
        t.free(br + "_d_qa", br + "_d_qb")
        _proj_backward(t, br + "_", br + "_d_q", d, ck, acc)
    return t
