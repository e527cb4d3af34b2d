"""Swin-style window attention on (B, C, H, W) maps, in plain PyTorch: an example isaprof plugin.

Liu et al., "Swin Transformer" (ICCV 2021), section 3.2 (W-MSA): multi-head self-attention inside
non-overlapping ``window x window`` windows, with a learned relative position bias per head. No shifted
windows, no MLP, no norm: the attention block alone, so it compares with isaprof's blocks. A map the
window does not divide is zero-padded at the bottom/right and cropped back (padding attended unmasked).

Install it (``pip install -e examples/window_attention``) and it is a target by name: the package's
``pyproject.toml`` declares ``window_attention = "window_attention:WindowAttention"`` in the
entry-point group ``isaprof.blocks``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["WindowAttention"]


class WindowAttention(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): W-MSA over ``window x window`` windows with ``heads`` heads.

    q and k have ``key_channels`` (default C), v ``value_channels`` (default C), split over ``heads``;
    a linear projection maps the concatenated heads back to C. Cost per position: projections
    C (2 Ck + Cv) + Cv C MACs, attention w^2 (Ck + Cv) MACs.
    """

    def __init__(
        self,
        channels: int,
        key_channels: int | None = None,
        value_channels: int | None = None,
        *,
        window: int = 7,
        heads: int = 4,
    ) -> None:
        super().__init__()
        ck, cv = key_channels or channels, value_channels or channels
        if window < 1 or heads < 1:
            raise ValueError(f"window and heads must be positive, got window={window}, heads={heads}")
        if ck % heads or cv % heads:
            raise ValueError(f"key_channels {ck} and value_channels {cv} must be divisible by heads {heads}")
        self.window, self.heads, self.ck, self.cv = window, heads, ck, cv
        self.qkv = nn.Linear(channels, 2 * ck + cv)
        self.proj = nn.Linear(cv, channels)
        # a bias per head and offset (dy, dx) in [-(w-1), w-1]^2 (Swin's relative_position_bias_table)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.window
        ph, pw = -h % s, -w % s
        x = F.pad(x, (0, pw, 0, ph))  # (B, C, H', W'), zeros bottom/right
        hp, wp = h + ph, w + pw
        # windows: (B * nW, s*s, C)
        t = x.view(b, c, hp // s, s, wp // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, c)
        q, k, v = self.qkv(t).split([self.ck, self.ck, self.cv], dim=-1)  # (B nW, s^2, Ck | Ck | Cv)
        q, k, v = (
            z.unflatten(-1, (self.heads, -1)).transpose(1, 2) for z in (q, k, v)
        )  # (B nW, heads, s^2, d)
        scale = (self.ck // self.heads) ** -0.5
        attn = (q * scale) @ k.transpose(-2, -1)  # (B nW, heads, s^2, s^2)
        bias = self.bias_table[_relative_index(s, x.device)].permute(2, 0, 1)  # (heads, s^2, s^2)
        attn = (attn + bias).softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).flatten(2)  # (B nW, s^2, Cv)
        out = self.proj(out)  # (B nW, s^2, C)
        out = out.view(b, hp // s, wp // s, s, s, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, hp, wp)
        return out[:, :, :h, :w]


def _relative_index(window: int, device: torch.device) -> Tensor:
    """(w^2, w^2) index into the bias table of the offset between every two positions of a window.

    Computed in forward (not a buffer) so that a block built on ``meta`` and moved with ``to_empty``
    stays correct."""
    r = torch.arange(window, device=device)
    coords = torch.stack(torch.meshgrid(r, r, indexing="ij")).flatten(1)  # (2, w^2)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (w^2, w^2, 2)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]
