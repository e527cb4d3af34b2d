"""The corpus: attention blocks and heads that nobody here wrote, each as a factory of a ``(B, C, H, W) ->
(B, C, H, W)`` module (the layout isaprof traces).

Modules from installed packages (PyTorch itself; transformers, an optional extra) are used as shipped;
:class:`Tokens` only flattens the map into the ``(B, H W, C)`` tokens they take and back. Two heads are
re-expressed here from their reference repositories (same layers, same order, same resize calls), with
the source named in their docstrings: :class:`ASPPHead` (torchvision's DeepLabV3) and :class:`PPMHead`
(PSPNet's pyramid pooling as in hszhao/semseg).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Tokens(nn.Module):
    """``(B, C, H, W)`` map -> ``(B, H W, C)`` tokens -> ``call(inner, tokens, H, W)`` -> map again.

    ``call`` returns the tokens (the first element where the module returns a tuple)."""

    def __init__(self, inner: nn.Module, call: Callable[[nn.Module, Tensor, Any, Any], Any]) -> None:
        super().__init__()
        self.inner, self.call = inner, call

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        out = self.call(self.inner, x.flatten(2).transpose(1, 2), h, w)
        if isinstance(out, tuple):
            out = out[0]
        return out.transpose(1, 2).reshape(b, c, h, w)


class ASPPHead(nn.Module):
    """DeepLabV3's head: atrous spatial pyramid pooling, then a 3x3 conv and the classifier.

    Re-expressed from torchvision, ``torchvision/models/segmentation/deeplabv3.py`` (``DeepLabHead``,
    ``ASPP``, ``ASPPConv``, ``ASPPPooling``; BSD-3-Clause): branches 1x1 conv, three 3x3 convs dilated by
    ``rates`` (padding = dilation), and image pooling (``AdaptiveAvgPool2d(1)``, 1x1 conv, resized back
    with ``F.interpolate(size=x.shape[-2:], mode="bilinear", align_corners=False)``), each conv followed
    by BN and ReLU; concatenated, projected by a 1x1 conv (BN, ReLU, dropout 0.5), then 3x3 conv, BN,
    ReLU and the 1x1 classifier. Widths scaled down (``width`` for torchvision's 256)."""

    def __init__(self, channels: int, classes: int, rates: tuple[int, ...] = (12, 24, 36), width: int = 256):
        super().__init__()

        def unit(conv: nn.Conv2d) -> nn.Sequential:
            return nn.Sequential(conv, nn.BatchNorm2d(width), nn.ReLU())

        self.branches = nn.ModuleList([unit(nn.Conv2d(channels, width, 1, bias=False))])
        for r in rates:
            self.branches.append(unit(nn.Conv2d(channels, width, 3, padding=r, dilation=r, bias=False)))
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), unit(nn.Conv2d(channels, width, 1, bias=False)))
        n = len(self.branches) + 1
        self.project = nn.Sequential(unit(nn.Conv2d(n * width, width, 1, bias=False)), nn.Dropout(0.5))
        self.head = nn.Sequential(
            unit(nn.Conv2d(width, width, 3, padding=1, bias=False)), nn.Conv2d(width, classes, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(F.interpolate(self.pooling(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.head(self.project(torch.cat(outs, dim=1)))


class PPMHead(nn.Module):
    """PSPNet's pyramid pooling module, concatenated with its input (``PPM`` of hszhao/semseg,
    ``model/pspnet.py``; MIT): per bin, ``AdaptiveAvgPool2d(bin)``, 1x1 conv without bias, BN, ReLU, resized
    back with ``F.interpolate(..., x.size()[2:], mode="bilinear", align_corners=True)``; bins (1, 2, 3, 6),
    reduction to ``C / len(bins)`` channels as in PSPNet."""

    def __init__(self, channels: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        reduced = channels // len(bins)
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b), nn.Conv2d(channels, reduced, 1, bias=False), nn.BatchNorm2d(reduced),
                nn.ReLU(inplace=True),
            )
            for b in bins
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        size = x.size()
        out = [x]
        for f in self.features:
            out.append(F.interpolate(f(x), size[2:], mode="bilinear", align_corners=True))
        return torch.cat(out, 1)


@dataclass(frozen=True)
class Entry:
    """One corpus module: its ``factory`` (a ``(B, C, H, W)`` module of ``channels``), where it comes from
    (``source``), the size to trace at and three sizes not traced at (odd and even)."""

    name: str
    source: str
    factory: Callable[[], nn.Module]
    channels: int
    traced: tuple[int, int]
    untraced: tuple[tuple[int, int], ...]
    needs: str | None = None  # the optional package it imports


def _mha() -> nn.Module:
    mha = nn.MultiheadAttention(16, 4, batch_first=True)
    return Tokens(mha, lambda m, t, h, w: m(t, t, t, need_weights=False))


def _encoder_layer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=4, dim_feedforward=32, dropout=0.0, batch_first=True)
    return Tokens(layer, lambda m, t, h, w: m(t))


def _segformer_attention() -> nn.Module:
    from transformers import SegformerConfig
    from transformers.models.segformer.modeling_segformer import SegformerAttention

    cfg = SegformerConfig(attn_implementation="eager")
    return Tokens(SegformerAttention(cfg, 16, 2, 4), lambda m, t, h, w: m(t, h, w))


def _segformer_layer() -> nn.Module:
    from transformers import SegformerConfig
    from transformers.models.segformer.modeling_segformer import SegformerLayer

    cfg = SegformerConfig(attn_implementation="eager")
    layer = SegformerLayer(cfg, 16, 2, 0.0, 2, 4)
    return Tokens(layer, lambda m, t, h, w: m(t, h, w))


def _swin_layer(shift: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from transformers import SwinConfig
        from transformers.models.swin.modeling_swin import SwinLayer

        cfg = SwinConfig(window_size=4, attn_implementation="eager")
        layer = SwinLayer(cfg, 16, (16, 16), 2, shift_size=shift)
        return Tokens(layer, lambda m, t, h, w: m(t, (h, w)))

    return build


def _upernet_ppm() -> nn.Module:
    from transformers.models.upernet.modeling_upernet import UperNetPyramidPoolingModule

    class Concat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ppm = UperNetPyramidPoolingModule((1, 2, 3, 6), 16, 8, align_corners=False)

        def forward(self, x: Tensor) -> Tensor:
            return torch.cat([x, *self.ppm(x)], 1)

    return Concat()


ODD_EVEN = ((9, 13), (12, 10), (17, 8))
CORPUS = (
    Entry("nn.MultiheadAttention", "torch.nn", _mha, 16, (8, 8), ODD_EVEN),
    Entry("nn.TransformerEncoderLayer", "torch.nn", _encoder_layer, 16, (8, 8), ODD_EVEN),
    Entry(
        "ASPPHead",
        "torchvision deeplabv3.py, re-expressed",
        lambda: ASPPHead(8, 3, rates=(2, 3, 5), width=8),
        8,
        (16, 16),
        ODD_EVEN,
    ),  # fmt: skip
    Entry("PPMHead", "hszhao/semseg pspnet.py, re-expressed", lambda: PPMHead(8), 8, (16, 16), ODD_EVEN),
    Entry(
        "SegformerAttention",
        "transformers",
        _segformer_attention,
        16,
        (16, 16),
        ((12, 20), (8, 24), (20, 12)),
        "transformers",
    ),  # fmt: skip
    Entry(
        "SegformerLayer",
        "transformers",
        _segformer_layer,
        16,
        (16, 16),
        ((12, 20), (8, 24), (20, 12)),
        "transformers",
    ),  # fmt: skip
    Entry(
        "SwinLayer (W-MSA)",
        "transformers",
        _swin_layer(0),
        16,
        (16, 16),
        ((9, 13), (12, 10), (17, 8)),
        "transformers",
    ),  # fmt: skip
    Entry(
        "SwinLayer (SW-MSA)",
        "transformers",
        _swin_layer(2),
        16,
        (16, 16),
        ((9, 13), (12, 10), (17, 8)),
        "transformers",
    ),  # fmt: skip
    Entry(
        "UperNetPyramidPoolingModule", "transformers", _upernet_ppm, 16, (16, 16), ODD_EVEN, "transformers"
    ),  # fmt: skip
)
