"""Closed-form costs of ``isa`` (blocks/isa.py; Huang et al., "Interlaced Sparse Self-Attention", 2019).

H' = Q_h P_h, W' = Q_w P_w (padded size, Q = ceil(size / P)), N' = H' W'. Two stages, C -> C each:
  long range:  B P_h P_w maps of Q_h Q_w positions;  short range: B Q_h Q_w maps of P_h P_w positions.
  MACs = 2 B N' (C Ck + C Cv + Cv C)                            [1x1 convs of both stages]
       + B N' (Q_h Q_w + P_h P_w) (Ck + Cv)                     [Q K^T and A V of both stages]
The attention term is (HW)^2 (Ck + Cv) / (P_h P_w) + HW P_h P_w (Ck + Cv) for an undivided map, versus
(HW)^2 (Ck + Cv) for dense: the ISA paper's complexity comparison (Sec. 3.3), minimal at P_h P_w ~ sqrt(HW).
``masked`` changes which keys count, not the MACs (logits of padded keys are still computed).
Leaves out: padding/permutes (data movement), bias adds, BN, ReLU, scaling, masking, softmax
(``elementwise``).
"""

from __future__ import annotations

import math

from isaprof.formulas import common as fc
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula
from isaprof.formulas.dense import (
    stage_elementwise,
    stage_inference_moments,
    stage_macs,
    stage_params,
    stage_spec,
)


def isa_geometry(height: int, width: int, factor: tuple[int, int]) -> tuple[int, int, int, int, int, int]:
    """(Q_h, Q_w, pad_top, pad_bottom, pad_left, pad_right): the same arithmetic as
    ``isaprof.targets.blocks.isa.isa_geometry`` (duplicated: formulas import nothing of the torch side)."""
    ph, pw = factor
    if min(ph, pw) <= 0:
        raise ValueError(f"isa: factor must be two positive integers (P_h, P_w), got {factor!r}")
    qh, qw = math.ceil(height / ph), math.ceil(width / pw)
    pad_h, pad_w = qh * ph - height, qw * pw - width
    return qh, qw, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2


def factor_of(cfg: Config) -> tuple[int, int]:
    """The (P_h, P_w) option of ``cfg`` (default (8, 8), the block's default)."""
    ph, pw = cfg.option("factor", (8, 8))
    return int(ph), int(pw)


@formula("isa")
def isa(cfg: Config) -> Cost:
    """Costs of ``isa`` (see module docstring)."""
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    ph, pw = factor_of(cfg)
    qh, qw, *pads = isa_geometry(cfg.height, cfg.width, (ph, pw))
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    masked = bool(cfg.option("masked", False)) and sum(pads) > 0
    stages = [("long_", b * ph * pw, qh * qw), ("short_", b * qh * qw, ph * pw)]
    macs: dict[str, int] = {}
    train: dict[str, int] = {}
    elementwise: dict[str, int] = {}
    for prefix, maps, n in stages:
        fwd, bwd = stage_macs(prefix, maps, n, c, ck, cv, c, kernel)
        macs.update(fwd)
        train.update(bwd)
        elementwise.update(stage_elementwise(prefix, maps, n, ck, c, masked))
    inference, train_peak = isa_inference_peak(cfg), isa_train_peak(cfg)
    return Cost(
        params=2 * stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={"inference": inference.bytes, "train": train_peak.bytes},
        padded=(qh * ph, qw * pw),
        peak_tolerance=fp.tolerances(inference=fp.tolerance(inference), train=fp.tolerance(train_peak)),
    )


def _regroups(n: int, c: int, qh: int, qw: int, ph: int, pw: int) -> tuple[tuple, tuple, tuple]:
    """The three regroupings (``memory.regroup`` shapes): padded map -> long-range maps -> short-range
    maps -> padded map."""
    hp, wp = qh * ph, qw * pw
    r1 = ((n, c, hp, wp), (n, c, qh, ph, qw, pw), (0, 3, 5, 1, 2, 4), (n * ph * pw, c, qh, qw))
    r2 = ((n * ph * pw, c, qh, qw), (n, ph, pw, c, qh, qw), (0, 4, 5, 3, 1, 2), (n * qh * qw, c, ph, pw))
    r3 = ((n * qh * qw, c, ph, pw), (n, qh, qw, c, ph, pw), (0, 3, 1, 4, 2, 5), (n, c, hp, wp))
    return r1, r2, r3


def _copies(shapes: tuple) -> bool:
    """Whether a regrouping (``memory.regroup`` shapes) copies, forward."""
    return fm.regroup_strides(shapes) is None


def mask_bytes(n: int, qh: int, qw: int, ph: int, pw: int) -> int:
    """Bytes the two key masks of ``blocks.isa`` hold through the forward (bool): each mask is an
    expanded view of the (H', W') validity grid regrouped like its stage, copied where the view is
    impossible; two views of the one grid hold it once."""
    cells = qh * ph * qw * pw  # the (H', W') validity grid, 1 B a cell
    grid, grid_strides = (qh, ph, qw, pw), fm.contiguous_strides((qh, ph, qw, pw))
    held: dict[str, int] = {}
    for name, perm, m in (("long", (1, 3, 0, 2), qh * qw), ("short", (0, 2, 1, 3), ph * pw)):
        base_shape = (1, grid[perm[0]] * grid[perm[1]], 1, m)
        shape, strides = [grid[p] for p in perm], [grid_strides[p] for p in perm]
        view = fm.view_strides(shape, strides, base_shape)  # (1, maps, 1, M): a view of the grid, or a copy
        base = "valid grid" if view is not None else name + " base"
        strides = view or fm.contiguous_strides(base_shape)
        expanded = (n, base_shape[1], 1, m)  # expanded over the batch, then merged: a copy unless it folds
        if fm.view_copies(expanded, (0, strides[1], strides[2], strides[3]), (n * base_shape[1], 1, m)):
            held[name + " mask"] = n * base_shape[1] * m * fm.BOOL_BYTES
        else:
            held[base] = cells * fm.BOOL_BYTES
    return sum(held.values())


def isa_inference_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``isa`` inference: the largest of (each beside the key masks, ``masked`` only)

    * the pad and its long-range regroup copy (2 B C H' W' b);
    * each stage's moments (`dense.stage_inference_moments`) beside that stage's input copy (B C H' W' b);
    * a stage output beside its regroup copy (2 B C H' W' b), between the stages and before the crop.

    With naive attention the peak is the larger stage's two logit buffers, long range
    2 B P_h P_w (Q_h Q_w)^2 b or short range 2 B Q_h Q_w (P_h P_w)^2 b, beside value, query, key
    (B N' (Cv + 2 Ck) b) and the stage input: the stages run one after the other, so only one
    stage's buffers are ever live.
    """
    n, c, b = cfg.batch, cfg.channels, cfg.dtype_bytes
    ph, pw = factor_of(cfg)
    qh, qw, top, bottom, left, right = isa_geometry(cfg.height, cfg.width, (ph, pw))
    padded = top + bottom + left + right > 0
    masked = bool(cfg.option("masked", False)) and padded
    full = n * c * qh * ph * qw * pw * b
    masks = {"key masks": mask_bytes(n, qh, qw, ph, pw)} if masked else {}
    r1, r2, r3 = _regroups(n, c, qh, qw, ph, pw)
    inputs = [full if (_copies(r1) or padded) else 0, full]  # stage 1 reads stage 0's output or its copy
    found = [
        fp.moment(
            "pad + long-range regroup",
            padded_input=full if padded else 0,
            long_range_input=full if padded and _copies(r1) else 0,
        )
    ]
    for i, (name, maps, m, shapes) in enumerate(
        (("long-range", n * ph * pw, qh * qw, r1), ("short-range", n * qh * qw, ph * pw, r2))
    ):
        s = stage_spec(cfg, maps, m, masked, channels_last_regroup(shapes))
        found += [
            fp.Moment(f"{name} {x.name}", x.live, x.movable).plus({"stage input": inputs[i]})
            for x in stage_inference_moments(s)
        ]
    found.append(
        fp.moment("short-range regroup", long_range_output=full, short_range_input=full if _copies(r2) else 0)
    )
    found.append(fp.moment("final regroup", short_range_output=full, output=full if _copies(r3) else 0))
    return fp.peak_set(x.plus(masks) for x in found)


def channels_last_regroup(shapes: tuple) -> bool:
    """Whether a stage input regrouped by ``shapes`` (see `memory.regroup`) is a channels-last view."""
    strides = fm.regroup_strides(shapes)
    return strides is not None and fm.is_channels_last(shapes[3], strides)


def isa_train_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``isa`` train: the largest of

    * forward: the pad beside its long-range regroup copy; each stage's candidates
      (`train_sets.stage_forward`) beside what the block holds then (key masks, the saved stage inputs, the
      long-range output); the short-range output beside its final regroup copy;
    * backward: the crop's ``slice_backward`` buffers beside the seed; each regroup's gradient copy beside
      the gradient it copies; each stage's candidates (`train_sets.stage_backward`) and its input gradient's
      sums; the pad's backward (x's gradient beside the padded one).

    With naive / math attention and large stages it is the larger stage's softmax backward: three
    (maps, N, N) buffers, B P_h P_w (Q_h Q_w)^2 b each (long range) or B Q_h Q_w (P_h P_w)^2 b (short
    range), beside everything both stages saved; the stages run one after the other, so only one stage's
    (N, N) buffers are ever live.
    """
    n, c, h, w, b = cfg.batch, cfg.channels, cfg.height, cfg.width, cfg.dtype_bytes
    ph, pw = factor_of(cfg)
    qh, qw, top, bottom, left, right = isa_geometry(h, w, (ph, pw))
    padded = top + bottom + left + right > 0
    masked = bool(cfg.option("masked", False)) and padded
    full = n * c * qh * ph * qw * pw * b
    r1, r2, r3 = _regroups(n, c, qh, qw, ph, pw)
    specs = [
        stage_spec(cfg, n * ph * pw, qh * qw, masked, channels_last_regroup(r1)),
        stage_spec(cfg, n * qh * qw, ph * pw, masked, channels_last_regroup(r2)),
    ]
    prefixes = ("long-range ", "short-range ")
    found: list[fp.Moment] = []
    live: ts.Live = {"padded input": full} if padded else {}
    masks = {"key masks": mask_bytes(n, qh, qw, ph, pw)} if masked else {}
    live.update(masks)
    # the stage inputs: a regroup copy, or (a view) the pad / the long-range output, saved by the convs
    inputs = [
        "long-range input" if _copies(r1) else ("padded input" if padded else None),
        "short-range input" if _copies(r2) else None,  # a view of the long-range output: dies with it
    ]
    if _copies(r1):
        found.append(ts.at("long-range regroup", live, **{"long-range input": full}))
        live = {**ts.without(live, "padded input"), "long-range input": full}
    for i, (p, s) in enumerate(zip(prefixes, specs, strict=True)):
        if i == 1 and _copies(r2):
            live["short-range input"] = full
        more, live = ts.stage_forward(p, s, live)
        found += more
    if _copies(r3):  # the output, held by the caller to the end
        found.append(ts.at("final regroup", live, output=full))
        live["output"] = full
    live = ts.without(live, *masks)  # the masks die with the forward (naive saved its own ~mask)
    out_is_y1 = not _copies(r3)
    # backward: ones_like(out), held by the caller; the crop's slice_backward pads it back to (H', W')
    live["seed"] = n * c * h * w * b
    grad = "seed"
    if top + bottom > 0 and left + right > 0:
        found.append(ts.at("crop backward", live, d_crop_rows=n * c * h * qw * pw * b, d_crop=full))
    elif padded:
        found.append(ts.at("crop backward", live, d_crop=full))
    if padded:
        live["d crop"], grad = full, "d crop"
    if fm.regroup_back_copies(r3):
        found.append(ts.at("final regroup backward", live, d_out=full))
        live = {**ts.without(live, None if grad == "seed" else grad), "d out": full}
        grad = "d out"
    for i in (1, 0):
        p, s = prefixes[i], specs[i]
        frees = (None if grad == "seed" else grad, None if (i == 1 and out_is_y1) else p + "w relu")
        more, live, parts = ts.stage_backward(p, s, live, grad, frees)
        found += more
        live = ts.without(live, inputs[i])
        more, live = ts.grad_sum(p + "d_x", live, parts, full)
        found += more
        grad = f"{p}d_x sum 1"
        if fm.regroup_back_copies((r1, r2)[i]):
            found.append(ts.at(p + "regroup backward", live, **{p + "d_regroup": full}))
            live = {**ts.without(live, grad), p + "d_regroup": full}
            grad = p + "d_regroup"
    if padded:
        found.append(ts.at("pad backward", live, d_x=n * c * h * w * b))
    return fp.peak_set(found)
