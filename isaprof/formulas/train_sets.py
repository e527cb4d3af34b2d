"""Train peak sets of the shared pieces: a conv + BN + ReLU layer's backward, the attention's forward and
backward, one ``SelfAttention2D`` stage (`isaprof.targets.blocks.common`). Pure Python.

A train step (``train()`` forward, then ``backward(ones_like(out))``) keeps what autograd saves alive
from its creation to its use in the backward, so the candidate moments (`isaprof.formulas.peak`) are
written here as *live sets*: ``live`` is the dict (name -> bytes) of everything alive between two
candidates, every candidate is ``{**live, <what the op just allocated>}``, and the code's frees are
``without(live, ...)``. Each function takes the live set before its piece and returns
``(candidates, live after)``; the block's formula adds its own moments and takes `peak.peak_set`.

The candidates of one piece, and why each can be the peak (every other moment of the piece holds a
subset of one of them, or the same bytes under other names):

* layer backward (conv, BN, ReLU; `layer_backward`): d_relu beside the incoming gradient; d_bn and the
  BN weight gradients beside d_relu and the saved conv output; the conv's input gradient and weight gradient
  beside d_bn;
* attention forward (`attention_forward`): naive / math: the two (maps, N, M) buffers at Q K^T and softmax
  (math: beside the q/k/v copies and scaled q, k); math: the A V output beside all of those; mask bias;
* attention backward (`attention_backward`): materialised: d_attn beside the incoming gradient and d_v;
  d_softmax beside the softmax and d_attn (three (N, M) buffers, the usual winner); d_q, d_k beside
  d_scaled (math: scaled-q/k gradients); flash: d_q, d_k, d_v beside everything the kernel saved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from isaprof.formulas import memory as fm
from isaprof.formulas.peak import Moment

Live = dict[str, int]


def without(live: Mapping[str, int], *names: str | None) -> Live:
    """``live`` less ``names`` (``None`` and absent names ignored: nothing was allocated)."""
    drop = {n for n in names if n is not None}
    return {k: v for k, v in live.items() if k not in drop}


def at(name: str, live: Mapping[str, int], movable: Iterable[str] = (), **new: int) -> Moment:
    """The candidate ``name``: ``live`` plus ``new`` (names as given: a tensor keeps one name from its
    allocation to its death; zero-byte entries dropped)."""
    extra = {k: v for k, v in new.items() if v}
    return Moment(name, {**live, **extra}, tuple(m for m in movable if m in live))


def layer_saved(p: str, pos: int, cout: int, b: int) -> Live:
    """What a train conv (no bias) + BN + ReLU over ``pos`` positions keeps for its backward: the conv output
    (BN's input), the ReLU output, BN's save_mean / save_invstd (accumulation dtype)."""
    return {p + "conv": pos * cout * b, p + "relu": pos * cout * b, p + "stats": 2 * cout * fm.acc_bytes(b)}


def layer_forward(p: str, live: Live, pos: int, cout: int, b: int) -> tuple[list[Moment], Live]:
    """conv + BN + ReLU in train: the candidate is the ReLU output beside BN's output (freed right after)."""
    live = {**live, **layer_saved(p, pos, cout, b)}
    return [at(p + "forward (ReLU beside BN)", live, **{p + "bn": pos * cout * b})], live


def layer_backward(
    p: str, live: Live, frees: tuple, pos: int, cin: int, cout: int, b: int, bias: bool = False
) -> tuple[list[Moment], Live]:
    """Backward of `layer_forward` (its incoming gradient is already in ``live``); ``frees``: what dies
    after the ReLU backward (the incoming gradient and the saved ReLU output, where nobody else holds them).
    After it, ``live`` holds ``p + "d_in"`` (pos cin) and the three weight gradients."""
    pc = pos * cout * b
    found = [at(p + "backward: ReLU", live, **{p + "d_relu": pc})]
    live = {**without(live, *frees), p + "d_relu": pc}
    live.update({p + "d_bn": pc, p + "d_bn_w": cout * b, p + "d_bn_b": cout * b})
    found.append(at(p + "backward: BN", live))
    live = without(live, p + "conv", p + "stats", p + "d_relu")
    grads = {p + "d_in": pos * cin * b, p + "d_conv_w": cin * cout * b}
    if bias:  # a conv with bias: its gradient too
        grads[p + "d_conv_b"] = cout * b
    found.append(at(p + "backward: conv", live, **grads))
    live = {**without(live, p + "d_bn"), **grads}
    return found, live


def attention_forward(p: str, s: dict, live: Live, movable: tuple = ()) -> tuple[list[Moment], Live]:
    """`isaprof.targets.blocks.common.attend` in train;
    ``s`` as `dense.stage_spec` plus the names ``q``, ``k``,
    ``v`` of its inputs in ``live``. Returns the candidates and the live set after it: the inputs, what
    autograd saved and ``p + "attention output"``. Records in ``s`` which tensors the backward reads
    (``sdpa_q`` / ``sdpa_k`` / ``sdpa_v``: a contiguous copy's name or the input's)."""
    maps, n, ck, cv, b, kind, mask = (s[k] for k in ("maps", "n", "ck", "cv", "b", "kind", "mask"))
    m, nhwc = s.get("m", n), s.get("nhwc", False)
    lg, out = maps * n * m * b, {p + "attention output": maps * n * cv * b}
    found: list[Moment] = []
    if kind == "naive":
        if mask:  # scaled logits, ~mask (saved), masked_fill: two (N, M) buffers; then the softmax
            live = {**live, p + "not mask": maps * m * fm.BOOL_BYTES}
            found.append(
                at(
                    p + "attention: masked_fill",
                    live,
                    movable,
                    **{p + "scaled logits": lg, p + "masked logits": lg},
                )
            )
        else:
            found.append(
                at(p + "attention: scale", live, movable, **{p + "logits": lg, p + "scaled logits": lg})
            )
        return found, {**live, p + "softmax": lg, **out}
    if mask:  # mask_bias: zeros, ~mask, masked_fill -> (maps, 1, M) additive bias, kept to the A V matmul
        bias = {p + "bias zeros": maps * m * b, p + "bias not mask": maps * m * fm.BOOL_BYTES}
        bias[p + "mask bias"] = maps * m * b
        found.append(Moment(p + "attention: mask bias", {**live, **bias}, movable))
        live = {**live, p + "mask bias": maps * m * b}
    copies = {
        "q": (p + "q copy", maps * n * ck * b, fm.transpose_copies(ck, n) and not nhwc),
        "v": (p + "v copy", maps * m * cv * b, fm.transpose_copies(cv, m) and not nhwc),
        "k": (p + "k copy", maps * m * ck * b, fm.transpose_copies(ck, m) and not nhwc),
    }
    for key, (name, nbytes, copies_) in copies.items():
        s["sdpa_" + key] = name if copies_ else s[key]
        if copies_:
            live[name] = nbytes
    if kind == "flash":  # output + logsumexp; everything above is saved for the backward
        return found, {**live, **out, p + "logsumexp": maps * n * fm.acc_bytes(b)}
    live = {**live, p + "scaled q": maps * n * ck * b, p + "scaled k": maps * m * ck * b}
    found.append(at(p + "attention: math softmax", live, movable, **{p + "logits": lg, p + "softmax": lg}))
    live[p + "softmax"] = lg
    found.append(at(p + "attention: math A V", live, movable, **out))
    return found, {**without(live, p + "mask bias", p + "q copy", p + "k copy"), **out}


def attention_backward(p: str, s: dict, live: Live, grad: str) -> tuple[list[Moment], Live]:
    """Backward of `attention_forward` given ``grad`` (in ``live``, dies here). After it, ``live`` holds
    ``p + "d_q"``, ``p + "d_k"``, ``p + "d_v"``; the inputs the backward was the last to hold are gone
    (v; q and k too with ``s["qk_owned"]``)."""
    maps, n, ck, cv, b, kind = (s[k] for k in ("maps", "n", "ck", "cv", "b", "kind"))
    m, owned = s.get("m", n), s.get("qk_owned", False)
    lg = maps * n * m * b
    dq, dk, dv = p + "d_q", p + "d_k", p + "d_v"
    sizes = {dq: maps * n * ck * b, dk: maps * m * ck * b, dv: maps * m * cv * b}
    if kind == "flash":
        found = [at(p + "attention backward: flash", live, **sizes)]
        dead = [
            p + "q copy",
            p + "k copy",
            p + "v copy",
            p + "attention output",
            p + "logsumexp",
            p + "mask bias",
        ]
        dead += [grad, s["v"] if s["sdpa_v"] == s["v"] else None]
        dead += [s[x] for x in ("q", "k") if owned and s["sdpa_" + x] == s[x]]
        return found, {**without(live, *dead), **sizes}
    found = [at(p + "attention backward: d_attn", live, **{dv: sizes[dv], p + "d_attn": lg})]
    live = {**without(live, s["sdpa_v"] if kind == "math" else s["v"], grad), dv: sizes[dv]}
    live.update({p + "d_attn": lg, p + "d_softmax": lg})
    found.append(at(p + "attention backward: d_softmax", live))
    live = without(live, p + "softmax", p + "d_attn", p + "not mask")
    if kind == "math":
        live.update({p + "d_k scaled": sizes[dk], p + "d_q scaled": sizes[dq]})
        found.append(at(p + "attention backward: d_q, d_k scaled", live))
        live = without(live, p + "scaled q", p + "scaled k", p + "d_softmax")
        found.append(at(p + "attention backward: d_k", live, **{dk: sizes[dk]}))
        live = {**without(live, p + "d_k scaled"), dk: sizes[dk]}
        found.append(at(p + "attention backward: d_q", live, **{dq: sizes[dq]}))
        return found, {**without(live, p + "d_q scaled"), dq: sizes[dq]}
    live = {**without(live, p + "d_softmax"), p + "d_scaled": lg}  # (d_masked: a subset of d_softmax's)
    found.append(at(p + "attention backward: d_q, d_k", live, **{dk: sizes[dk], dq: sizes[dq]}))
    dead = (s["q"], s["k"]) if owned else ()
    return found, {**without(live, p + "d_scaled", *dead), dk: sizes[dk], dq: sizes[dq]}


def stage_forward(p: str, s: dict, live: Live) -> tuple[list[Moment], Live]:
    """`SelfAttention2D.forward` in train (`dense.stage_spec` sizes); returns the candidates and the live set
    at its return (``p + "w relu"`` is the stage output). Value, query, key are the stage's locals: where
    sdpa saved a copy of value, value itself dies at the return, so it is ``movable`` before that."""
    pos, ck, cv, b = s["maps"] * s["n"], s["ck"], s["cv"], s["b"]
    live = {**live, p + "value": pos * cv * b}
    for name in ("q1 ", "q2 ", "k1 ", "k2 "):  # each layer's candidate is a subset of the next one's
        found, live = layer_forward(p + name, live, pos, ck, b)
    s.update(v=p + "value", q=p + "q2 relu", k=p + "k2 relu")
    att, live = attention_forward(p, s, live)
    found += att
    movable = (p + "value",) if s["kind"] != "naive" and s["sdpa_v"] != s["v"] else ()
    out = p + "attention output"
    if fm.transpose_copies(s["n"], cv):  # (maps, N, Cv) -> (maps, Cv, N) contiguous
        found.append(at(p + "context copy", live, movable, **{p + "context": pos * cv * b}))
        live = {**without(live, None if s["kind"] == "flash" else out), p + "context": pos * cv * b}
        s["ctx"] = p + "context"
    else:
        s["ctx"] = out
    w, live = layer_forward(p + "w ", live, pos, s["cout"], b)
    found += [Moment(x.name, x.live, movable) for x in w]
    return found, without(live, *movable)


def stage_backward(
    p: str, s: dict, live: Live, grad: str, frees: tuple
) -> tuple[list[Moment], Live, list[str]]:
    """The stage's backward given ``grad`` (in ``live``); ``frees``: what dies after its first op (the
    gradient and the output, unless the caller holds them). Returns the candidates, the live set and the
    input gradient's parts (key + query paths summed, value path): the caller sums them."""
    pos, ck, cv, cin, b = s["maps"] * s["n"], s["ck"], s["cv"], s["cin"], s["b"]
    found, live = layer_backward(p + "w ", live, frees, pos, cv, s["cout"], b)
    live = without(live, p + "context")
    att, live = attention_backward(p, s, live, p + "w d_in")
    found += att
    parts = []
    for proj, d in (("k", p + "d_k"), ("q", p + "d_q")):
        more, live = layer_backward(f"{p}{proj}2 ", live, (d, f"{p}{proj}2 relu"), pos, ck, ck, b)
        found += more
        d1 = f"{p}{proj}2 d_in"
        more, live = layer_backward(f"{p}{proj}1 ", live, (d1, f"{p}{proj}1 relu"), pos, cin, ck, b)
        found += more
        parts.append(f"{p}{proj}1 d_in")
    summed = p + "d_x (key + query)"
    found.append(at(p + "input gradient: key + query", live, **{summed: pos * cin * b}))
    live = {**without(live, *parts), summed: pos * cin * b}
    vd = {p + "value d_in": pos * cin * b, p + "value d_conv_w": cin * cv * b}
    found.append(at(p + "backward: value conv", live, **vd))
    live = {**without(live, p + "d_v"), **vd}
    return found, live, [summed, p + "value d_in"]


def grad_sum(name: str, live: Live, parts: list[str], nbytes: int) -> tuple[list[Moment], Live]:
    """Autograd summing ``parts`` (in ``live``) out of place: the candidate is the sum beside both parts."""
    found, acc = [], parts[0]
    for i, part in enumerate(parts[1:]):
        new = f"{name} sum {i + 1}"
        found.append(at(f"{name}: sum {i + 1}", live, **{new: nbytes}))
        live = {**without(live, acc, part), new: nbytes}
        acc = new
    return found, live


def accumulate(
    name: str, live: Live, acc: dict[str, str], parts: Iterable[tuple[str, str, int]]
) -> tuple[list[Moment], Live]:
    """Autograd's gradient buffers after one backward node (the engine's out-of-place sums): each new
    gradient ``(key, part, nbytes)`` (in ``live``) becomes the buffer ``acc[key]``, or is added to it out
    of place: the candidate is the sum beside the old buffer and the part; the old buffer dies at once
    (unless it is the caller-held seed), the summed parts after the node's last sum."""
    found, summed = [], []
    for key, part, nbytes in parts:
        if key not in acc:
            acc[key] = part
            continue
        new = part + " sum"
        found.append(at(f"{name}: {key} gradient sum", live, **{new: nbytes}))
        live = {**without(live, None if acc[key] == "seed" else acc[key]), new: nbytes}
        acc[key] = new
        summed.append(part)
    return found, without(live, *summed)
