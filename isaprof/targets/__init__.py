"""Attention blocks (``nn.Module``, one file each) and the catalogue that registers them.

This file imports no torch: each built-in block is declared by its import path and imported on its
first build, so listing names and options (``isaprof list``, ``--help``, sweeps, reports) is instant.
Adding a built-in block is one :func:`declare` entry below (the order here is the order in tables and
plots); a block outside the package registers itself with :func:`register` or an ``isaprof.targets``
entry point.
"""

from isaprof.targets.registry import (
    BlockSpec,
    build,
    configure,
    declare,
    names,
    register,
    resolve_channels,
    spec,
)

_BOTH = ("naive", "sdpa")

declare(
    "dense",
    "isaprof.targets.blocks.dense:DenseAttention",
    summary="dense self-attention over all HW positions (OCNet / openseg SelfAttentionBlock2D)",
    impls=_BOTH,
)
declare(
    "non_local",
    "isaprof.targets.blocks.non_local:NonLocal",
    summary="non-local block, embedded Gaussian, residual (mmcv NonLocal2d + BN)",
    impls=_BOTH,
    # 2x2 sub-sampling of phi and g drops the last row / column of an odd-sized map
    fully_connected=lambda o, s: not o["sub_sample"] or (s[0] % 2 == 0 and s[1] % 2 == 0),
)
declare(
    "isa",
    "isaprof.targets.blocks.isa:InterlacedSparseAttention",
    summary="interlaced sparse self-attention: long-range then short-range dense stages (openseg ISA_Block)",
    impls=_BOTH,
    # masked on a padded map: a pair whose one intermediate position is padding loses its only path
    fully_connected=lambda o, s: (
        not o["masked"] or (s[0] % o["factor"][0] == 0 and s[1] % o["factor"][1] == 0)
    ),
)
declare(
    "criss_cross",
    "isaprof.targets.blocks.criss_cross:CrissCross",
    summary="CCNet criss-cross attention (row + column, joint softmax), recurrence R",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
    fully_connected=lambda o, s: o["recurrence"] >= 2,  # R = 1 reaches only the row and column
)
declare(
    "axial",
    "isaprof.targets.blocks.axial:AxialAttention",
    summary="axial attention: row then column dense stages, separate weights (Ho et al. 2019)",
    impls=_BOTH,
)
declare(
    "channelized_axial",
    "isaprof.targets.blocks.channelized_axial:ChannelizedAxial",
    summary="CAA: column-then-row axial attention with a channel gate on each weighted value map",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
)
declare(
    "sparse_nonlocal",
    "isaprof.targets.blocks.sparse_nonlocal:SparseNonLocal",
    summary="SSANet sparse non-local: each query attends to a fixed subset of k positions",
    impls=_BOTH,
    fully_connected=False,
)
declare(
    "linear",
    "isaprof.targets.blocks.linear:LinearAttention",
    summary="Linear attention (first-order Taylor softmax, L2-normalised q/k), cost linear in H*W",
    key_channels=lambda c: c // 8,
    value_channels=lambda c: c,
)

# The published heads around a block (isaprof/targets/heads.py), as the papers' code builds them: targets by
# name, not among names() (sweeps' "all", check and baseline mean the blocks). Each takes its block's
# impls, default widths and options, plus ``in_channels`` (the backbone width; default: ``channels``).
HEADS = {  # head name -> (the block inside it, its class in isaprof.targets.heads)
    "isa_head": ("isa", "ISAHead"),
    "dense_head": ("dense", "DenseHead"),
    "rcca_head": ("criss_cross", "CCHead"),
    "nl_head": ("non_local", "NLHead"),
}
for _head, (_block, _cls) in HEADS.items():
    _inner = spec(_block)
    declare(
        _head,
        f"isaprof.targets.heads:{_cls}",
        summary=f"the published head around {_block} (conv in, block, fusion with the input)",
        impls=_inner.impls,
        key_channels=_inner.default_key_channels,
        value_channels=_inner.default_value_channels,
        fully_connected=_inner.fully_connected,
        source="built-in head",
        listed=False,
    )

__all__ = [
    "HEADS",
    "BlockSpec",
    "build",
    "configure",
    "declare",
    "names",
    "register",
    "resolve_channels",
    "spec",
]
