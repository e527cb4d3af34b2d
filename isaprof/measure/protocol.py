"""The measurement protocol of docs/ARCHITECTURE.md as one callable: what the three modes run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from isaprof.config import ALL_MODES, MODES  # noqa: F401 - MODES re-exported by isaprof.measure


def step(
    module: nn.Module, x: Tensor, mode: str, output: str | None = None, options: Any = None
) -> Callable[[], Any]:
    """A callable running one protocol step of ``module`` on ``x``; it returns the output.

    * ``inference``: ``module.eval()``, ``torch.no_grad()``, forward once.
    * ``train``: ``module.train()``, ``x.requires_grad_()``, ``out = module(x)``,
      ``out.backward(torch.ones_like(out))``. Gradients from a previous call are set to ``None``
      first, so every call allocates its gradients afresh (no accumulation into old ``.grad``).
    * ``step``: one training iteration with loss, optimizer and resident state
      (:class:`isaprof.measure.training.TrainingStep` with ``options``, a
      :class:`~isaprof.measure.training.StepOptions`; default: today's PyTorch); it returns the detached loss.

    The rule for an output that is not one tensor (:func:`train_outputs`): a dict, tuple or list
    (nested) has its floating tensor leaves back-propagated together, each seeded with its loss weight
    times ones (``module.loss_weights[key]`` for a top-level dict key, 1 otherwise): the gradient of
    ``sum_k w_k * leaf_k.sum()``; other leaves (integer tensors, None, numbers) take no part.
    ``output``: back-propagate that one entry instead (a dict key, or a tuple index); in inference the
    step returns that entry.
    """
    if mode == "step":
        from isaprof.measure.training import TrainingStep, resolve  # the step imports this module's layer

        return TrainingStep(module, x, options if options is not None else resolve())
    if mode == "inference":
        module.eval()

        def infer() -> Any:
            with torch.no_grad():
                out = module(x)
            return select_output(out, output) if output is not None else out

        return infer
    if mode == "train":
        module.train()
        x.requires_grad_(True)

        def train() -> Any:
            module.zero_grad(set_to_none=True)
            x.grad = None
            out = module(x)
            if output is not None:
                out = select_output(out, output)
            if isinstance(out, Tensor):
                out.backward(torch.ones_like(out))
            else:
                outputs, seeds = train_outputs(module, out)
                torch.autograd.backward(outputs, seeds)
            return out

        return train
    raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(ALL_MODES)}")


def select_output(out: Any, key: str) -> Any:
    """The entry ``key`` of an output: a dict's key, or a tuple's / list's index; ``ValueError`` naming
    what the output holds otherwise."""
    if isinstance(out, Mapping):
        if key in out:
            return out[key]
        raise ValueError(f"output {key!r}: the module's output has keys {', '.join(map(str, out)) or 'none'}")
    if isinstance(out, (tuple, list)):
        if key.lstrip("-").isdigit() and -len(out) <= int(key) < len(out):
            return out[int(key)]
        raise ValueError(f"output {key!r}: the module returns a {type(out).__name__} of {len(out)}; "
                         f"give an index 0..{len(out) - 1}")  # fmt: skip
    raise ValueError(f"output {key!r}: the module returns {type(out).__name__}, which has no entries")


def floating_leaves(out: Any, weights: Mapping[str, float] | None = None) -> list[tuple[float, Tensor]]:
    """``(weight, tensor)`` for each floating-point tensor leaf of a nested dict / tuple / list output,
    in order; ``weights`` by top-level dict key (1 where absent)."""
    found: list[tuple[float, Tensor]] = []

    def walk(value: Any, w: float) -> None:
        if isinstance(value, Tensor):
            if value.is_floating_point() or value.is_complex():
                found.append((w, value))
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v, w)
        elif isinstance(value, (tuple, list)):
            for v in value:
                walk(v, w)

    if isinstance(out, Mapping):
        for k, v in out.items():
            walk(v, (weights or {}).get(k, 1.0))
    else:
        walk(out, 1.0)
    return found


def train_outputs(module: nn.Module, out: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The floating tensor leaves of a non-tensor output and their seed gradients, ``w * ones`` with
    ``w`` from ``module.loss_weights`` (by top-level key for a dict; 1 where absent). ``ValueError`` when
    there is no floating tensor to back-propagate."""
    weights: Mapping[str, float] = getattr(module, "loss_weights", None) or {}
    items = [(w, v) for w, v in floating_leaves(out, weights) if v.requires_grad]
    if not items:
        raise ValueError(
            f"train mode: the module's output ({type(out).__name__}) holds no floating tensor that depends "
            "on the input or the parameters, so there is nothing to back-propagate"
        )
    return [v for _, v in items], [torch.full_like(v, w) for w, v in items]


def weighted_seeds(module: nn.Module, out: Any) -> tuple[list[Tensor], list[Tensor]]:
    """The tensors of a dict / tuple / list output and their seed gradients (:func:`train_outputs`)."""
    return train_outputs(module, out)
