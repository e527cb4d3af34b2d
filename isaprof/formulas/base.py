"""Shared vocabulary of the closed-form cost formulas. Pure Python: no torch; of isaprof only the
configuration type.

Counting convention (stated once, used everywhere in isaprof):

* A MAC is one multiply-accumulate of a matrix product or convolution. FLOPs = 2 x MACs, the
  convention of ``torch.utils.flop_counter`` and of the ISA/CCNet papers.
* Matrix counters (FlopCounterMode, fvcore) count only matmul-like ops (mm, bmm, conv, attention
  kernels). NB: softmax, scaling, BatchNorm, ReLU, residual adds and other element-wise work are
  *not* MACs; each formula reports them separately in ``Cost.elementwise`` (operations, forward).
* Bias additions of convolutions are not counted (neither counter counts them).
* Peak memory is in bytes: the peak of live tensor storage allocated *during* the measured call,
  above what was live before it (parameters, buffers and the input are excluded; the output and,
  in training, parameter/input gradients are included). ``inference`` = ``eval()`` + ``no_grad``
  forward; ``train`` = ``train()`` forward + ``backward(ones_like(out))`` with the input requiring grad.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

# The one configuration type (isaprof.config, pure Python too): formulas read its plain ints and strings:
# block, batch, channels, key_channels / value_channels (resolved), height, width, dtype, impl, backend
# (the sdpa kernel, None for naive), options (``cfg.option(name)``) and ``cfg.dtype_bytes``.
from isaprof.config import DTYPE_BYTES, Config  # noqa: E402, F401  (re-exported)


@dataclass(frozen=True)
class Cost:
    """Closed-form costs of one configuration.

    ``macs`` / ``train_macs``: named terms (forward; forward + backward), in MACs.
    ``elementwise``: named forward element-wise terms the matrix counters leave out, in operations.
    ``peak_bytes``: ``{"inference": ..., "train": ...}`` in bytes (see module docstring).
    ``padded``: the (H', W') the block actually computes on (ISA pads; others equal (H, W)).
    """

    params: int
    macs: Mapping[str, int]
    train_macs: Mapping[str, int]
    elementwise: Mapping[str, int]
    peak_bytes: Mapping[str, int]
    padded: tuple[int, int]
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    @property
    def total_train_macs(self) -> int:
        return sum(self.train_macs.values())

    @property
    def flops(self) -> int:
        return 2 * self.total_macs


Formula = Callable[[Config], Cost]
_FORMULAS: dict[str, Formula] = {}


def formula(name: str) -> Callable[[Formula], Formula]:
    """Decorator: register the cost formula of block ``name``."""

    def deco(fn: Formula) -> Formula:
        _FORMULAS[name] = fn
        return fn

    return deco


def cost(cfg: Config) -> Cost:
    """The closed-form :class:`Cost` of ``cfg``; ``ValueError`` if no formula is registered."""
    try:
        fn = _FORMULAS[cfg.block]
    except KeyError:
        known = ", ".join(sorted(_FORMULAS))
        raise ValueError(f"no cost formula for block {cfg.block!r}; formulas exist for: {known}") from None
    return fn(cfg)


def known() -> list[str]:
    return sorted(_FORMULAS)
