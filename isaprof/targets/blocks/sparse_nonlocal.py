"""Sparse non-local block: SSANet (Liu & Yin, "Sparse Spatial Attention Network for Semantic Segmentation",
arXiv 2109.01915, ICIP 2021).

No public code. What we could read of the paper is its abstract: the sparse non-local (SNL) block "samples a
subset of key and value elements for each query element" and aggregates with the resulting sparse affinity
matrix. The paper's sampling is adaptive (learned per query); without its text we implement the natural fixed
reading: every query attends to the same subset of ``k`` key/value positions, chosen

* ``sampling="grid"``: evenly spaced in row-major order, position (i * N) // k for i < k (deterministic);
* ``sampling="random"``: a fixed uniform subset drawn with ``random.Random(seed)`` (independent of torch's
  RNG).

Around the sampling it is the embedded-Gaussian non-local block (Wang et al., CVPR 2018; mmcv ``NonLocal2d``):
theta / phi / g 1x1 convs (key = value = C // 2), softmax(theta phi^T / sqrt(Ck)) g, 1x1 output conv (no
bias) + BN, residual, and mmcv's init (std 0.01 projections, zero BN: the block starts as the identity),
exactly as our ``non_local`` block, so that the two differ only by the sampling.
Because 1x1 convs act per position, phi and g are applied to the k sampled positions only (same values as
sampling phi(x) and g(x), k / N of the cost). ``k > H * W`` is clamped to H * W (the block is then the dense
non-local block) so that one configuration runs at every size.
Not fully connected: a query reaches the unsampled positions only through the residual.
"""

from __future__ import annotations

import random

import torch
from torch import Tensor, nn

from isaprof.targets.blocks.common import attend, check_impl, check_input

SAMPLINGS = ("grid", "random")


class SparseNonLocal(nn.Module):
    """Sparse non-local block, (B, C, H, W) -> (B, C, H, W); ``k`` sampled key/value positions (clamped to
    H*W)."""

    def __init__(
        self,
        channels: int,
        key_channels: int,
        value_channels: int,
        *,
        impl: str = "naive",
        k: int = 64,
        sampling: str = "grid",
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_impl("sparse_nonlocal", impl, ("naive", "sdpa"))
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k (number of sampled key/value positions) must be an integer >= 1, got {k!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"unknown sampling {sampling!r}; allowed: {', '.join(SAMPLINGS)}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.channels, self.impl, self.k, self.sampling, self.seed = channels, impl, k, sampling, seed
        self.theta = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, key_channels, kernel_size=1)
        self.g = nn.Conv2d(channels, value_channels, kernel_size=1)
        self.conv_out = nn.Conv2d(value_channels, channels, kernel_size=1, bias=False)
        self.norm = nn.BatchNorm2d(channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmcv ``_NonLocalNd.init_weights(std=0.01, zeros_init=True)``, as ``non_local``."""
        for conv in (self.theta, self.phi, self.g):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)

    def positions(self, n: int) -> list[int]:
        """The sorted flat indices (row-major, < n) of the min(k, n) sampled key/value positions."""
        k = min(self.k, n)
        if self.sampling == "grid":
            return [(i * n) // k for i in range(k)]
        return sorted(random.Random(self.seed).sample(range(n), k))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "sparse_nonlocal")
        b, c, h, w = x.shape
        pos = self.positions(h * w)
        idx = torch.empty(
            len(pos), dtype=torch.long, device=x.device
        )  # (K,): an allocation every tracker sees
        idx.copy_(
            torch.tensor(pos)
        )  # (K,) int64 (torch.tensor from a list is invisible to dispatch on real tensors)
        xs = x.flatten(2).index_select(2, idx).unsqueeze(-1)  # (B, C, K, 1): the sampled positions
        q = self.theta(x).flatten(2).transpose(1, 2)  # (B, N, Ck)
        key = self.phi(xs).flatten(2).transpose(1, 2)  # (B, K, Ck)
        v = self.g(xs).flatten(2).transpose(1, 2)  # (B, K, Cv)
        y = attend(q, key, v, impl=self.impl)  # (B, N, Cv): softmax(q key^T / sqrt(Ck)) v
        y = y.transpose(1, 2).reshape(b, -1, h, w)  # (B, Cv, H, W), a view
        return x + self.norm(self.conv_out(y))  # (B, C, H, W)
