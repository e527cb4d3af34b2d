"""mmsegmentation's decode-head base and its heads without attention: FCN, PSP (PSPNet), ASPP (DeepLabV3).

References: ``mmseg/models/decode_heads/decode_head.py`` (``BaseDecodeHead``: ``conv_seg`` 1x1 with bias,
``Dropout2d(0.1)`` before it, ``in_index`` picks the backbone stage), ``fcn_head.py``, ``psp_head.py``,
``aspp_head.py``; mmcv's ``ConvModule`` with a norm (conv without bias, BN, ReLU). Names of modules and
parameters are mmseg's (``convs.0.conv``, ``conv_cat.bn``, ``psp_modules.0.1.conv``,
``image_pool.1.conv``, ``aspp_modules.1.conv``, ``bottleneck``, ``conv_seg``).

Departures: initialisation is PyTorch's default (mmseg draws ``conv_seg`` from N(0, 0.01)); the loss
is not computed (no labels: see :class:`isaprof.targets.networks.segmentor.Segmentor`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvModule(nn.Module):
    """mmcv ``ConvModule`` with BN and ReLU: k x k conv (no bias: a norm follows), BN, ReLU in place
    (mmcv's default)."""

    def __init__(self, c_in: int, c_out: int, k: int, *, padding: int = 0, dilation: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=padding, dilation=dilation, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.activate(self.bn(self.conv(x)))


def resize(x: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """mmseg ``resize``: bilinear, ``align_corners=False`` (every configuration here)."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class DecodeHead(nn.Module):
    """``BaseDecodeHead``: the stage ``in_index`` of the backbone's outputs in, ``num_classes`` logits out
    at the feature map's size; ``cls_seg`` = dropout + ``conv_seg`` (1x1, ``channels`` -> classes, bias).
    ``forward`` is the training forward (what the losses see); ``forward_test`` the test forward."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, *, in_index: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.in_channels, self.channels, self.num_classes, self.in_index = (
            in_channels, channels, num_classes, in_index,
        )  # fmt: skip
        self.conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else None

    def cls_seg(self, feat: Tensor) -> Tensor:
        if self.dropout is not None:
            feat = self.dropout(feat)
        return self.conv_seg(feat)  # (B, classes, h, w)

    def forward_test(self, inputs: tuple[Tensor, ...]) -> Tensor:
        """The test forward (mmseg ``forward_test``): the forward itself unless a head says otherwise."""
        return self(inputs)


class FCNHead(DecodeHead):
    """``num_convs`` ConvModules (in -> C, then C -> C), ``conv_cat`` on [x, out] when ``concat_input``.

    The auxiliary head of every network is ``FCNHead(1024, 256, num_convs=1, concat_input=False,
    in_index=2)`` (loss weight 0.4); FCN's decode head is ``FCNHead(2048, 512)`` (two convs, concat)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        num_convs: int = 2,
        kernel_size: int = 3,
        concat_input: bool = True,
        in_index: int = 3,
    ) -> None:
        super().__init__(in_channels, channels, num_classes, in_index=in_index)
        pad = kernel_size // 2
        convs = [ConvModule(in_channels, channels, kernel_size, padding=pad)]
        convs += [ConvModule(channels, channels, kernel_size, padding=pad) for _ in range(num_convs - 1)]
        self.convs = nn.Sequential(*convs)
        self.conv_cat = (
            ConvModule(in_channels + channels, channels, kernel_size, padding=pad) if concat_input else None
        )

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[self.in_index]  # (B, in, h, w)
        out = self.convs(x)  # (B, C, h, w)
        if self.conv_cat is not None:
            out = self.conv_cat(torch.cat([x, out], dim=1))  # (B, in + C, h, w) -> (B, C, h, w)
        return self.cls_seg(out)


class PSPHead(DecodeHead):
    """Pyramid pooling: per scale s, adaptive average pool to s x s, ConvModule 1x1 in -> C, bilinear back
    to h x w; ``bottleneck`` 3x3 on [x, 4 pooled maps] (in + 4C -> C)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        super().__init__(in_channels, channels, num_classes)
        self.psp_modules = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvModule(in_channels, channels, 1)) for s in pool_scales
        )
        self.bottleneck = ConvModule(in_channels + len(pool_scales) * channels, channels, 3, padding=1)

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[self.in_index]  # (B, in, h, w)
        outs = [x] + [resize(m(x), x.shape[2:]) for m in self.psp_modules]  # (B, in | C, h, w)
        return self.cls_seg(self.bottleneck(torch.cat(outs, dim=1)))


class ASPPHead(DecodeHead):
    """DeepLabV3's ASPP: image pooling (global average pool, ConvModule 1x1, bilinear back), one ConvModule
    per dilation (1x1 for dilation 1, else 3x3 with that dilation), ``bottleneck`` 3x3 on the five maps
    (5C -> C)."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
    ) -> None:
        super().__init__(in_channels, channels, num_classes)
        self.image_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvModule(in_channels, channels, 1))
        self.aspp_modules = nn.ModuleList(
            ConvModule(in_channels, channels, 1 if d == 1 else 3, padding=0 if d == 1 else d, dilation=d)
            for d in dilations
        )
        self.bottleneck = ConvModule((len(dilations) + 1) * channels, channels, 3, padding=1)

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[self.in_index]  # (B, in, h, w)
        outs = [resize(self.image_pool(x), x.shape[2:])] + [m(x) for m in self.aspp_modules]
        return self.cls_seg(self.bottleneck(torch.cat(outs, dim=1)))  # (B, 5C, h, w) -> logits
