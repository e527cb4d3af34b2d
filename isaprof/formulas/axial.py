"""Closed-form costs of ``axial`` (blocks/axial.py; Ho et al. 2019, row then column attention).

Row stage: B H maps of W positions; column stage: B W maps of H positions; C -> C each, N = H W:
  MACs = 2 B N (C Ck + C Cv + Cv C) + B N (W + H) (Ck + Cv)
i.e. O(HW (H + W) C) attention, against O((HW)^2 C) dense (Ho et al., Sec. 3; Axial-DeepLab Sec. 3.1).
No positional terms (the block's departure from Axial-DeepLab). Leaves out: permute copies, bias adds,
BN, ReLU, scaling, softmax (``elementwise``).
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas.base import Config, Cost, formula
from isaprof.formulas.dense import stage_elementwise, stage_macs, stage_params


@formula("axial")
def axial(cfg: Config) -> Cost:
    """Costs of ``axial`` (see module docstring)."""
    b, c, ck, cv, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.height, cfg.width
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    macs: dict[str, int] = {}
    train: dict[str, int] = {}
    elementwise: dict[str, int] = {}
    for prefix, maps, n in (("row_", b * h, w), ("column_", b * w, h)):
        fwd, bwd = stage_macs(prefix, maps, n, c, ck, cv, c, kernel)
        macs.update(fwd)
        train.update(bwd)
        elementwise.update(stage_elementwise(prefix, maps, n, ck, c))
    return Cost(
        params=2 * stage_params(c, ck, cv, c),
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={},  # NOT DERIVED YET (see fc.PEAK_BYTES_TODO)
        notes=(fc.PEAK_BYTES_TODO,),
        padded=(h, w),
    )
