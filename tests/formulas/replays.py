"""The allocation-event replay of every block: the independent reference the closed-form peak sets
(isaprof.formulas.peak, isaprof.formulas.train_sets) are cross-checked against on many shapes, torch-free
(tests/formulas/test_peak_sets.py). Not part of the package: ``Cost.peak_bytes`` comes from the peak sets.

A replay lists, as ``alloc`` / ``free`` events, the storages the real module allocates (read off its code
and the aten ops it runs), in order; the peak is the largest running sum. This mirrors
``isaprof.measure.memory.StorageTracker``: every op output with a fresh storage is one allocation, views and
in-place ops allocate nothing, a storage is freed when its last reference dies (Python locals, autograd's
saved tensors, gradient buffers), and the peak is sampled after each op's outputs exist. All sizes in
bytes; the layout rules (which reshapes copy) are isaprof.formulas.memory's. Conventions (torch 2.x CPU,
observed with a dispatch-mode logger): see that module's docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.channelized_axial import chunks
from isaprof.formulas.dense import stage_spec
from isaprof.formulas.isa import channels_last_regroup, factor_of, isa_geometry
from isaprof.formulas.memory import contiguous_strides, view_copies
from isaprof.formulas.non_local import INDEX_BYTES, keys
from isaprof.formulas.sparse_nonlocal import samples

# ---- memory ----


class Trace:
    """Allocation-event simulator: ``alloc(name, nbytes)`` / ``free(*names)``; ``peak`` in bytes.

    ``peak_at`` names the allocation at which the peak was first reached and ``live_at_peak`` what was
    live then (name -> bytes).
    """

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.refs: dict[str, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_at = ""
        self.live_at_peak: dict[str, int] = {}

    def alloc(self, name: str, nbytes: int) -> str:
        """Allocate ``nbytes`` under ``name`` (a fresh name); returns the name."""
        if name in self.live:
            raise ValueError(f"allocation {name!r} is already live")
        self.live[name], self.refs[name] = nbytes, 1
        self.current += nbytes
        if self.current > self.peak:
            self.peak, self.peak_at, self.live_at_peak = self.current, name, dict(self.live)
        return name

    def free(self, *names: str | None) -> None:
        """Drop one holder of each named allocation, freeing it when none is left (``None`` entries are
        ignored: "nothing was allocated", e.g. a view of untracked storage)."""
        for name in names:
            if name is None:
                continue
            self.refs[name] -= 1
            if self.refs[name] == 0:
                del self.refs[name]
                self.current -= self.live.pop(name)

    def share(self, name: str | None) -> str | None:
        """One more holder of ``name`` (a view kept by someone else); returns ``name``."""
        if name is not None:
            self.refs[name] += 1
        return name

    def maybe(self, name: str, nbytes: int, copies: bool) -> str | None:
        """``alloc`` if ``copies`` (an op that may return a view), else ``None``."""
        return self.alloc(name, nbytes) if copies else None


def grad_sum(t: Trace, name: str, parts: Sequence[str], nbytes: int) -> str:
    """Autograd summing the gradients ``parts`` (in arrival order) of one tensor, out of place:
    each arrival after the first allocates the sum and frees both operands. Returns the final name."""
    acc = parts[0]
    for part in parts[1:]:
        new = t.alloc(f"{name}_sum_{part}", nbytes)
        t.free(acc, part)
        acc = new
    return acc


def accumulate(t: Trace, acc: dict[str, str], parts: Sequence[tuple[str, str, int]]) -> None:
    """Autograd's gradient buffers after one backward node: each new gradient ``(key, name, nbytes)`` becomes
    the buffer ``acc[key]`` or is added to it out of place (the old buffer dies at once unless it is the
    caller-held ``"seed"``; the new parts that were summed die after the node's last sum)."""
    summed = []
    for key, name, nbytes in parts:
        if key not in acc:
            acc[key] = name
            continue
        new = t.alloc(name + "_sum", nbytes)
        t.free(None if acc[key] == "seed" else acc[key])
        acc[key] = new
        summed.append(name)
    t.free(*summed)


def regroup(
    t: Trace, name: str, src: str | None, nbytes: int, shapes: tuple, backward: bool = False
) -> str | None:
    """``src.view(shape).permute(perm).reshape(new)`` (``shapes`` = (src_shape, shape, perm, new)): a new
    allocation ``name`` if it copies, else one more holder of ``src``. ``backward``: the gradient's way
    back, a contiguous ``new``-shaped gradient viewed, permuted back and reshaped to ``src_shape``."""
    src_shape, shape, perm, new = shapes
    if not backward:
        strides = contiguous_strides(shape)
        copies = view_copies([shape[p] for p in perm], [strides[p] for p in perm], new)
    else:
        permuted = contiguous_strides([shape[p] for p in perm])
        strides = [0] * len(shape)
        for i, p in enumerate(perm):
            strides[p] = permuted[i]
        copies = view_copies(shape, strides, src_shape)
    return t.alloc(name, nbytes) if copies else t.share(src)


# ---- dense ----


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


def _attention_forward(t: Trace, p: str, s: dict, train: bool) -> str:
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


def _attention_backward(t: Trace, p: str, s: dict, grad: str) -> tuple[str, str, str]:
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


def stage_backward(t: Trace, p: str, s: dict, grad: str, free: tuple) -> tuple[str, ...]:
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


# ---- isa ----


def _masks(t: Trace, n: int, qh: int, qw: int, ph: int, pw: int) -> list[str]:
    """Events of ``blocks.isa._key_masks``; returns the storages the two masks hold (bool, 1 B each)."""
    valid = t.alloc("valid", qh * ph * qw * pw * fm.BOOL_BYTES)  # (H', W')
    t.free(t.alloc("true", fm.BOOL_BYTES))  # the scalar of valid[...] = True
    grid, grid_strides = (qh, ph, qw, pw), fm.contiguous_strides((qh, ph, qw, pw))
    held, bases = [], []
    for name, perm, m in (("long", (1, 3, 0, 2), qh * qw), ("short", (0, 2, 1, 3), ph * pw)):
        base_shape = (1, len(grid) and grid[perm[0]] * grid[perm[1]], 1, m)
        shape, strides = [grid[p] for p in perm], [grid_strides[p] for p in perm]
        view = fm.view_strides(shape, strides, base_shape)
        base = t.alloc(name + "_base", qh * ph * qw * pw) if view is None else t.share(valid)
        bases.append((name, base, base_shape, view or fm.contiguous_strides(base_shape)))
    for name, base, shape, strides in bases:
        expanded = (n, shape[1], 1, shape[3])
        copies = fm.view_copies(
            expanded, (0, strides[1], strides[2], strides[3]), (n * shape[1], 1, shape[3])
        )
        held.append(t.alloc(name + "_mask", n * shape[1] * shape[3]) if copies else t.share(base))
    t.free(valid, *(b for _, b, _, _ in bases))
    return held


def isa_peak(cfg: Config, train: bool) -> Trace:
    """Events of ``isa`` under the measurement protocol; ``.peak`` is the peak in bytes.

    Forward: pad (if any), key masks (``masked``), regroup copy, long-range stage, regroup copy,
    short-range stage, regroup copy, crop (a view). Train adds the seed, the crop's ``slice_backward``
    buffers, the regroups' way back and both stages' backward (`dense.stage_backward`), then the pad's.
    With naive / math attention the peak is at the larger stage's (maps, N, N) logits: B P_h P_w (Q_h Q_w)^2
    (long range) or B Q_h Q_w (P_h P_w)^2 (short range) elements, two of them in inference (logits, scaled
    logits), three in train (softmax, d_attn, d_softmax), beside the saved activations.
    """
    n, c, h, w, b = cfg.batch, cfg.channels, cfg.height, cfg.width, cfg.dtype_bytes
    ph, pw = factor_of(cfg)
    qh, qw, top, bottom, left, right = isa_geometry(h, w, (ph, pw))
    hp, wp = qh * ph, qw * pw
    padded = top + bottom + left + right > 0
    masked = bool(cfg.option("masked", False)) and padded
    full = n * c * hp * wp * b
    t = Trace()
    feats = t.alloc("pad", full) if padded else None
    held = _masks(t, n, qh, qw, ph, pw) if masked else []
    r1 = ((n, c, hp, wp), (n, c, qh, ph, qw, pw), (0, 3, 5, 1, 2, 4), (n * ph * pw, c, qh, qw))
    r2 = ((n * ph * pw, c, qh, qw), (n, ph, pw, c, qh, qw), (0, 4, 5, 3, 1, 2), (n * qh * qw, c, ph, pw))
    r3 = ((n * qh * qw, c, ph, pw), (n, qh, qw, c, ph, pw), (0, 3, 1, 4, 2, 5), (n, c, hp, wp))
    nhwc = [channels_last_regroup(r) for r in (r1, r2)]
    specs = [
        stage_spec(cfg, n * ph * pw, qh * qw, masked, nhwc[0]),
        stage_spec(cfg, n * qh * qw, ph * pw, masked, nhwc[1]),
    ]
    inputs, outputs = [], []
    for i, (shapes, s) in enumerate(zip((r1, r2), specs, strict=True)):
        x = regroup(t, f"in{i}", feats, full, shapes)
        t.free(feats if (i == 0 or not train) else None)  # the previous stage's output is saved in train
        y = stage_forward(t, f"s{i}_", s, train)
        t.free(None if train else x)
        inputs.append(x)
        outputs.append(y)
        feats = y
    out = regroup(t, "out", feats, full, r3)
    t.free(None if train else feats, *held)
    if not train:
        return t
    grad = t.alloc("seed", n * c * h * w * b)  # ones_like(out), held by the caller to the end
    held_grad: list[str | None] = [None]
    if right + left > 0 and top + bottom > 0:
        held_grad.append(t.alloc("d_crop_w", n * c * h * wp * b))
    if top + bottom > 0 or right + left > 0:
        g = t.alloc("d_crop", full)
        t.free(held_grad[-1])
        held_grad = [g]
    grad = held_grad[-1] or grad
    caller_held = grad == "seed"
    grad = regroup(t, "d_out", grad, full, r3, backward=True)
    t.free(None if caller_held else held_grad[-1])
    if out != feats:
        t.free(None)  # out is its own storage, held by the caller
    for i in (1, 0):
        s, shapes = specs[i], (r1, r2)[i]
        mine = None if grad == "seed" else grad
        parts = stage_backward(t, f"s{i}_", s, grad, (mine, outputs[i] if out != outputs[i] else None))
        t.free(inputs[i])
        grad = grad_sum(t, f"s{i}_d_x", parts, full)
        back = regroup(t, f"s{i}_d_regroup", grad, full, shapes, backward=True)
        t.free(grad)
        grad = back
    if padded:
        t.alloc("d_x", n * c * h * w * b)
        t.free(grad)
    return t


# ---- axial ----


def axial_peak(cfg: Config, train: bool) -> Trace:
    """Events of ``axial`` under the measurement protocol; ``.peak`` is the peak in bytes.

    Forward: row regroup copy, row stage (B H maps of W), column regroup copy, column stage (B W maps of
    H), the final ``contiguous`` copy; the row stage's output lives to the end of the forward. Train adds the
    seed, the regroups' way back and both stages' backward; x's gradient arrives permuted and is copied
    into x's layout by AccumulateGrad. The (maps, N, N) logits are B H W^2 (rows) and B W H^2 (columns)
    elements: with naive / math attention the peak is at the longer axis' logits (two in inference,
    three in train: softmax, d_attn, d_softmax) beside the saved activations.
    """
    b, c, h, w, nb = cfg.batch, cfg.channels, cfg.height, cfg.width, cfg.dtype_bytes
    full = b * c * h * w * nb
    r0 = ((b, c, h, w), (b, c, h, w), (0, 2, 1, 3), (b * h, c, 1, w))
    r1 = ((b * h, c, 1, w), (b, h, c, w), (0, 3, 2, 1), (b * w, c, h, 1))
    r2 = ((b * w, c, h, 1), (b, w, c, h), (0, 2, 3, 1), (b, c, h, w))
    t = Trace()
    specs = []
    for maps, n, shapes in ((b * h, w, r0), (b * w, h, r1)):
        strides = fm.regroup_strides(shapes)
        nhwc = strides is not None and fm.is_channels_last(shapes[3], strides)
        specs.append(stage_spec(cfg, maps, n, nhwc=nhwc))
    x0 = regroup(t, "in0", None, full, r0)
    o0 = stage_forward(t, "s0_", specs[0], train)
    t.free(None if train else x0)
    x1 = regroup(t, "in1", o0, full, r1)
    o1 = stage_forward(t, "s1_", specs[1], train)
    t.free(None if train else x1)
    copies = not fm.permuted_is_contiguous(r2[1], r2[2])
    out = t.alloc("out", full) if copies else t.share(o1)
    t.free(*(() if train else (o0, o1)))
    if not train:
        return t
    seed = t.alloc("seed", full)  # ones_like(out), held by the caller to the end
    grad = regroup(t, "d_out", None, full, r2, backward=True)
    for i, (x, o, shapes) in enumerate(((x1, o1, r1), (x0, o0, r0))[::1]):
        stage = 1 - i
        parts = stage_backward(t, f"s{stage}_", specs[stage], grad, (grad, o if o != out else None))
        t.free(x)
        grad = grad_sum(t, f"s{stage}_d_x", parts, full)
        if stage == 1:
            back = regroup(t, "d_rows", grad, full, shapes, backward=True)
            t.free(grad)
            grad = back
    if not fm.permuted_is_contiguous((b, h, c, w), (0, 2, 1, 3)):
        t.alloc("d_x", full)  # AccumulateGrad copies a gradient that is not in x's layout
        t.free(grad)
    del seed
    return t


# ---- non_local ----


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

    Forward: theta, phi (+ pool), g (+ pool) convs, the attention (`dense._attention_forward`), conv_out,
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
    y = _attention_forward(t, "", s, train)
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
    dq, dk, dv = _attention_backward(t, "", s, d_y)
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


# ---- sparse_nonlocal ----


def sparse_train_peak(cfg: Config) -> Trace:
    """Events of ``sparse_nonlocal`` under the train protocol; ``.peak`` in bytes.

    Forward: the index, the gathered samples, theta / phi / g convs, the attention of
    `dense._attention_forward` (B maps, N queries, K keys; q, k, v transposed views of the conv outputs,
    which sdpa copies contiguous when Ck, Cv, N, K > 1), conv_out, BN, residual. Backward: BN, conv_out, the
    attention (`dense._attention_backward`), g and phi convs (their input gradients summed), theta conv
    (added to the seed, the residual's gradient), the gather's ``index_add``. With naive / math attention
    and N K large the peak is at the softmax backward (softmax, d_attn, d_softmax: 3 B N K), else at the BN
    backward, beside the saved activations (``Trace.live_at_peak`` lists them).
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, k = cfg.height * cfg.width, samples(cfg)
    s = stage_spec(cfg, b, n)
    s.update(m=k, qk_owned=True)
    t = Trace()
    t.alloc("idx", INDEX_BYTES * k)  # (K,) int64; torch.tensor(list) itself is invisible to dispatch
    t.alloc("xs", b * c * k * e)  # (B, C, K, 1)
    s["q"], s["k"], s["v"] = t.alloc("theta", b * n * ck * e), t.alloc("phi", b * k * ck * e), None
    s["v"] = t.alloc("g", b * k * cv * e)
    out = _attention_forward(t, "", s, True)  # (B, N, Cv)
    t.alloc("conv_out", b * n * c * e)
    t.alloc("bn", b * n * c * e)
    t.alloc("mean", c * fm.acc_bytes(e)), t.alloc("invstd", c * fm.acc_bytes(e))
    t.alloc("y", b * n * c * e)  # the output, held by the caller
    t.free("bn")
    if s["kind"] == "math":  # the math kernel saves scaled copies: the conv outputs die with forward's locals
        t.free("theta", "phi", None if s["sdpa_v"] == "g" else "g")
    elif s["kind"] == "flash":  # the flash kernel saves its (possibly copied) inputs
        t.free(
            *(name for key, name in (("q", "theta"), ("k", "phi"), ("v", "g")) if s["sdpa_" + key] != name)
        )
    t.alloc("seed", b * n * c * e)  # ones_like(y), held by the caller
    t.alloc("d_bn", b * n * c * e), t.alloc("d_bn_w", c * e), t.alloc("d_bn_b", c * e)
    t.free("conv_out", "mean", "invstd")
    d_y = t.alloc("d_y", b * n * cv * e)  # conv_out's input gradient (B, Cv, H, W)
    t.alloc("d_conv_out_w", c * cv * e)
    t.free("d_bn", None if s["kind"] == "flash" else out)  # flash saved its output for its backward
    dq, dk, dv = _attention_backward(t, "", s, d_y)
    parts = []
    for name, d, cout in (("g", dv, cv), ("phi", dk, ck)):
        parts.append(t.alloc(f"{name}_d_in", b * c * k * e))
        t.alloc(f"{name}_d_w", c * cout * e), t.alloc(f"{name}_d_b", cout * e)
        t.free(d)
    t.free("xs")
    d_xs = grad_sum(t, "d_xs", parts, b * c * k * e)
    d_theta = t.alloc("theta_d_in", b * n * c * e)
    t.alloc("theta_d_w", c * ck * e), t.alloc("theta_d_b", ck * e)
    t.free(dq)
    acc = t.alloc("d_x_sum", b * n * c * e)  # seed + theta's part
    t.free(d_theta)
    zeros = t.alloc("d_gather_zeros", b * n * c * e)  # index_select backward: new_zeros + index_add
    gathered = t.alloc("d_gather", b * n * c * e)
    t.free(zeros, d_xs, "idx")
    t.alloc("d_x", b * n * c * e)
    t.free(acc, gathered)
    return t


# ---- criss_cross ----


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


# ---- linear ----


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


# ---- channelized_axial ----


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
    gradients and v's gradient are summed across chunks (``memory.accumulate``). Returns the name of the
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
