"""Replay of ``criss_cross`` in train: R recurrent steps of row and column energies and aggregates."""

from __future__ import annotations

from isaprof.formulas.base import Config
from tests.formulas.replays.trace import Trace, accumulate


def _step_forward(t: Trace, p: str, d: dict) -> dict:
    """Events of one ``CrissCross.criss_cross`` step in train; returns what autograd saved (names).

    einsum permutes its operands to (batch, free, contracted) and reshapes them for ``bmm``: with B > 1 the
    (b, w) / (b, h) batch does not merge as a view, so q, k (both energies), v (both aggregates) and the
    column slice of the affinity are copied, and bmm saves the copies; with B = 1 it saves views.
    """
    pc, pk, cp = d["pc"], d["pk"], d["b"] > 1
    cpk = cp and d["ck"] > 1  # Ck = 1: the energies lower to a broadcast mul of views, no copies
    q, k, v = t.alloc(p + "q", pk), t.alloc(p + "k", pk), t.alloc(p + "v", pc)  # (B, Ck|C, H, W)
    sv: dict = {}
    for br, area in (("h", d["col"]), ("w", d["row"])):  # energies: (B, W, H, H), (B, H, W, W)
        sv["q" + br] = t.alloc(f"{p}cq_{br}", pk) if cpk else t.share(q)
        sv["k" + br] = t.alloc(f"{p}ck_{br}", pk) if cpk else t.share(k)
        t.alloc(f"{p}e_{br}", area)
    t.alloc(p + "cat", d["aff"])  # (B, H, W, H + W)
    sv["attn"] = t.alloc(p + "attn", d["aff"])
    sv["vh"] = t.alloc(p + "cv_h", pc) if cp else t.share(v)
    sv["ah"] = t.alloc(p + "ca_h", d["col"]) if cp else None  # the column slice of the affinity
    sv["out"] = t.alloc(p + "out_h", pc)  # (B, C, H, W) view of the column bmm; += adds in place
    sv["vw"] = t.alloc(p + "cv_w", pc) if cp else t.share(v)
    t.alloc(p + "out_w", pc)
    t.free(p + "out_w")
    t.alloc(p + "scaled", pc)  # gamma * out (saves out)
    sv["y"] = t.alloc(p + "y", pc)  # + x
    t.free(p + "scaled", p + "e_h", p + "e_w", p + "cat", q, k, v)  # the step's locals die on return
    return sv


def _energy_backward(t: Trace, p: str, pk: int, area: int, lowered: bool) -> None:
    """The q, k gradients (``p + "_d_q"``, ``p + "_d_k"``, B N Ck each) of one energy einsum: two bmm's, or
    with Ck = 1 (a broadcast ``mul``) two ``area``-sized products each summed to B N."""
    if not lowered:
        t.alloc(p + "_d_q", pk), t.alloc(p + "_d_k", pk)
        return
    t.alloc(p + "_mul_a", area), t.alloc(p + "_mul_b", area)
    t.alloc(p + "_d_q", pk)
    t.free(p + "_mul_b")
    t.alloc(p + "_d_k", pk)
    t.free(p + "_mul_a")


def _step_backward(t: Trace, p: str, d: dict, sv: dict, acc: dict, x: str | None) -> None:
    """Events of one step's backward; ``acc["x"]`` holds the incoming gradient (the residual passes it on
    to x unchanged), ``x``: the step's input if tracked (saved by its three convs)."""
    pc, pk, cp, e = d["pc"], d["pk"], d["b"] > 1, d["e"]
    d_out = t.alloc(p + "d_out", pc)  # grad * gamma
    t.alloc(p + "d_gamma_full", pc)
    t.alloc(p + "d_gamma", e)
    t.free(p + "d_gamma_full", sv["out"])
    accumulate(t, acc, [("gamma", p + "d_gamma", e)])
    base = t.alloc(p + "d_base", pc)  # CopySlices of the in-place += : the column bmm output's gradient
    g = t.alloc(p + "d_sum", pc)
    t.free(d_out)
    if cp:  # einsum's permuted copy of the row aggregate's gradient
        g2 = t.alloc(p + "d_row_copy", pc)
        t.free(g)
        g = g2
    t.alloc(p + "d_attn_w", d["row"]), t.alloc(p + "d_v_w", pc)
    t.free(g, sv["vw"])
    t.alloc(p + "d_slice_w", d["aff"])
    t.free(p + "d_attn_w")
    t.alloc(p + "d_attn_h", d["col"]), t.alloc(p + "d_v_h", pc)
    t.free(base, sv["ah"], sv["vh"])
    t.alloc(p + "d_v", pc)
    t.free(p + "d_v_w", p + "d_v_h")
    t.alloc(p + "d_slice_h", d["aff"])
    t.free(p + "d_attn_h")
    t.alloc(p + "d_aff", d["aff"])
    t.free(p + "d_slice_w", p + "d_slice_h")
    ds = t.alloc(p + "d_energy", d["aff"])  # softmax backward
    t.free(p + "d_aff", sv["attn"])
    lowered = d["ck"] == 1
    cpk = cp and not lowered
    held = t.alloc(p + "d_e_h_copy", d["col"]) if cpk else ds  # the transposed column slice of d_energy
    _energy_backward(t, p + "w", pk, d["row"], lowered)
    t.free(ds if cpk else None, sv["kw"], sv["qw"])
    ne = t.alloc(p + "d_e_h", d["col"])  # CopySlices of the diagonal fill_
    t.alloc(p + "d_diag", d["diag"]), t.alloc(p + "d_diag_zeros", d["diag"])
    t.free(p + "d_diag", p + "d_diag_zeros", held)
    _energy_backward(t, p + "h", pk, d["col"], lowered)
    t.free(ne, sv["kh"], sv["qh"])
    t.alloc(p + "d_q", pk)
    t.free(p + "w_d_q", p + "h_d_q")
    t.alloc(p + "d_k", pk)
    t.free(p + "w_d_k", p + "h_d_k")
    c, ck = d["c"], d["ck"]
    for i, (conv, grad, cout) in enumerate((("v", "d_v", c), ("k", "d_q", ck), ("q", "d_k", ck))):
        dx = t.alloc(f"{p}{conv}_d_x", pc)
        dw, db = t.alloc(f"{p}{conv}_d_w", c * cout * e), t.alloc(f"{p}{conv}_d_b", cout * e)
        t.free(p + grad, x if i == 2 else None)
        accumulate(t, acc, [("x", dx, pc), (conv + "_w", dw, c * cout * e), (conv + "_b", db, cout * e)])


def criss_cross_train_peak(cfg: Config) -> Trace:
    """Events of ``criss_cross`` under the train protocol (torch 2.x CPU, read off a dispatch-mode log).

    R forward steps (`_step_forward`), each step's output saved by the next step's convs; the seed; R
    backward steps in reverse (`_step_backward`), parameter gradients summed across steps out of place;
    x's gradient copied once by AccumulateGrad at the end. The peak is in the last step's backward (the
    aggregates' and the softmax's gradients) on top of R steps of saved activations (``live_at_peak``).
    """
    b, c, ck, h, w, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width, cfg.dtype_bytes
    r, pos = cfg.option("recurrence", 2), b * h * w
    d = dict(b=b, c=c, ck=ck, e=e, pc=pos * c * e, pk=pos * ck * e, col=b * w * h * h * e,
             row=b * h * w * w * e, aff=pos * (h + w) * e, diag=b * w * h * e)  # fmt: skip
    t = Trace()
    saved, inputs, x = [], [], None
    for i in range(r):
        sv = _step_forward(t, f"s{i}_", d)
        saved.append(sv)
        inputs.append(x)
        x = sv["y"]
    t.alloc("seed", pos * c * e)  # ones_like(out), held by the caller (as is the output)
    acc = {"x": "seed"}
    for i in reversed(range(r)):
        _step_backward(t, f"s{i}_", d, saved[i], acc, inputs[i])
    t.alloc("d_input", pos * c * e)  # AccumulateGrad copies the summed gradient into x.grad
    t.free(acc["x"])
    return t
