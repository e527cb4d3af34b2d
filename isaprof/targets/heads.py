"""Published segmentation heads around an attention block, as the reference code builds them (no classifier).

* ``isa_head``: openseg ``ISANet`` head: 3x3 conv in->C (bias) + BN + ReLU, then ``ISA_Module``: the ISA
  block, concat [x, block(x)] and a 1x1 conv 2C->C (no bias) + BN + ReLU (openseg ``isa_block.py``).
* ``dense_head``: the same head around dense self-attention (openseg's "SA" baseline, ``BaseOC_Module``).
* ``rcca_head``: CCNet ``RCCAModule`` (speedinghzl/CCNet ``networks/ccnet.py``; mmseg ``cc_head.py``):
  conva 3x3 in->C, R criss-cross passes, convb 3x3 C->C, bottleneck 3x3 on concat [x, out] (in+C -> C),
  each conv without bias + BN + ReLU.
* ``nl_head``: mmseg ``NLHead`` (``decode_heads/nl_head.py``, an ``FCNHead`` with ``num_convs=2``):
  convs[0] 3x3 in->C, ``NonLocal2d``, convs[1] 3x3 C->C, ``conv_cat`` 3x3 on concat [x, out] (in+C -> C)
  (``concat_input=True``); ``ConvModule`` with BN: no bias, BN + ReLU.

Constructor: the registry's ``(channels, key_channels, value_channels, *, impl, **options)`` with
``channels`` = C, the block's (and the head's output) width, plus the option ``in_channels`` (the
backbone's width, 2048 in the papers). Departure: ``in_channels=None`` means C, so that by default the
head maps (B, C, H, W) -> (B, C, H, W) like every block; the papers' heads need ``in_channels=2048`` and an
input of that width (``head.in_channels``). Dropout and the classifier (``cls_seg``) are left out: no MACs.

The catalogue (:data:`isaprof.targets.HEADS`) declares them, with the block each wraps: targets by name
(``isaprof.profile("isa_head", ...)``), not among ``names()``: they have no structural connectivity model or
closed-form peak yet, and ``check``, ``baseline`` and ``sweep blocks = "all"`` mean the blocks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from isaprof.targets import HEADS as DECLARED
from isaprof.targets.registry import build


def bn_relu(channels: int) -> nn.Sequential:
    """BatchNorm + ReLU, openseg's ``ModuleHelper.BNReLU``."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU())


def conv_bn_relu(c_in: int, c_out: int, k: int, bias: bool = False) -> nn.Sequential:
    """k x k conv (same padding) + BN + ReLU: mmcv ``ConvModule`` with BN, openseg's conv + ``BNReLU``."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias), bn_relu(c_out))


class OpensegHead(nn.Module):
    """openseg's head: 3x3 conv in->C (bias) + BN + ReLU, then ``block`` and openseg's fusion.

    Fusion (``ISA_Module.conv_bn`` / ``BaseOC_Module``): concat [x, block(x)] -> 1x1 conv 2C->C (no bias)
    + BN + ReLU. Without ``block`` only the 3x3 conv (+ BN + ReLU) runs.
    """

    block_module = "block"  # the attention block's submodule name

    def __init__(self, in_channels: int, channels: int, block: nn.Module | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conv = conv_bn_relu(in_channels, channels, 3, bias=True)
        self.block = block
        self.fuse = None if block is None else conv_bn_relu(2 * channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)  # (B, C, H, W)
        if self.block is None:
            return x
        return self.fuse(torch.cat([x, self.block(x)], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)


class RCCAHead(nn.Module):
    """CCNet's ``RCCAModule``, no classifier: conva, R x criss-cross, convb, bottleneck on [x, out]."""

    block_module = "cca"  # the attention block's submodule name

    def __init__(
        self, in_channels: int, channels: int, key_channels: int, recurrence: int, impl: str = "naive"
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.conva = conv_bn_relu(in_channels, channels, 3)
        self.cca = build("criss_cross", channels, key_channels, channels, impl=impl, recurrence=recurrence)
        self.convb = conv_bn_relu(channels, channels, 3)
        self.bottleneck = conv_bn_relu(in_channels + channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convb(self.cca(self.conva(x)))  # (B, C, H, W)
        return self.bottleneck(torch.cat([x, out], dim=1))  # (B, in + C, H, W) -> (B, C, H, W)


class FCNStyleHead(nn.Module):
    """mmseg's ``NLHead`` shape: convs[0] 3x3 in->C, ``block``, convs[1] 3x3 C->C, conv_cat on [x, out]."""

    block_module = "block"  # the attention block's submodule name

    def __init__(self, in_channels: int, channels: int, block: nn.Module) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.convs = nn.Sequential(conv_bn_relu(in_channels, channels, 3))
        self.block = block
        self.convs_after = conv_bn_relu(channels, channels, 3)
        self.conv_cat = conv_bn_relu(in_channels + channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        out = self.convs_after(self.block(self.convs(x)))  # (B, C, H, W)
        return self.conv_cat(torch.cat([x, out], dim=1))  # (B, in + C, H, W) -> (B, C, H, W)


class ISAHead(OpensegHead):
    """openseg ISANet head around ISA (``factor`` = the reference code's ``down_factor``)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        in_channels: int | None = None,
        factor: tuple[int, int] = (8, 8),
        masked: bool = False,
    ) -> None:
        inner = build("isa", channels, key_channels, value_channels, impl=impl, factor=factor, masked=masked)
        super().__init__(in_channels or channels, channels, inner)


class DenseHead(OpensegHead):
    """openseg's head around dense self-attention (the papers' "SA" / OCNet baseline)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        in_channels: int | None = None,
    ) -> None:
        inner = build("dense", channels, key_channels, value_channels, impl=impl)
        super().__init__(in_channels or channels, channels, inner)


class CCHead(RCCAHead):
    """CCNet's RCCA head (``value_channels`` must equal ``channels``, as in criss-cross)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        in_channels: int | None = None,
        recurrence: int = 2,
    ) -> None:
        if value_channels != channels:
            raise ValueError(f"rcca_head: value_channels must be channels ({channels}), got {value_channels}")
        super().__init__(in_channels or channels, channels, key_channels, recurrence, impl)


class NLHead(FCNStyleHead):
    """mmseg's NLHead around the non-local block (embedded Gaussian, ``reduction=2``: Ck = Cv = C/2)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        in_channels: int | None = None,
        sub_sample: bool = False,
    ) -> None:
        inner = build("non_local", channels, key_channels, value_channels, impl=impl, sub_sample=sub_sample)
        super().__init__(in_channels or channels, channels, inner)


# name -> (the block inside, the head class), from the catalogue's declaration; the block is the head's
# submodule ``block_module``
HEADS: dict[str, tuple[str, type[nn.Module]]] = {n: (b, globals()[c]) for n, (b, c) in DECLARED.items()}


def register_heads() -> list[str]:
    """The heads' target names. They are declared in the catalogue (:mod:`isaprof.targets`), reachable by name
    (``isaprof.profile("isa_head", ...)``) but not among ``names()``: nothing is registered here."""
    return list(HEADS)


def build_head(
    name: str,
    channels: int,
    key_channels: int | None = None,
    value_channels: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build head ``name`` without registering it: widths default as its inner block's."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; known heads: {', '.join(HEADS)}")
    return build(
        name, channels, key_channels, value_channels, **options
    )  # the catalogue's widths: the block's
