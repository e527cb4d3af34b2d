"""Attention blocks (``nn.Module``, one file each) and the catalogue that registers them.

This file imports no torch: each built-in block is declared by its import path and imported on its
first build, so listing names and options (``isaprof list``, ``--help``, sweeps, reports) is instant.
Adding a built-in block is one :func:`declare` entry below (the order here is the order in tables and
plots); a block outside the package registers itself with :func:`register` or an ``isaprof.blocks``
entry point.
"""

from isaprof.blocks.registry import BlockSpec, build, declare, names, register, resolve_channels, spec

_BOTH = ("naive", "sdpa")

declare(
    "dense",
    "isaprof.blocks.dense:DenseAttention",
    summary="dense self-attention over all HW positions (OCNet / openseg SelfAttentionBlock2D)",
    impls=_BOTH,
)
declare(
    "non_local",
    "isaprof.blocks.non_local:NonLocal",
    summary="non-local block, embedded Gaussian, residual (mmcv NonLocal2d + BN)",
    impls=_BOTH,
    # 2x2 sub-sampling of phi and g drops the last row / column of an odd-sized map
    fully_connected=lambda o, s: not o["sub_sample"] or (s[0] % 2 == 0 and s[1] % 2 == 0),
)
declare(
    "isa",
    "isaprof.blocks.isa:InterlacedSparseAttention",
    summary="interlaced sparse self-attention: long-range then short-range dense stages (openseg ISA_Block)",
    impls=_BOTH,
    # masked on a padded map: a pair whose one intermediate position is padding loses its only path
    fully_connected=lambda o, s: (
        not o["masked"] or (s[0] % o["factor"][0] == 0 and s[1] % o["factor"][1] == 0)
    ),
)
declare(
    "criss_cross",
    "isaprof.blocks.criss_cross:CrissCross",
    summary="CCNet criss-cross attention (row + column, joint softmax), recurrence R",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
    fully_connected=lambda o, s: o["recurrence"] >= 2,  # R = 1 reaches only the row and column
)
declare(
    "axial",
    "isaprof.blocks.axial:AxialAttention",
    summary="axial attention: row then column dense stages, separate weights (Ho et al. 2019)",
    impls=_BOTH,
)
declare(
    "channelized_axial",
    "isaprof.blocks.channelized_axial:ChannelizedAxial",
    summary="CAA: column-then-row axial attention with a channel gate on each weighted value map",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
)
declare(
    "sparse_nonlocal",
    "isaprof.blocks.sparse_nonlocal:SparseNonLocal",
    summary="SSANet sparse non-local: each query attends to a fixed subset of k positions",
    impls=_BOTH,
    fully_connected=False,
)
declare(
    "linear",
    "isaprof.blocks.linear:LinearAttention",
    summary="Linear attention (first-order Taylor softmax, L2-normalised q/k), cost linear in H*W",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
)

__all__ = ["BlockSpec", "build", "declare", "names", "register", "resolve_channels", "spec"]
