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
from isaprof.formulas.base import Config, Cost, formula
from isaprof.formulas.dense import stage_elementwise, stage_macs, stage_params


def isa_geometry(height: int, width: int, factor: tuple[int, int]) -> tuple[int, int, int, int, int, int]:
    """(Q_h, Q_w, pad_top, pad_bottom, pad_left, pad_right): the same arithmetic as
    ``isaprof.blocks.isa.isa_geometry`` (duplicated: formulas import nothing of the torch side)."""
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
    return Cost(
        params=2 * stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={},  # NOT DERIVED YET (see fc.PEAK_BYTES_TODO)
        notes=(fc.PEAK_BYTES_TODO,),
        padded=(qh * ph, qw * pw),
    )
