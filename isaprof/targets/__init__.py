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

# The segmentation networks of the papers (isaprof/targets/networks/), as mmsegmentation's *_r{50,101}-d8
# configurations build them: targets by name (``isaprof.profile("isanet_r50_d8", size=(1024, 2048))``), not
# among names(). Their input is an image (``channels`` defaults to 3); ``key_channels`` / ``value_channels``
# are the attention widths inside the decode head (the head's width 512 where there is no attention).
# Adding a network is one entry here (and, for a new family, its class in isaprof.targets.networks.zoo).
NETWORKS = {  # name prefix -> (class in isaprof.targets.networks.zoo, key width, value width, impls, summary)
    "fcn": ("FCN", 512, 512, ("naive",), "FCN head (two 3x3 convs + concat), FCN aux"),
    "pspnet": ("PSPNet", 512, 512, ("naive",), "PSPNet pyramid pooling head (1, 2, 3, 6), FCN aux"),
    "deeplabv3": ("DeepLabV3", 512, 512, ("naive",), "DeepLabV3 ASPP head (1, 12, 24, 36), FCN aux"),
    "nonlocal": ("NonLocalNet", 256, 256, _BOTH, "NLHead: non-local block inside an FCN head, FCN aux"),
    "danet": ("DANet", 64, 512, _BOTH, "DANet head: position + channel attention, FCN aux"),
    "ccnet": ("CCNet", 64, 512, ("naive",), "CCNet head: criss-cross attention R = 2, FCN aux"),
    "isanet": ("ISANet", 256, 512, _BOTH, "ISANet head: interlaced sparse attention 8x8, FCN aux"),
    "ocrnet": ("OCRNet", 256, 256, _BOTH, "OCRNet cascade: FCN stage, then OCR head"),
}
DEPTHS = (50, 101)
for _family, (_cls, _ck, _cv, _impls, _summary) in NETWORKS.items():
    for _depth in DEPTHS:
        declare(
            f"{_family}_r{_depth}_d8",
            f"isaprof.targets.networks.zoo:{_cls}",
            summary=f"mmseg ResNetV1c-{_depth} D8 + {_summary}",
            impls=_impls,
            key_channels=lambda c, k=_ck: k,
            value_channels=lambda c, v=_cv: v,
            fully_connected=None,  # no structural claim: its output is a label map
            source="built-in network",
            listed=False,
            preset={"depth": _depth},
            channels=3,
        )


def network_names() -> list[str]:
    """The sixteen network targets, in catalogue order (r50 then r101 of each family)."""
    return [f"{f}_r{d}_d8" for f in NETWORKS for d in DEPTHS]


__all__ = [
    "HEADS",
    "NETWORKS",
    "network_names",
    "BlockSpec",
    "build",
    "configure",
    "declare",
    "names",
    "register",
    "resolve_channels",
    "spec",
]
