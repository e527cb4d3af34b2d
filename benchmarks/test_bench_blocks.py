"""Wall-clock time of every block's forward (inference) and forward + backward (train).

Protocol as docs/ARCHITECTURE.md: inference = ``eval()`` + ``no_grad`` forward; train = ``train()``
forward + ``backward(ones_like(out))`` with the input requiring grad. ``shape`` (block x impl x size)
and ``device`` (cpu, cuda when present) are parametrized in conftest.py, which also stores each
configuration's exact costs (MACs, FLOPs, meta peak bytes) in ``benchmark.extra_info``.
"""

from __future__ import annotations

from typing import Any

import torch


def test_forward(benchmark: Any, workload: Any) -> None:
    fn, x = workload("inference")
    out = benchmark(fn)  # (B, C, H, W)
    assert out.shape == x.shape


def test_train(benchmark: Any, workload: Any) -> None:
    fn, x = workload("train")
    out = benchmark(fn)  # (B, C, H, W)
    assert out.shape == x.shape
    assert x.grad is not None and torch.isfinite(x.grad).all()
