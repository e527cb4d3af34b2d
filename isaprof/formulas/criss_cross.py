"""Closed-form costs of ``criss_cross`` (blocks/criss_cross.py; CCNet, Huang et al. ICCV 2019).

N = H W positions, R recurrences of the same module. Per recurrence:
  params = 2 (C Ck + Ck) + (C C + C) + 1                   [query, key, value convs with bias; gamma]
  MACs   = B N C (2 Ck + C)                                 [the three 1x1 convs]
         + B N (H + W) Ck + B N (H + W) C                   [energies and aggregation over row + column]
The paper counts (H + W - 1) keys per position (CCNet sec. 3.1, the centre once); the code computes the
full H + W products and masks the duplicated centre with -inf, so the counters see H + W: we count that.
NB: torch.einsum lowers a product whose contracted dimension has size 1 to an element-wise ``mul``, which
the counters do not count: with Ck = 1 the energies, with H = 1 (W = 1) the column (row) aggregate count 0.
Training (input requires grad): every conv and bmm costs 3x its forward (grad input + grad weight / both
bmm operands), so train MACs = 3 x forward MACs.
Leaves out (``elementwise``): bias adds, the -inf mask, softmax, the in-place sum of the two aggregates,
gamma scaling, the residual.
"""

from __future__ import annotations

from dataclasses import replace

from isaprof.formulas import common as fc
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, Tolerance, formula

# H = 1 or W = 1 only (train peak): einsum lowers the size-1 aggregate to a broadcast ``mul`` and skips
# copies the trace replays, so it over-estimates (measured: +0.8% .. +17% at C = 16, 1x5 / 4x1, R = 1..3).
# Not modelled: a single-row map is no use case of criss-cross attention.
DEGENERATE_TRAIN_TOLERANCE = 0.2


@formula("criss_cross")
def criss_cross(cfg: Config) -> Cost:
    """Costs of ``criss_cross`` (see module docstring); option ``recurrence`` (default 2)."""
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    r = cfg.option("recurrence", 2)
    bn = b * h * w
    macs = {
        "qkv_conv": r * fc.conv1x1_macs(bn, c, 2 * ck + c),
        "energy": r * bn * (h + w) * ck * (ck > 1),
        "aggregate": r * bn * (h * (h > 1) + w * (w > 1)) * c,
    }
    elementwise = {
        "diag_mask": r * bn,
        "softmax": r * fc.softmax_ops(bn * (h + w)),
        "aggregate_add": r * bn * c,
        "gamma_scale": r * bn * c,
        "residual": r * bn * c,
    }
    peak = {"inference": peak_inference(cfg), "train": peak_train(cfg)}
    cost = fc.cost_train_3x(fc.qkv_gamma_params(c, ck), macs, elementwise, peak, (h, w))
    if h > 1 and w > 1:
        return cost
    # analytic / measured - 1 < DEGENERATE_TRAIN_TOLERANCE  <=>  analytic - measured < analytic / 6 (at 0.2)
    below = int(peak["train"] * DEGENERATE_TRAIN_TOLERANCE / (1 + DEGENERATE_TRAIN_TOLERANCE))
    why = "H = 1 or W = 1: einsum lowers an aggregate to mul and skips copies the trace replays"
    return replace(cost, peak_tolerance={"train": Tolerance(below, "degenerate criss-cross map", why)})


def peak_inference(cfg: Config) -> int:
    """Peak bytes of one ``no_grad`` forward (storage-lifetime tracker; see module docstring of base).

    Live through one step, in units of B N elements: q, k (Ck each), v (C), energy_h (H), energy_w (W),
    their concatenation and softmax (H + W each). On top: the column einsum's copies of v and of the
    column slice of the affinity plus its output (2 C + H), or, later, the running sum, the row einsum's
    copy of v and its output (3 C), equally the final gamma * out + x. From the second step on the
    previous step's output (C) is live too. einsum copies its permuted operands (torch lowers it to bmm
    on contiguous operands); with B = 1 the (b, w) batch merges without a copy of v or of the slice.
    """
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    r = cfg.option("recurrence", 2)
    base = 2 * ck + c + 3 * (h + w)
    column = (2 * c + h) if b > 1 else c
    units = base + max(column, 3 * c) + (c if r > 1 else 0)
    return units * b * h * w * cfg.dtype_bytes


def peak_train(cfg: Config) -> int:
    """Peak bytes of forward + backward: the peak set `criss_cross_train_peak_set`, exact against the
    tracker for H, W > 1 (any B, Ck, R). At H = 1 or W = 1 einsum lowers an aggregate to ``mul`` and merges
    batches as views: the code's moments differ and the set over-estimates by up to
    ``DEGENERATE_TRAIN_TOLERANCE``."""
    return criss_cross_train_peak_set(cfg).bytes


def criss_cross_train_peak_set(cfg: Config) -> fp.Moment:
    """Peak set of ``criss_cross`` train (exact against the tracker for H, W > 1): the largest of

    * forward: the last step's ``gamma * out + x`` beside that step's q, k, v, energies, their concatenation,
      the softmax, einsum's copies and the column aggregate, on top of the earlier steps' saved activations
      (each step's candidate holds the previous one's bytes plus what that step saved: the last is largest);
    * backward, per step (beside the seed, the output, the earlier steps' saved activations and the gradient
      buffers): the gamma gradient; the in-place sum's CopySlices; each aggregate's affinity and value
      gradients; the softmax backward (d_aff beside the two slice gradients, then d_energy); each energy's
      q, k gradients (Ck = 1: the broadcast products); the diagonal fill's backward; q, k summed; each conv's
      input and weight gradients and their out-of-place sums into x's and the parameters' buffers;
    * x's gradient copied by AccumulateGrad.

    With H W large it is the last step's softmax backward: d_aff, the slice gradients or d_energy
    ((H + W) B N b each) beside the saved affinities of every step.
    """
    b, c, ck, h, w, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width, cfg.dtype_bytes
    r, pos = cfg.option("recurrence", 2), b * h * w
    pc, pk, cp, cpk = pos * c * e, pos * ck * e, b > 1, b > 1 and ck > 1
    col, row, aff, diag = b * w * h * h * e, b * h * w * w * e, pos * (h + w) * e, b * w * h * e
    live: ts.Live = {}
    found: list[fp.Moment] = []
    for i in range(r):  # each step's output is saved by the next step's convs
        p = f"step {i + 1} "
        live.update({p + "q": pk, p + "k": pk, p + "v": pc})
        for br, area in (("h", col), ("w", row)):  # einsum's copies (B > 1, Ck > 1), else views of q, k
            if cpk:
                live.update({f"{p}q copy {br}": pk, f"{p}k copy {br}": pk})
            live[f"{p}energy {br}"] = area
        live.update({p + "cat": aff, p + "attention": aff})
        if cp:
            live.update({p + "v copy h": pc, p + "attention slice h": col})
        live[p + "out h"] = pc
        if cp:
            live[p + "v copy w"] = pc
        if i == r - 1:
            found.append(ts.at(p + "forward: gamma * out + x", live, **{p + "scaled": pc, p + "y": pc}))
        local = [p + x for x in ("energy h", "energy w", "cat")]
        local += [p + x for x in ("q", "k")] if cpk else []
        local += [p + "v"] if cp else []
        live = {**ts.without(live, *local), p + "y": pc}
    live["seed"] = pos * c * e  # ones_like(out), held by the caller (as is the output)
    acc = {"x": "seed"}
    for i in reversed(range(r)):
        p = f"step {i + 1} "
        more, live = _step_backward_set(p, live, acc, i, dict(pc=pc, pk=pk, cp=cp, cpk=cpk, c=c, ck=ck, e=e,
                                        col=col, row=row, aff=aff, diag=diag))  # fmt: skip
        found += more
    found.append(ts.at("x gradient copy", live, d_input=pos * c * e))
    return fp.peak_set(found)


def _step_backward_set(p: str, live: ts.Live, acc: dict, i: int, d: dict) -> tuple[list[fp.Moment], ts.Live]:
    """One step's backward candidates (`criss_cross_train_peak_set`); ``acc``: the gradient buffers."""
    pc, pk, e, col, row, aff = d["pc"], d["pk"], d["e"], d["col"], d["row"], d["aff"]
    found = [
        ts.at(p + "backward: gamma", live, **{p + "d out": pc, p + "d gamma full": pc, p + "d gamma": e})
    ]
    live = {**ts.without(live, p + "out h"), p + "d out": pc, p + "d gamma": e}
    more, live = ts.accumulate(p, live, acc, [("gamma", p + "d gamma", e)])
    found += more
    found.append(ts.at(p + "backward: in-place sum", live, **{p + "d base": pc, p + "d sum": pc}))
    live = {**ts.without(live, p + "d out"), p + "d base": pc, p + "d sum": pc}
    g = p + "d sum"
    if d["cp"]:  # einsum's permuted copy of the row aggregate's gradient
        found.append(ts.at(p + "backward: row gradient copy", live, **{p + "d row copy": pc}))
        live, g = {**ts.without(live, g), p + "d row copy": pc}, p + "d row copy"
    found.append(ts.at(p + "backward: row aggregate", live, **{p + "d attn w": row, p + "d v w": pc}))
    live = {**ts.without(live, g, p + "v copy w"), p + "d attn w": row, p + "d v w": pc}
    found.append(ts.at(p + "backward: row slice", live, **{p + "d slice w": aff}))
    live = {**ts.without(live, p + "d attn w"), p + "d slice w": aff}
    found.append(ts.at(p + "backward: column aggregate", live, **{p + "d attn h": col, p + "d v h": pc}))
    dead = (p + "d base", p + "attention slice h", p + "v copy h", None if d["cp"] else p + "v")
    live = {**ts.without(live, *dead), p + "d attn h": col, p + "d v h": pc}
    found.append(ts.at(p + "backward: v gradient", live, **{p + "d v": pc}))
    live = {**ts.without(live, p + "d v w", p + "d v h"), p + "d v": pc}
    found.append(ts.at(p + "backward: column slice", live, **{p + "d slice h": aff}))
    live = {**ts.without(live, p + "d attn h"), p + "d slice h": aff}
    found.append(ts.at(p + "backward: affinity", live, **{p + "d aff": aff}))
    live = {**ts.without(live, p + "d slice w", p + "d slice h"), p + "d aff": aff}
    found.append(ts.at(p + "backward: softmax", live, **{p + "d energy": aff}))
    live = {**ts.without(live, p + "d aff", p + "attention"), p + "d energy": aff}
    lowered = d["ck"] == 1
    if d["cpk"]:  # the transposed column slice of d_energy
        live[p + "d energy h copy"] = col
    more, live = _energy_backward_set(p + "w ", live, pk, row, lowered)
    found += more
    qk_w = (p + "q copy w", p + "k copy w") if d["cpk"] else ()
    live = ts.without(live, p + "d energy" if d["cpk"] else None, *qk_w)
    diag = {p + "d energy h": col, p + "d diag": d["diag"], p + "d diag zeros": d["diag"]}
    found.append(ts.at(p + "backward: diagonal fill", live, **diag))
    held = p + ("d energy h copy" if d["cpk"] else "d energy")
    live = {**ts.without(live, held), p + "d energy h": col}
    more, live = _energy_backward_set(p + "h ", live, pk, col, lowered)
    found += more
    qk_h = (p + "q copy h", p + "k copy h") if d["cpk"] else (p + "q", p + "k")
    live = ts.without(live, p + "d energy h", *qk_h)
    for x in ("q", "k"):
        found.append(ts.at(f"{p}backward: d_{x}", live, **{f"{p}d {x}": pk}))
        live = {**ts.without(live, f"{p}w d {x}", f"{p}h d {x}"), f"{p}d {x}": pk}
    c, ck = d["c"], d["ck"]
    for j, (conv, grad, cout) in enumerate((("v", "d v", c), ("k", "d q", ck), ("q", "d k", ck))):
        new = {f"{p}{conv} d_x": pc, f"{p}{conv} d_w": c * cout * e, f"{p}{conv} d_b": cout * e}
        found.append(ts.at(f"{p}backward: {conv} conv", live, **new))
        x = f"step {i} y" if (j == 2 and i > 0) else None  # the step's input, saved by its three convs
        live = {**ts.without(live, p + grad, x), **new}
        parts = [("x", f"{p}{conv} d_x", pc), (conv + "_w", f"{p}{conv} d_w", c * cout * e)]
        more, live = ts.accumulate(p, live, acc, [*parts, (conv + "_b", f"{p}{conv} d_b", cout * e)])
        found += more
    return found, live


def _energy_backward_set(p: str, live: ts.Live, pk: int, area: int, lowered: bool) -> tuple[list, ts.Live]:
    """Candidates of one energy einsum's backward: its q, k gradients; with Ck = 1 (a broadcast ``mul``) each
    beside the ``area``-sized products it sums."""
    if not lowered:
        live = {**live, p + "d q": pk, p + "d k": pk}
        return [ts.at(p + "energy backward", live)], live
    found = [ts.at(p + "energy backward", live, **{p + "mul a": area, p + "mul b": area, p + "d q": pk})]
    live = {**live, p + "mul a": area, p + "d q": pk}
    found.append(ts.at(p + "energy backward", live, **{p + "d k": pk}))
    return found, {**ts.without(live, p + "mul a"), p + "d k": pk}
