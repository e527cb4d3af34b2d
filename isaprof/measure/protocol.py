"""The measurement protocol of docs/ARCHITECTURE.md as one callable: what "inference" and "train" run."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from isaprof.config import MODES


def step(module: nn.Module, x: Tensor, mode: str) -> Callable[[], Tensor]:
    """A callable running one protocol step of ``module`` on ``x``; it returns the output.

    * ``inference``: ``module.eval()``, ``torch.no_grad()``, forward once.
    * ``train``: ``module.train()``, ``x.requires_grad_()``, ``out = module(x)``,
      ``out.backward(torch.ones_like(out))``. Gradients from a previous call are set to ``None``
      first, so every call allocates its gradients afresh (no accumulation into old ``.grad``).
    """
    if mode == "inference":
        module.eval()

        def infer() -> Tensor:
            with torch.no_grad():
                return module(x)

        return infer
    if mode == "train":
        module.train()
        x.requires_grad_(True)

        def train() -> Tensor:
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = module(x)
            out.backward(torch.ones_like(out))
            return out

        return train
    raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
