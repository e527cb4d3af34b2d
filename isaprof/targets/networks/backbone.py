"""mmsegmentation's ``ResNetV1c`` as the ``*_r{50,101}-d8`` configurations use it, in plain PyTorch.

Reference: ``mmseg/models/backbones/resnet.py`` (``ResNet``, ``Bottleneck``, ``ResNetV1c``) and
``mmseg/models/utils/res_layer.py`` (``ResLayer``), with the configurations' arguments: deep stem (three 3x3
convs, 3 -> 32 -> 32 -> 64, the first of stride 2, then a 3x3 max pool of stride 2), ``style="pytorch"``
(the stride on the bottleneck's 3x3 conv), strides (1, 2, 1, 1) and dilations (1, 1, 2, 4): output stride
8; ``contract_dilation=True``: the first block of a dilated stage uses half the dilation; a 1x1 conv + BN
shortcut on the first block of each stage (stride or width change). Every conv is without bias and followed
by BatchNorm (mmseg's SyncBN; one device here), ReLUs in place as mmseg's. Names of modules and parameters
are mmseg's (``stem.0``, ``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.downsample.0``, ...).

Departures: none in the computation. Initialisation is PyTorch's default (mmseg loads ImageNet weights).
"""

from __future__ import annotations

from torch import Tensor, nn

DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}  # bottleneck blocks per stage


class Bottleneck(nn.Module):
    """1x1 (C_in -> P), 3x3 (P -> P, stride, dilation), 1x1 (P -> 4P), each + BN; ReLU after the first two
    and after the residual sum; the shortcut is ``downsample`` (1x1 conv + BN) where given."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int, dilation: int, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))  # (B, P, H, W)
        out = self.relu(self.bn2(self.conv2(out)))  # (B, P, H', W')
        out = self.bn3(self.conv3(out))  # (B, 4P, H', W')
        identity = x if self.downsample is None else self.downsample(x)  # (B, 4P, H', W'), after, as mmseg
        out += identity  # in place, as mmseg
        return self.relu(out)


def res_layer(inplanes: int, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    """One stage (mmseg ``ResLayer``, ``contract_dilation=True``, no multi-grid)."""
    downsample = None
    if stride != 1 or inplanes != planes * Bottleneck.expansion:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
    first = dilation // 2 if dilation > 1 else dilation  # contract_dilation
    layers = [Bottleneck(inplanes, planes, stride, first, downsample)]
    layers += [Bottleneck(planes * 4, planes, 1, dilation, None) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetV1c(nn.Module):
    """(B, 3, H, W) -> the four stages' maps: (B, 256, H/4, W/4), (B, 512, H/8, W/8), (B, 1024, H/8, W/8),
    (B, 2048, H/8, W/8) (sizes rounded up at each stride-2 step: conv, pool, conv)."""

    def __init__(
        self,
        depth: int = 50,
        in_channels: int = 3,
        strides: tuple[int, ...] = (1, 2, 1, 1),
        dilations: tuple[int, ...] = (1, 1, 2, 4),
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNetV1c depth must be one of {', '.join(map(str, DEPTHS))}, got {depth!r}")
        self.depth = depth
        stem = 64  # mmseg stem_channels = base_channels = 64
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem // 2, 3, 2, padding=1, bias=False),
            nn.BatchNorm2d(stem // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem // 2, stem // 2, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem // 2, stem, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = stem
        for i, blocks in enumerate(DEPTHS[depth]):
            planes = 64 * 2**i
            self.add_module(f"layer{i + 1}", res_layer(inplanes, planes, blocks, strides[i], dilations[i]))
            inplanes = planes * Bottleneck.expansion
        self.out_channels = (256, 512, 1024, 2048)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        x = self.maxpool(self.stem(x))  # (B, 64, H/4, W/4)
        outs = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            outs.append(x)
        return tuple(outs)
