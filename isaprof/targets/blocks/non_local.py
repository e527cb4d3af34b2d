"""Non-local block, embedded-Gaussian form (Wang et al., "Non-local Neural Networks", CVPR 2018, eq. 2-3).

Reference code: open-mmlab/mmcv, mmcv/cnn/bricks/non_local.py (``NonLocal2d``, ``mode="embedded_gaussian"``,
``use_scale=True``) with BatchNorm after ``conv_out`` as mmsegmentation's ``NLHead`` passes ``norm_cfg=BN``:
theta, phi (C -> Ck) and g (C -> Cv) are 1x1 convs with bias and no norm;
y = softmax(theta phi^T / sqrt(Ck)) g; out = x + BN(conv1x1(y)) (Cv -> C, no bias: a norm follows,
as mmcv's ConvModule).
``sub_sample=True`` max-pools phi and g 2x2 (mmcv's option): M = floor(H/2) * floor(W/2) keys.

Initialisation follows mmcv ``init_weights``: theta/phi/g weights ~ N(0, 0.01), biases 0, and the BN after
``conv_out`` has weight = bias = 0, so at init the block is the identity and no gradient reaches anything
but that BN. Connectivity / gradient checks must re-draw the parameters.
Departures: mmcv divides the affinity in place (``/=``); we scale out of place (the shared ``attend``),
one extra (N, M) buffer in the naive impl. mmcv allows Ck == Cv only (``inter_channels``); we allow both.
"""

from __future__ import annotations

from torch import Tensor, nn

from isaprof.targets.blocks.common import IMPLS, attend, check_input


class NonLocal(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x + BN(W softmax(theta(x) phi(x)^T / sqrt(Ck)) g(x))."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        sub_sample: bool = False,
    ) -> None:
        super().__init__()
        if impl not in IMPLS:
            raise ValueError(f"non_local: unknown impl {impl!r}; allowed: {', '.join(IMPLS)}")
        if not isinstance(sub_sample, bool):
            raise ValueError(f"non_local: sub_sample must be True or False, got {sub_sample!r}")
        self.channels, self.value_channels, self.impl, self.sub_sample = (
            channels,
            value_channels,
            impl,
            sub_sample,
        )
        self.theta = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, value_channels, kernel_size=1)
        self.pool = nn.MaxPool2d(kernel_size=2) if sub_sample else nn.Identity()
        self.conv_out = nn.Conv2d(value_channels, channels, kernel_size=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv ``_NonLocalNd.init_weights(std=0.01, zeros_init=True)`` with a norm after conv_out."""
        for conv in (self.theta, self.phi, self.g):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.kaiming_uniform_(self.conv_out.weight, a=5**0.5)  # left to the layer default by mmcv
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "non_local")
        if self.sub_sample and min(x.shape[2:]) < 2:
            raise ValueError(f"non_local: sub_sample needs H, W >= 2, got {tuple(x.shape[2:])}")
        b, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        phi = self.pool(self.phi(x)).flatten(2).transpose(1, 2)  # (B, M, Ck)
        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (B, M, Cv)
        y = attend(theta, phi, g, impl=self.impl)  # (B, N, Cv)
        y = y.transpose(1, 2).reshape(b, self.value_channels, h, w)  # (B, Cv, H, W), a view
        return x + self.norm(self.conv_out(y))  # (B, C, H, W)
