"""The measurement protocol of docs/ARCHITECTURE.md as one callable: what the three modes run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from isaprof.config import ALL_MODES, MODES  # noqa: F401 - MODES re-exported by isaprof.measure


def step(module: nn.Module, x: Tensor, mode: str, options: Any = None) -> Callable[[], Tensor]:
    """A callable running one protocol step of ``module`` on ``x``; it returns the output.

    * ``inference``: ``module.eval()``, ``torch.no_grad()``, forward once.
    * ``train``: ``module.train()``, ``x.requires_grad_()``, ``out = module(x)``,
      ``out.backward(torch.ones_like(out))``. Gradients from a previous call are set to ``None``
      first, so every call allocates its gradients afresh (no accumulation into old ``.grad``).
      A module whose training forward returns several outputs (a dict or tuple of tensors: a
      segmentation network's logits, one per loss) has them back-propagated together, each output
      seeded with its loss weight times ones (``module.loss_weights[name]``, 1 where it names none):
      the gradient of ``sum_k w_k * out_k.sum()``.
    * ``step``: one training iteration with loss, optimizer and resident state
      (:class:`isaprof.measure.training.TrainingStep` with ``options``, a
      :class:`~isaprof.measure.training.StepOptions`; default: today's PyTorch); it returns the detached loss.
    """
    if mode == "step":
        from isaprof.measure.training import TrainingStep, resolve  # the step imports this module's layer

        return TrainingStep(module, x, options if options is not None else resolve())
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
            if isinstance(out, Tensor):
                out.backward(torch.ones_like(out))
            else:
                outputs, seeds = weighted_seeds(module, out)
                torch.autograd.backward(outputs, seeds)
            return out

        return train
    raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(ALL_MODES)}")


def weighted_seeds(module: nn.Module, out: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors of a dict / tuple / list output and their seed gradients, ``w * ones`` with ``w`` from
    ``module.loss_weights`` (by key for a dict; 1 where absent). ``ValueError`` for anything else."""
    weights: Mapping[str, float] = getattr(module, "loss_weights", None) or {}
    if isinstance(out, Mapping):
        items = [(weights.get(k, 1.0), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        items = [(1.0, v) for v in out]
    else:
        raise ValueError(
            f"train mode needs a tensor output (or a dict/tuple of them), got {type(out).__name__}"
        )
    if not items or not all(isinstance(v, Tensor) for _, v in items):
        raise ValueError("train mode: every output of the module must be a tensor")
    return [v for _, v in items], [torch.full_like(v, w) for w, v in items]
