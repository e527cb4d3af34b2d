"""Replay of ``isa``: pad, key masks, regroups and the long- then short-range dense stages."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.dense import stage_spec
from isaprof.formulas.isa import factor_of, isa_geometry
from tests.formulas.replays.dense import stage_backward, stage_forward
from tests.formulas.replays.trace import Trace, grad_sum, regroup, regrouped_channels_last


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
    nhwc = [regrouped_channels_last(r) for r in (r1, r2)]
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
