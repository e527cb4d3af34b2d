"""One class per network family: the registry's targets (declared by name in :mod:`isaprof.targets`, with
``depth`` 50 or 101 fixed per name). Widths and defaults are those of mmsegmentation's
``configs/_base_/models/<family>_r50-d8.py``: the decode head reads stage 4 (2048 channels) with
``channels=512``; the auxiliary FCN reads stage 3 (1024 -> 256), loss weight 0.4.

Every constructor has the registry's shape ``(channels, key_channels, value_channels, *, impl, ...)``:
``channels`` is the image's (3); ``key_channels`` / ``value_channels`` are the widths of the attention
inside the decode head (defaults: the configuration's); a network without attention (FCN, PSPNet,
DeepLabV3) reports its head width 512 for both and takes no other value. Options: ``num_classes`` (19,
Cityscapes), ``test_mode`` (``whole`` or ``slide``), ``crop`` and ``stride`` of the sliding window
(mmseg's 769x769 configurations: crop 769x769, stride 513x513), and each family's own.
"""

from __future__ import annotations

from isaprof.targets.networks.attention_heads import CCHead, DAHead, ISAHead, NLHead, OCRHead
from isaprof.targets.networks.conv_heads import ASPPHead, FCNHead, PSPHead
from isaprof.targets.networks.segmentor import Segmentor, auxiliary_fcn

IN, WIDTH = 2048, 512  # the decode head's input (stage 4) and width in every configuration


def check_classes(num_classes: object) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    return num_classes


def no_attention(family: str, key_channels: int, value_channels: int) -> None:
    """A network without attention has no key/value width to set: both are its head's width."""
    if (key_channels, value_channels) != (WIDTH, WIDTH):
        raise ValueError(f"{family} has no attention block: key_channels and value_channels are its decode "
                         f"head's width {WIDTH}, got {key_channels} and {value_channels}")  # fmt: skip


class FCN(Segmentor):
    """fcn_r*-d8: ``FCNHead`` (two 3x3 ConvModules, ``conv_cat`` on [x, out])."""

    def __init__(
        self, channels: int = 3, key_channels: int = WIDTH, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
    ) -> None:  # fmt: skip
        no_attention("fcn", key_channels, value_channels)
        head = FCNHead(IN, WIDTH, check_classes(num_classes))
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class PSPNet(Segmentor):
    """pspnet_r*-d8: ``PSPHead``, pooling scales (1, 2, 3, 6). Training needs batch >= 2: BatchNorm of the
    1x1 pooled branch (SyncBN over several GPUs in mmseg's runs)."""

    def __init__(
        self, channels: int = 3, key_channels: int = WIDTH, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:  # fmt: skip
        no_attention("pspnet", key_channels, value_channels)
        head = PSPHead(IN, WIDTH, check_classes(num_classes), pool_scales=tuple(pool_scales))
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class DeepLabV3(Segmentor):
    """deeplabv3_r*-d8: ``ASPPHead``, dilations (1, 12, 24, 36) and image pooling. Training needs batch
    >= 2 (BatchNorm of the image-pooling branch)."""

    def __init__(
        self, channels: int = 3, key_channels: int = WIDTH, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
        dilations: tuple[int, ...] = (1, 12, 24, 36),
    ) -> None:  # fmt: skip
        no_attention("deeplabv3", key_channels, value_channels)
        head = ASPPHead(IN, WIDTH, check_classes(num_classes), dilations=tuple(dilations))
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class NonLocalNet(Segmentor):
    """nonlocal_r*-d8: ``NLHead``, embedded Gaussian, ``reduction=2`` (Ck = Cv = 256)."""

    def __init__(
        self, channels: int = 3, key_channels: int = 256, value_channels: int = 256, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
    ) -> None:  # fmt: skip
        head = NLHead(IN, WIDTH, check_classes(num_classes), key_channels, value_channels, impl=impl)
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class DANet(Segmentor):
    """danet_r*-d8: ``DAHead``, ``pam_channels=64`` (Ck), PAM's value 512 wide (Cv = the head width)."""

    def __init__(
        self, channels: int = 3, key_channels: int = 64, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
    ) -> None:  # fmt: skip
        head = DAHead(IN, WIDTH, check_classes(num_classes), key_channels, value_channels, impl=impl)
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class CCNet(Segmentor):
    """ccnet_r*-d8: ``CCHead``, recurrence 2, criss-cross query/key width C/8 = 64 (Cv = C = 512)."""

    def __init__(
        self, channels: int = 3, key_channels: int = 64, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513), recurrence: int = 2,
    ) -> None:  # fmt: skip
        if value_channels != WIDTH:
            raise ValueError(f"ccnet: value_channels must be the head width {WIDTH} (criss-cross adds the "
                             f"value to its input), got {value_channels}")  # fmt: skip
        head = CCHead(IN, WIDTH, check_classes(num_classes), key_channels, recurrence=recurrence)
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class ISANet(Segmentor):
    """isanet_r*-d8: ``ISAHead``, ``isa_channels=256`` (Ck), value 512 (Cv), ``down_factor`` (8, 8)."""

    def __init__(
        self, channels: int = 3, key_channels: int = 256, value_channels: int = WIDTH, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
        factor: tuple[int, int] = (8, 8),
    ) -> None:  # fmt: skip
        head = ISAHead(IN, WIDTH, check_classes(num_classes), key_channels, value_channels, impl=impl,
                       factor=factor)  # fmt: skip
        super().__init__(channels, depth, [head], num_classes=num_classes, test_mode=test_mode, crop=crop,
                         stride=stride)  # fmt: skip


class OCRNet(Segmentor):
    """ocrnet_r*-d8: a cascade, ``FCNHead`` on stage 3 (1024 -> 256, one conv; loss weight 0.4) whose logits
    are OCR's soft object regions, then ``OCRHead`` (``ocr_channels=256``: Ck = Cv); no auxiliary head."""

    def __init__(
        self, channels: int = 3, key_channels: int = 256, value_channels: int = 256, *,
        impl: str = "naive", depth: int = 50, num_classes: int = 19, test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769), stride: tuple[int, int] = (513, 513),
    ) -> None:  # fmt: skip
        k = check_classes(num_classes)
        heads = [auxiliary_fcn(k), OCRHead(IN, WIDTH, k, key_channels, value_channels, impl=impl)]
        super().__init__(channels, depth, heads, num_classes=k, decode_weights=(0.4, 1.0), auxiliary=False,
                         test_mode=test_mode, crop=crop, stride=stride)  # fmt: skip
