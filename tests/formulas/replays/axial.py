"""Replay of ``axial``: the row stage, then the column stage, each a dense stage over one axis."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.dense import stage_spec
from tests.formulas.replays.dense import stage_backward, stage_forward
from tests.formulas.replays.trace import Trace, grad_sum, regroup, regrouped_channels_last


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
        specs.append(stage_spec(cfg, maps, n, nhwc=regrouped_channels_last(shapes)))
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
