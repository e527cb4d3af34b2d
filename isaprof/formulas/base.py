"""Shared vocabulary of the closed-form cost formulas. Pure Python: no torch, nothing of isaprof.

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
from typing import Any

DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Config:
    """One block configuration, in plain ints and strings.

    ``key_channels`` / ``value_channels`` are always explicit here (defaults are resolved by the
    caller). ``impl`` is ``"naive"`` or ``"sdpa"``; ``backend`` names the sdpa kernel
    (``"math"``, ``"flash"``, ``"efficient"``, ...) and is ``None`` for ``naive``.
    ``options`` holds the block's own options (``factor``, ``recurrence``, ...), hashable values.
    """

    block: str
    batch: int
    channels: int
    key_channels: int
    value_channels: int
    height: int
    width: int
    dtype: str = "float32"
    impl: str = "naive"
    backend: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class Tolerance:
    """A named allowance on a closed-form peak: the measurement may lie up to ``bytes`` *below* the
    formula (never above), for the reason given (e.g. locals the code is free to drop earlier)."""

    bytes: int
    name: str
    reason: str

    def admits(self, measured: int, analytic: int) -> bool:
        """Whether ``analytic - bytes <= measured <= analytic``."""
        return analytic - self.bytes <= measured <= analytic


@dataclass(frozen=True)
class Cost:
    """Closed-form costs of one configuration.

    ``macs`` / ``train_macs``: named terms (forward; forward + backward), in MACs.
    ``elementwise``: named forward element-wise terms the matrix counters leave out, in operations.
    ``peak_bytes``: ``{"inference": ..., "train": ...}`` in bytes (see module docstring).
    ``padded``: the (H', W') the block actually computes on (ISA pads; others equal (H, W)).
    ``peak_tolerance``: per mode, a named :class:`Tolerance` where the peak is exact only up to it.
    """

    params: int
    macs: Mapping[str, int]
    train_macs: Mapping[str, int]
    elementwise: Mapping[str, int]
    peak_bytes: Mapping[str, int]
    padded: tuple[int, int]
    notes: tuple[str, ...] = field(default_factory=tuple)
    peak_tolerance: Mapping[str, Tolerance] = field(default_factory=dict)

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
