"""Closed-form costs of ``axial`` (blocks/axial.py; Ho et al. 2019, row then column attention).

Row stage: B H maps of W positions; column stage: B W maps of H positions; C -> C each, N = H W:
  MACs = 2 B N (C Ck + C Cv + Cv C) + B N (W + H) (Ck + Cv)
i.e. O(HW (H + W) C) attention, against O((HW)^2 C) dense (Ho et al., Sec. 3; Axial-DeepLab Sec. 3.1).
No positional terms (the block's departure from Axial-DeepLab). Leaves out: permute copies, bias adds,
BN, ReLU, scaling, softmax (``elementwise``).
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas import dense as fd
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula


@formula("axial")
def axial(cfg: Config) -> Cost:
    """Costs of ``axial`` (see module docstring)."""
    b, c, ck, cv, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.height, cfg.width
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    macs: dict[str, int] = {}
    train: dict[str, int] = {}
    elementwise: dict[str, int] = {}
    for prefix, maps, n in (("row_", b * h, w), ("column_", b * w, h)):
        fwd, bwd = fd.stage_macs(prefix, maps, n, c, ck, cv, c, kernel)
        macs.update(fwd)
        train.update(bwd)
        elementwise.update(fd.stage_elementwise(prefix, maps, n, ck, c))
    inference, train_peak = axial_inference_peak(cfg), axial_train_peak(cfg)
    return Cost(
        params=2 * fd.stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={"inference": inference.bytes, "train": train_peak.bytes},
        padded=(h, w),
        peak_tolerance=fp.tolerances(inference=fp.tolerance(inference), train=fp.tolerance(train_peak)),
    )


def _regroups(b: int, c: int, h: int, w: int) -> tuple[tuple, tuple, tuple]:
    """The three regroupings (``memory.regroup`` shapes): input -> rows -> columns -> output layout."""
    r0 = ((b, c, h, w), (b, c, h, w), (0, 2, 1, 3), (b * h, c, 1, w))
    r1 = ((b * h, c, 1, w), (b, h, c, w), (0, 3, 2, 1), (b * w, c, h, 1))
    r2 = ((b * w, c, h, 1), (b, w, c, h), (0, 2, 3, 1), (b, c, h, w))
    return r0, r1, r2


def _stage(cfg: Config, maps: int, n: int, shapes: tuple) -> dict:
    strides = fm.regroup_strides(shapes)
    return fd.stage_spec(cfg, maps, n, nhwc=strides is not None and fm.is_channels_last(shapes[3], strides))


def axial_inference_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``axial`` inference: the largest of the row stage's moments beside its input copy, the
    column stage's beside the row output (held by the block to the end) and its input copy, and the end
    (row output, column output, the final contiguous copy). Stage moments: `dense.stage_inference_moments`.

    With naive attention it is the longer axis' two logit buffers, 2 B H W^2 b (rows) or 2 B W H^2 b
    (columns), beside that stage's value, query, key (B H W (Cv + 2 Ck) b) and its held inputs.
    """
    b, c, h, w = cfg.batch, cfg.channels, cfg.height, cfg.width
    full = b * c * h * w * cfg.dtype_bytes
    r0, r1, r2 = _regroups(b, c, h, w)
    copy = [full if fm.regroup_strides(r) is None else 0 for r in (r0, r1)]
    found = [x.plus({"row input": copy[0]}) for x in fd.stage_inference_moments(_stage(cfg, b * h, w, r0))]
    found.append(fp.moment("column regroup", row_output=full, column_input=copy[1]))
    found += [
        x.plus({"row output": full, "column input": copy[1]})
        for x in fd.stage_inference_moments(_stage(cfg, b * w, h, r1))
    ]
    out = 0 if fm.permuted_is_contiguous(r2[1], r2[2]) else full
    found.append(fp.moment("final copy", row_output=full, column_output=full, output=out))
    return fp.peak_set(found)


def axial_train_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``axial`` train: the largest of the row stage's candidates (`train_sets.stage_forward`,
    `train_sets.stage_backward`) beside its input copy, the column stage's beside the row stage's saved
    activations, output and input copy, the final copy (the output, held by the caller), the seed's and
    the row gradient's regroup copies, each stage's input-gradient sums, and x's gradient copied into x's
    layout by AccumulateGrad.

    With naive / math attention it is the longer axis' softmax backward: three (maps, N, N) buffers,
    B H W^2 b (rows) or B W H^2 b (columns) each, beside everything both stages saved.
    """
    b, c, h, w = cfg.batch, cfg.channels, cfg.height, cfg.width
    full = b * c * h * w * cfg.dtype_bytes
    r0, r1, r2 = _regroups(b, c, h, w)
    specs = [_stage(cfg, b * h, w, r0), _stage(cfg, b * w, h, r1)]
    prefixes = ("row ", "column ")
    inputs = ["row input" if fm.regroup_strides(r0) is None else None]
    inputs.append("column input" if fm.regroup_strides(r1) is None else None)  # else a view of the row output
    found: list[fp.Moment] = []
    live: ts.Live = {}
    for p, s, x in zip(prefixes, specs, inputs, strict=True):
        if x is not None:
            live[x] = full
        more, live = ts.stage_forward(p, s, live)
        found += more
    out_is_y1 = fm.permuted_is_contiguous(r2[1], r2[2])
    if not out_is_y1:  # the output, held by the caller to the end
        found.append(ts.at("final copy", live, output=full))
        live["output"] = full
    live["seed"] = full  # ones_like(out), held by the caller to the end
    grad = "seed"
    if fm.regroup_back_copies(r2):
        found.append(ts.at("output regroup backward", live, d_out=full))
        live["d out"], grad = full, "d out"
    for i in (1, 0):
        p, s = prefixes[i], specs[i]
        frees = (None if grad == "seed" else grad, None if (i == 1 and out_is_y1) else p + "w relu")
        more, live, parts = ts.stage_backward(p, s, live, grad, frees)
        found += more
        more, live = ts.grad_sum(p + "d_x", ts.without(live, inputs[i]), parts, full)
        found += more
        grad = p + "d_x sum 1"
        if i == 1 and fm.regroup_back_copies(r1):
            found.append(ts.at("row regroup backward", live, d_rows=full))
            live = {**ts.without(live, grad), "d rows": full}
            grad = "d rows"
    if not fm.permuted_is_contiguous((b, h, c, w), (0, 2, 1, 3)):
        found.append(ts.at("x gradient copy", live, d_x=full))  # AccumulateGrad: into x's layout
    return fp.peak_set(found)
