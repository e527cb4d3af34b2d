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
REGISTRY: dict[str, Formula] = {}  # target name -> formula: @formula's and the entry points'


PLUGIN_GROUP = "isaprof.formulas"  # entry points: target name = "module:function"
PLUGIN_ERRORS: dict[str, str] = {}
_PLUGINS_LOADED = False


def formula(name: str) -> Callable[[Formula], Formula]:
    """Decorator: register the cost formula of target ``name`` (a registered block name, a plugin's name or
    an import path ``pkg.mod:Attr``). The public way to give your own block an analytic column::

        from isaprof.formulas import Config, Cost, formula

        @formula("mypkg.attn:WindowAttention")
        def window(cfg: Config) -> Cost: ...
    """

    def deco(fn: Formula) -> Formula:
        REGISTRY[name] = fn
        return fn

    return deco


def find(name: str) -> Formula | None:
    """The formula registered for ``name`` (here or by an ``isaprof.formulas`` entry point), or None."""
    _load_plugins()
    return REGISTRY.get(name)


def cost(cfg: Config, name: str | None = None) -> Cost:
    """The closed-form :class:`Cost` of ``cfg`` (by the formula of ``name``, default ``cfg.block``);
    ``ValueError`` if no formula is registered."""
    fn = find(name or cfg.block)
    if fn is None:
        known_ = ", ".join(known())
        raise ValueError(f"no cost formula for block {name or cfg.block!r}; formulas exist for: {known_}")
    return fn(cfg)


def known() -> list[str]:
    _load_plugins()
    return sorted(REGISTRY)


def _load_plugins() -> None:
    """Register installed plugins' formulas once; a plugin that fails to import is recorded in
    :data:`PLUGIN_ERRORS` (``isaprof list`` shows it) and does not stop the others."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            fn = ep.load()
        except Exception as e:  # noqa: BLE001  one broken plugin must not break the others
            PLUGIN_ERRORS[ep.name] = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e) else ''}"
            continue
        REGISTRY.setdefault(ep.name, fn)


def reset_plugins() -> None:
    """Scan the entry points again on the next lookup (tests, after installs)."""
    global _PLUGINS_LOADED
    PLUGIN_ERRORS.clear()
    _PLUGINS_LOADED = False
