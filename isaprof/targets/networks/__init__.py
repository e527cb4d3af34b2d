"""The segmentation networks of the papers, as mmsegmentation builds them: a dilated ResNetV1c backbone
(output stride 8), a decode head (FCN, PSP, ASPP, or an attention head: non-local, DANet, CCNet, ISA,
OCR) and the FCN auxiliary head on stage 3, inside an encoder-decoder with mmseg's training and test
paths.

* :mod:`.backbone`: ``ResNetV1c`` (deep stem, strides (1, 2, 1, 1), dilations (1, 1, 2, 4),
  ``contract_dilation``), depth 50 or 101.
* :mod:`.conv_heads`: the decode head base (``conv_seg``, dropout) and the heads without attention:
  ``FCNHead``, ``PSPHead``, ``ASPPHead``; ``ConvModule`` (conv, BN, ReLU).
* :mod:`.attention_heads`: ``NLHead``, ``DAHead``, ``CCHead``, ``ISAHead``, ``OCRHead`` (the attention
  blocks are isaprof's where mmseg computes the same thing).
* :mod:`.segmentor`: :class:`~.segmentor.Segmentor`: training forward (every loss's logits at the label
  size, with its loss weight) and test forward (whole image or sliding window, softmax, argmax).
* :mod:`.zoo`: one class per network family, the registry's targets; the sixteen names (``isanet_r50_d8``,
  ...) are declared in :mod:`isaprof.targets` with their depth.

Module and parameter names follow mmseg's (``backbone.layer3.5.conv2.weight``,
``decode_head.conv_seg.bias``, ...) except inside the reused isaprof blocks;
:func:`~.segmentor.from_mmseg_state_dict` maps an mmseg state dict onto ours. SyncBN is ``BatchNorm2d``.
"""
