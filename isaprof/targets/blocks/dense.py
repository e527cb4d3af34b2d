"""Dense self-attention over all H*W positions (OCNet / the ISA paper's baseline).

Paper: Yuan et al., "OCNet: Object Context Network for Scene Parsing" (2018) and Huang et al.,
"Interlaced Sparse Self-Attention for Semantic Segmentation" (2019), Sec. 3.1.
Reference code: openseg-group/openseg.pytorch, lib/models/modules/isa_block.py (``SelfAttentionBlock2D``),
the stage the ISA code uses for both of its stages. The stage itself is
:class:`isaprof.targets.blocks.common.SelfAttention2D`: separate query and key projections of two
(1x1 conv + BN + ReLU) layers each, as that file builds them. NB: OCNet's older ``_SelfAttentionBlock``
(base_oc_block.py) shares one single-layer projection between query and key (``self.f_query =
self.f_key``); the ISA code does not, and we follow the ISA code. No departure in what is computed.
"""

from __future__ import annotations

from torch import Tensor, nn

from isaprof.targets.blocks.common import SelfAttention2D, check_input


class DenseAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): every position attends to all H*W positions. No residual."""

    def __init__(self, channels: int, key_channels: int, value_channels: int, *, impl: str = "naive") -> None:
        super().__init__()
        self.channels = channels
        self.attention = SelfAttention2D(channels, key_channels, value_channels, channels, impl)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "dense")
        return self.attention(x)  # (B, C, H, W)
