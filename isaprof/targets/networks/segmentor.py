"""mmsegmentation's ``EncoderDecoder`` / ``CascadeEncoderDecoder`` with its two forward paths.

References: ``mmseg/models/segmentors/encoder_decoder.py`` (``forward_train``, ``encode_decode``,
``whole_inference``, ``slide_inference``, ``inference``, ``simple_test``) and
``cascade_encoder_decoder.py``.

* **Training** (``module.train()``): the backbone once, each decode head and the auxiliary head in
  training mode, each head's logits resized (bilinear) to the input size, as each head's ``losses``
  resizes them to the label map. The forward returns them as a dict, one entry per loss:
  ``decode`` and ``aux`` (DANet: ``decode.pam_cam``, ``decode.pam``, ``decode.cam``; OCRNet's cascade:
  ``decode_0``, the FCN stage, and ``decode_1``), and :attr:`Segmentor.loss_weights` holds each one's
  loss weight (1.0 for decode heads, 0.4 for the auxiliary FCN and OCRNet's first stage). The loss itself
  (cross-entropy against labels) is not computed: the measuring protocol back-propagates ``weight`` times
  ones from each entry (``isaprof.measure.protocol.step``). OCRNet's first stage runs twice, as mmseg's
  ``_decode_head_forward_train`` runs it once for its loss and once more for the second stage's input.
* **Inference** (``module.eval()``): ``encode_decode`` (backbone, decode head's test forward, logits
  resized to the input size) on the whole image, or ``test_mode="slide"``: windows of ``crop`` every
  ``stride`` (the last one shifted back inside the image), each window's logits padded to the image size
  (``F.pad``) and summed, divided by the count of windows covering each pixel; then softmax over the
  classes and argmax: (B, H, W) int64 labels. mmseg 0.x applies the softmax (``inference``); 1.x argmaxes
  the logits directly: the same labels. The resize to the original image shape that follows in mmseg
  is left out: the input *is* the original image here (it would be a same-size copy).

Departures: no test-time flip or multi-scale (the configurations' single-scale test), no label-size crop
or padding by a data preprocessor, no check that every pixel is covered by a window (data-dependent).
"""

from __future__ import annotations

import re
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets.networks.backbone import ResNetV1c
from isaprof.targets.networks.conv_heads import FCNHead, resize

TEST_MODES = ("whole", "slide")
AUX_WEIGHT = 0.4  # every configuration's auxiliary FCNHead (and OCRNet's first stage) loss weight


def auxiliary_fcn(num_classes: int) -> FCNHead:
    """The configurations' FCN on stage 3: ConvModule 3x3 1024 -> 256, classifier (no concat)."""
    return FCNHead(1024, 256, num_classes, num_convs=1, concat_input=False, in_index=2)


def check_pair(name: str, value: Any) -> tuple[int, int]:
    """``value`` as two positive ints; ``ValueError`` naming the option otherwise."""
    ok = isinstance(value, (tuple, list)) and len(value) == 2
    if not (ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ValueError(f"{name} must be two positive integers (H, W), got {value!r}")
    return int(value[0]), int(value[1])


class Segmentor(nn.Module):
    """Backbone (ResNetV1c, ``depth``), decode head(s) and auxiliary head; ``forward`` is the training
    path in training mode and the test path in eval mode (see the module docstring).

    ``decode_heads``: one head, or several for a cascade (each after the first also takes the previous
    stage's logits; every stage's logits have a loss, weights ``decode_weights``). ``auxiliary``: add the
    FCN auxiliary head on stage 3 (not in OCRNet, whose first stage plays its part).
    """

    def __init__(
        self,
        channels: int,
        depth: int,
        decode_heads: list[nn.Module],
        *,
        num_classes: int,
        decode_weights: tuple[float, ...] = (1.0,),
        auxiliary: bool = True,
        test_mode: str = "whole",
        crop: tuple[int, int] = (769, 769),
        stride: tuple[int, int] = (513, 513),
    ) -> None:
        super().__init__()
        if test_mode not in TEST_MODES:
            raise ValueError(f"test_mode must be one of {', '.join(TEST_MODES)}, got {test_mode!r}")
        self.crop, self.stride = check_pair("crop", crop), check_pair("stride", stride)
        self.in_channels, self.num_classes, self.test_mode = channels, num_classes, test_mode
        self.backbone = ResNetV1c(depth, in_channels=channels)
        self.cascade = len(decode_heads) > 1
        self.decode_head = nn.ModuleList(decode_heads) if self.cascade else decode_heads[0]
        self.auxiliary_head = auxiliary_fcn(num_classes) if auxiliary else None
        if self.cascade:
            self.loss_weights = {f"decode_{i}": w for i, w in enumerate(decode_weights)}
        else:
            names = getattr(decode_heads[0], "output_names", None)
            keys = [f"decode.{n}" for n in names] if names else ["decode"]
            self.loss_weights = dict.fromkeys(keys, decode_weights[0])
        if auxiliary:
            self.loss_weights["aux"] = AUX_WEIGHT

    def forward(self, x: Tensor) -> dict[str, Tensor] | Tensor:
        """Training mode: ``{loss name: (B, classes, H, W) logits}``; eval: (B, H, W) int64 labels."""
        if self.training:
            return self.forward_train(x)
        logits = self.slide_inference(x) if self.test_mode == "slide" else self.encode_decode(x)
        return F.softmax(logits, dim=1).argmax(dim=1)  # (B, H, W)

    def forward_train(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[2:]
        feats = self.backbone(x)
        out: dict[str, Tensor] = {}
        if self.cascade:
            heads = list(self.decode_head)
            out["decode_0"] = resize(heads[0](feats), size)
            prev = heads[0].forward_test(feats)  # again, for the next stage (as mmseg)
            for i, head in enumerate(heads[1:], start=1):
                out[f"decode_{i}"] = resize(head(feats, prev), size)
                if i + 1 < len(heads):
                    prev = head.forward_test(feats, prev)
        else:
            logits = self.decode_head(feats)
            if isinstance(logits, tuple):  # DANet: one loss per output
                out.update((k, resize(v, size)) for k, v in zip(self.loss_weights, logits, strict=False))
            else:
                out["decode"] = resize(logits, size)
        if self.auxiliary_head is not None:
            out["aux"] = resize(self.auxiliary_head(feats), size)
        return out

    def encode_decode(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, classes, H, W) logits: the decode head's test forward, resized."""
        feats = self.backbone(x)
        if self.cascade:
            heads = list(self.decode_head)
            out = heads[0].forward_test(feats)
            for head in heads[1:]:
                out = head.forward_test(feats, out)
        else:
            out = self.decode_head.forward_test(feats)
        return resize(out, x.shape[2:])

    def slide_inference(self, x: Tensor) -> Tensor:
        """mmseg's sliding-window logits: windows of ``crop`` every ``stride``, padded and averaged."""
        (h_stride, w_stride), (h_crop, w_crop) = self.stride, self.crop
        b, _, h_img, w_img = x.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds = x.new_zeros((b, self.num_classes, h_img, w_img))
        count = x.new_zeros((b, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2, x2 = min(h_idx * h_stride + h_crop, h_img), min(w_idx * w_stride + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                logits = self.encode_decode(x[:, :, y1:y2, x1:x2])  # (B, classes, y2 - y1, x2 - x1)
                preds += F.pad(logits, (x1, w_img - x2, y1, h_img - y2))
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count


# mmseg state-dict keys -> ours, where a reused isaprof block names its layers differently
_RENAMES = [
    (r"\.nl_block\.(g|theta|phi)\.conv\.", r".nl_block.\1."),
    (r"\.nl_block\.conv_out\.conv\.", ".nl_block.conv_out."),
    (r"\.nl_block\.conv_out\.bn\.", ".nl_block.norm."),
    (r"\.cca\.(query|key|value)_conv\.", r".cca.\1."),
    (r"\.cca\.gamma\.scale$", ".cca.gamma"),
    (r"\.global_relation\.", ".isa.long_range."),
    (r"\.local_relation\.", ".isa.short_range."),
    (r"\.(long_range|short_range)\.(key|query)_project\.(\d)\.conv\.", r".\1.f_\2.\3.0."),
    (r"\.(long_range|short_range)\.(key|query)_project\.(\d)\.bn\.", r".\1.f_\2.\3.1."),
    (r"\.(long_range|short_range)\.value_project\.", r".\1.f_value."),
    (r"\.(long_range|short_range)\.output_project\.conv\.", r".\1.W.0."),
    (r"\.(long_range|short_range)\.output_project\.bn\.", r".\1.W.1."),
]


def from_mmseg_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """An mmseg ``EncoderDecoder`` state dict renamed for the network here (``load_state_dict``-ready):
    only the reused isaprof blocks (non-local, criss-cross, ISA) name their layers differently; mmcv's
    0-d ``Scale`` of criss-cross becomes the block's (1,) ``gamma``."""
    out = {}
    for key, value in state.items():
        for pattern, repl in _RENAMES:
            key = re.sub(pattern, repl, key)
        out[key] = value.reshape(1) if key.endswith(".cca.gamma") else value
    return out


def count_params(module: nn.Module) -> int:
    """All parameters (mmseg counts them the same way: every ``nn.Parameter`` of the segmentor)."""
    return sum(p.numel() for p in module.parameters())


__all__ = ["TEST_MODES", "Segmentor", "auxiliary_fcn", "count_params", "from_mmseg_state_dict"]
