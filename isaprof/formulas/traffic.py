"""Closed forms of the dominant bytes moved by ``dense`` and ``isa`` (naive attention, inference).

Model of ``isaprof.measure.traffic``: each op reads its inputs and writes its outputs once (unfused). With
b = dtype bytes, one attention stage over ``maps`` maps of n positions (keys m = n), Ck / Cv channels:

  Q K^T (bmm)        reads maps n Ck + maps m Ck, writes the affinity maps n m       [b each]
  scale (mul)        reads and writes maps n m
  softmax            reads and writes maps n m
  A V (bmm)          reads maps n m + maps m Cv, writes maps n Cv
  context copy       transpose(1, 2).contiguous(): reads and writes maps n Cv (clone)

so the affinity alone moves 6 maps n m b (1 write + 2 + 2 + 1 read): 6 B N^2 b for dense (N = HW), and
6 B N' (Q_h Q_w + P_h P_w) b for ISA's two stages. ISA adds its regroupings: each ``permute`` followed by a
``reshape`` of a non-viewable layout is a copy reading and writing B C N' b (which of the three copy:
``memory.regroup_strides``; term ``regroup_copy``). Leaves out: 1x1 convs, BatchNorm, ReLU (linear in N), pad.
"""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.isa import factor_of, isa_geometry


def stage_traffic(prefix: str, maps: int, n: int, ck: int, cv: int, b: int) -> dict[str, int]:
    """Bytes moved by one naive attention stage's matrix/softmax ops, by term (see module docstring)."""
    m = n
    return {
        prefix + "qk_bmm": maps * (n * ck + m * ck + n * m) * b,
        prefix + "scale_mul": 2 * maps * n * m * b,
        prefix + "softmax": 2 * maps * n * m * b,
        prefix + "av_bmm": maps * (n * m + m * cv + n * cv) * b,
        prefix + "context_copy": 2 * maps * n * cv * b,
    }


def affinity_bytes(maps: int, n: int, b: int) -> int:
    """Bytes the (maps, n, n) affinity moves: written by Q K^T, read + written by scale and softmax, read by
    A V: 6 maps n^2 b."""
    return 6 * maps * n * n * b


def dense_traffic(cfg: Config) -> dict[str, int]:
    """Dominant bytes moved by ``dense`` (naive, inference), by term."""
    n = cfg.height * cfg.width
    return stage_traffic("", cfg.batch, n, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes)


def isa_traffic(cfg: Config) -> dict[str, int]:
    """Dominant bytes moved by ``isa`` (naive, inference, a factor dividing the size), by term."""
    bsz, c, b = cfg.batch, cfg.channels, cfg.dtype_bytes
    ph, pw = factor_of(cfg)
    qh, qw, *pads = isa_geometry(cfg.height, cfg.width, (ph, pw))
    if any(pads):
        raise ValueError("isa_traffic: the factor must divide the size (padding is not modelled)")
    out = {
        **stage_traffic("long_", bsz * ph * pw, qh * qw, cfg.key_channels, cfg.value_channels, b),
        **stage_traffic("short_", bsz * qh * qw, ph * pw, cfg.key_channels, cfg.value_channels, b),
    }
    regroups = (
        (
            (bsz, c, qh * ph, qw * pw),
            (bsz, c, qh, ph, qw, pw),
            (0, 3, 5, 1, 2, 4),
            (bsz * ph * pw, c, qh, qw),
        ),
        (
            (bsz * ph * pw, c, qh, qw),
            (bsz, ph, pw, c, qh, qw),
            (0, 4, 5, 3, 1, 2),
            (bsz * qh * qw, c, ph, pw),
        ),
        (
            (bsz * qh * qw, c, ph, pw),
            (bsz, qh, qw, c, ph, pw),
            (0, 3, 1, 4, 2, 5),
            (bsz, c, qh * ph, qw * pw),
        ),
    )
    copies = sum(fm.regroup_strides(r) is None for r in regroups)
    out["regroup_copy"] = copies * 2 * bsz * c * qh * ph * qw * pw * b
    return out
