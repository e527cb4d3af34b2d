"""mmsegmentation's attention decode heads: NL (non-local), DA (DANet), CC (CCNet), ISA, OCR (OCRNet).

References: ``mmseg/models/decode_heads/{nl,da,cc,isa,ocr}_head.py``, ``mmseg/models/utils/
self_attention_block.py`` (``SelfAttentionBlock``), mmcv ``NonLocal2d`` and ``CrissCrossAttention``.
Where mmseg computes what an isaprof block computes, the block is reused:

* ``NLHead.nl_block`` is :class:`~isaprof.targets.blocks.non_local.NonLocal`: mmcv ``NonLocal2d``
  (embedded Gaussian, ``use_scale``, ``reduction=2``) with the BN after ``conv_out`` that NLHead's
  ``norm_cfg`` adds. Same parameters; the block scales the affinity out of place (mmcv: ``/=`` in place).
* ``CCHead.cca`` is :class:`~isaprof.targets.blocks.criss_cross.CrissCross` with ``recurrence`` 2: mmcv's
  ``CrissCrossAttention`` (query/key C -> C/8, value C -> C, all with bias, ``gamma`` zero), applied twice
  with the same weights as ``CCHead.forward`` loops. The block fills the -inf diagonal in place instead of
  adding mmcv's ``NEG_INF_DIAG`` matrix (same values); its ``gamma`` has shape (1,), mmcv's ``Scale`` ().
* ``ISAHead.isa`` is :class:`~isaprof.targets.blocks.isa.InterlacedSparseAttention`: the same padding,
  regrouping and two dense stages as ``ISAHead.forward`` (``global_relation`` = ``long_range``,
  ``local_relation`` = ``short_range``), whose stage (openseg ``SelfAttentionBlock2D``) has mmseg's
  layers (two ConvModules for key and query, ``output_project`` ConvModule) but a value conv without bias:
  mmseg's ``value_project`` is a plain conv *with* bias (``value_out_norm=False``), so the head gives
  both stages a biased value conv (C more parameters each). The stage computes the value first, mmseg
  the query first: same results and MACs.
* DANet's PAM and OCR's object attention use mmseg's own ``SelfAttentionBlock`` (written here: the
  projections differ from every isaprof block: biased single convs without norm in PAM, two ConvModules
  and an output ConvModule in OCR); CAM and OCR's spatial gather have no isaprof counterpart.

``impl="sdpa"`` routes the attention core (softmax(q k^T s) v) through ``F.scaled_dot_product_attention``
where the head's block allows it; ``naive`` is the reference's matmul / softmax / matmul.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isaprof.targets.blocks.common import attend
from isaprof.targets.blocks.criss_cross import CrissCross
from isaprof.targets.blocks.isa import InterlacedSparseAttention
from isaprof.targets.blocks.non_local import NonLocal
from isaprof.targets.networks.conv_heads import ConvModule, DecodeHead, FCNHead


class NLHead(FCNHead):
    """``FCNHead`` with two convs and the non-local block between them: convs[0] (in -> C), non-local
    (C, Ck, Cv), convs[1] (C -> C), ``conv_cat`` on [x, out]."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, key_channels: int, value_channels: int,
        *, impl: str = "naive",
    ) -> None:  # fmt: skip
        super().__init__(in_channels, channels, num_classes, num_convs=2)
        self.nl_block = NonLocal(channels, key_channels, value_channels, impl=impl)

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[self.in_index]  # (B, in, h, w)
        out = self.convs[1](self.nl_block(self.convs[0](x)))  # (B, C, h, w)
        return self.cls_seg(self.conv_cat(torch.cat([x, out], dim=1)))


class CCHead(FCNHead):
    """``FCNHead`` with two convs and recurrent criss-cross attention (R passes, shared weights) between."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, key_channels: int, *, recurrence: int = 2
    ) -> None:
        super().__init__(in_channels, channels, num_classes, num_convs=2)
        self.cca = CrissCross(channels, key_channels, channels, recurrence=recurrence)

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        x = inputs[self.in_index]  # (B, in, h, w)
        out = self.convs[1](self.cca(self.convs[0](x)))  # (B, C, h, w)
        return self.cls_seg(self.conv_cat(torch.cat([x, out], dim=1)))


class ISAHead(DecodeHead):
    """``in_conv`` 3x3 (in -> C), interlaced sparse attention (factor = mmseg's ``down_factor``), then
    ``out_conv`` 1x1 on [attention, in_conv output] (2C -> C)."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, key_channels: int, value_channels: int,
        *, impl: str = "naive", factor: tuple[int, int] = (8, 8),
    ) -> None:  # fmt: skip
        super().__init__(in_channels, channels, num_classes)
        self.in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.isa = InterlacedSparseAttention(channels, key_channels, value_channels, impl=impl, factor=factor)
        for stage in (self.isa.long_range, self.isa.short_range):  # mmseg's value_project has a bias
            stage.f_value = nn.Conv2d(channels, value_channels, kernel_size=1, bias=True)
        self.out_conv = ConvModule(2 * channels, channels, 1)

    def forward(self, inputs: tuple[Tensor, ...]) -> Tensor:
        residual = self.in_conv(inputs[self.in_index])  # (B, C, h, w)
        out = self.isa(residual)  # (B, C, h, w)
        return self.cls_seg(self.out_conv(torch.cat([out, residual], dim=1)))


def project(c_in: int, c_out: int, num_convs: int, norm: bool) -> nn.Module:
    """mmseg ``SelfAttentionBlock.build_project``: ``num_convs`` 1x1 layers, ConvModules (no bias, BN, ReLU)
    with ``norm``, plain biased convs without; one layer is returned bare, several as a Sequential."""
    layer = (lambda a, b: ConvModule(a, b, 1)) if norm else (lambda a, b: nn.Conv2d(a, b, 1))
    convs = [layer(c_in, c_out)] + [layer(c_out, c_out) for _ in range(num_convs - 1)]
    return convs[0] if len(convs) == 1 else nn.Sequential(*convs)


class SelfAttentionBlock(nn.Module):
    """mmseg's ``SelfAttentionBlock`` (no key/value downsampling, separate key and query weights):
    query (from ``query_feats``) and key (from ``key_feats``): ``key_query_num_convs`` projections to Ck;
    value: one projection of ``key_feats`` to Cv; context = softmax(q k^T [Ck^-0.5]) v, back to the
    query's map; ``out_project`` (Cv -> out) when ``with_out``, else Cv must be ``out_channels``."""

    def __init__(
        self, in_channels: int, key_channels: int, value_channels: int, out_channels: int, *,
        key_query_num_convs: int, key_query_norm: bool, value_out_norm: bool, matmul_norm: bool,
        with_out: bool, impl: str = "naive",
    ) -> None:  # fmt: skip
        super().__init__()
        if not with_out and value_channels != out_channels:
            raise ValueError(f"value_channels must be {out_channels} here (no output projection), got "
                             f"{value_channels}")  # fmt: skip
        self.key_channels, self.matmul_norm, self.impl = key_channels, matmul_norm, impl
        self.key_project = project(in_channels, key_channels, key_query_num_convs, key_query_norm)
        self.query_project = project(in_channels, key_channels, key_query_num_convs, key_query_norm)
        self.value_project = project(in_channels, value_channels, 1, value_out_norm)
        self.out_project = project(value_channels, out_channels, 1, value_out_norm) if with_out else None

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        b = query_feats.shape[0]
        query = self.query_project(query_feats).flatten(2).permute(0, 2, 1).contiguous()  # (B, N, Ck)
        key = self.key_project(key_feats).flatten(2)  # (B, Ck, M)
        value = self.value_project(key_feats).flatten(2).permute(0, 2, 1).contiguous()  # (B, M, Cv)
        if self.impl == "naive":
            sim = torch.matmul(query, key)  # (B, N, M)
            if self.matmul_norm:
                sim = (self.key_channels**-0.5) * sim
            context = torch.matmul(F.softmax(sim, dim=-1), value)  # (B, N, Cv)
        else:
            scale = self.key_channels**-0.5 if self.matmul_norm else 1.0
            context = attend(query, key.transpose(1, 2), value, impl=self.impl, scale=scale)  # (B, N, Cv)
        context = (
            context.permute(0, 2, 1).contiguous().reshape(b, -1, *query_feats.shape[2:])
        )  # (B, Cv, h, w)
        return context if self.out_project is None else self.out_project(context)


class Scale(nn.Module):
    """mmcv ``Scale``: x times one learnable scalar (a 0-d parameter, 0 at init in DANet)."""

    def __init__(self, scale: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(scale))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class PAM(SelfAttentionBlock):
    """DANet's position attention: one biased 1x1 conv each for query and key (C -> Ck) and value
    (C -> C), no scaling; out = gamma * context + x."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, impl: str = "naive") -> None:
        super().__init__(
            channels, key_channels, value_channels, channels, key_query_num_convs=1, key_query_norm=False,
            value_out_norm=False, matmul_norm=False, with_out=False, impl=impl,
        )  # fmt: skip
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return self.gamma(super().forward(x, x)) + x


class CAM(nn.Module):
    """DANet's channel attention: energy = X X^T over the C channels, softmax of (row max - energy),
    out = gamma * attention X + x (no parameters but gamma)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = Scale(0.0)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        query = x.view(b, c, -1)  # (B, C, N)
        energy = torch.bmm(query, x.view(b, c, -1).permute(0, 2, 1))  # (B, C, C)
        energy_new = torch.max(energy, -1, keepdim=True)[0].expand_as(energy) - energy
        attention = F.softmax(energy_new, dim=-1)  # (B, C, C)
        out = torch.bmm(attention, x.view(b, c, -1)).view(b, c, h, w)  # (B, C, h, w)
        return self.gamma(out) + x


class DAHead(DecodeHead):
    """DANet: a PAM branch and a CAM branch (each ConvModule 3x3 in -> C, attention, ConvModule 3x3 C -> C,
    own classifier), and the classifier on their sum. Training returns the three logits (pam_cam, pam,
    cam; each has a loss of weight 1); the test forward computes all three and keeps pam_cam, as mmseg."""

    output_names = ("pam_cam", "pam", "cam")

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, key_channels: int, value_channels: int,
        *, impl: str = "naive",
    ) -> None:  # fmt: skip
        super().__init__(in_channels, channels, num_classes)
        self.pam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.pam = PAM(channels, key_channels, value_channels, impl)
        self.pam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.pam_conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.cam_in_conv = ConvModule(in_channels, channels, 3, padding=1)
        self.cam = CAM()
        self.cam_out_conv = ConvModule(channels, channels, 3, padding=1)
        self.cam_conv_seg = nn.Conv2d(channels, num_classes, kernel_size=1)

    def _dropped(self, feat: Tensor) -> Tensor:
        return feat if self.dropout is None else self.dropout(feat)

    def forward(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        x = inputs[self.in_index]  # (B, in, h, w)
        pam_feat = self.pam_out_conv(self.pam(self.pam_in_conv(x)))  # (B, C, h, w)
        pam_out = self.pam_conv_seg(self._dropped(pam_feat))
        cam_feat = self.cam_out_conv(self.cam(self.cam_in_conv(x)))  # (B, C, h, w)
        cam_out = self.cam_conv_seg(self._dropped(cam_feat))
        return self.cls_seg(pam_feat + cam_feat), pam_out, cam_out

    def forward_test(self, inputs: tuple[Tensor, ...]) -> Tensor:
        return self(inputs)[0]


class SpatialGather(nn.Module):
    """OCR's soft object regions: per class k, softmax over positions of the coarse logits (times
    ``scale``), then the probability-weighted sum of the features: (B, C, h, w), (B, K, h, w) ->
    (B, C, K, 1)."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, feats: Tensor, probs: Tensor) -> Tensor:
        b, k = probs.shape[:2]
        probs = F.softmax(self.scale * probs.view(b, k, -1), dim=2)  # (B, K, N)
        context = torch.matmul(probs, feats.view(b, feats.shape[1], -1).permute(0, 2, 1))  # (B, K, C)
        return context.permute(0, 2, 1).contiguous().unsqueeze(3)  # (B, C, K, 1)


class ObjectAttentionBlock(SelfAttentionBlock):
    """OCR's object attention: pixels (query) attend to the K object contexts (key, value); projections
    are ConvModules (two for query and key, one for value and output), scaled by Ck^-0.5; then
    ``bottleneck`` 1x1 on [context, pixels] (2C -> C)."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, impl: str = "naive") -> None:
        super().__init__(
            channels, key_channels, value_channels, channels, key_query_num_convs=2, key_query_norm=True,
            value_out_norm=True, matmul_norm=True, with_out=True, impl=impl,
        )  # fmt: skip
        self.bottleneck = ConvModule(2 * channels, channels, 1)

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        context = super().forward(query_feats, key_feats)  # (B, C, h, w)
        return self.bottleneck(torch.cat([context, query_feats], dim=1))


class OCRHead(DecodeHead):
    """OCRNet's second cascade stage: ``bottleneck`` 3x3 (in -> C), soft object regions from the previous
    stage's logits, object attention (``ocr_channels`` = Ck), classifier. mmseg's ``scale`` is 1."""

    def __init__(
        self, in_channels: int, channels: int, num_classes: int, key_channels: int, value_channels: int,
        *, impl: str = "naive",
    ) -> None:  # fmt: skip
        super().__init__(in_channels, channels, num_classes)
        self.object_context_block = ObjectAttentionBlock(channels, key_channels, value_channels, impl)
        self.spatial_gather_module = SpatialGather(1.0)
        self.bottleneck = ConvModule(in_channels, channels, 3, padding=1)

    def forward(self, inputs: tuple[Tensor, ...], prev_output: Tensor) -> Tensor:  # type: ignore[override]
        feats = self.bottleneck(inputs[self.in_index])  # (B, C, h, w)
        context = self.spatial_gather_module(feats, prev_output)  # (B, C, K, 1)
        return self.cls_seg(self.object_context_block(feats, context))

    def forward_test(self, inputs: tuple[Tensor, ...], prev_output: Tensor) -> Tensor:  # type: ignore[override]
        return self(inputs, prev_output)
