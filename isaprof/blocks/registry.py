"""The one registry of attention blocks.

Adding a block is adding one entry: decorate its ``nn.Module`` class with :func:`register`.
Every block's constructor has the same shape::

    Block(channels: int, key_channels: int, value_channels: int, *, impl: str = "naive", **options)

and its forward maps ``(B, C, H, W) -> (B, C, H, W)``. :func:`build` resolves the default key/value
widths, validates every argument and raises a ``ValueError`` that says what is allowed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

_STANDARD = ("self", "channels", "key_channels", "value_channels", "impl")


@dataclass(frozen=True)
class BlockSpec:
    """What the registry knows about one block.

    ``options`` maps each block-specific keyword option to its default, read from the constructor.
    ``fully_connected`` is what the block advertises: every output position receives information
    from every input position (checked by ``isaprof verify``); a bool, or a predicate of
    ``(options, (H, W))`` where it depends on them (see :meth:`advertises_full`).
    """

    name: str
    cls: type[nn.Module]
    summary: str
    impls: tuple[str, ...]
    default_key_channels: Callable[[int], int]
    default_value_channels: Callable[[int], int]
    fully_connected: bool | Callable[[dict[str, Any], tuple[int, int]], bool]
    options: dict[str, Any] = field(default_factory=dict)

    def advertises_full(self, options: dict[str, Any], size: tuple[int, int]) -> bool:
        """Whether the block claims full connectivity with ``options`` (defaults filled in) at ``size``."""
        if callable(self.fully_connected):
            return bool(self.fully_connected({**self.options, **options}, size))
        return self.fully_connected


_REGISTRY: dict[str, BlockSpec] = {}


def register(
    name: str,
    *,
    summary: str,
    impls: tuple[str, ...] = ("naive",),
    key_channels: Callable[[int], int] = lambda c: c // 2,
    value_channels: Callable[[int], int] = lambda c: c // 2,
    fully_connected: bool | Callable[[dict[str, Any], tuple[int, int]], bool] = True,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that adds a block to the registry under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"block {name!r} is registered twice")
        sig = inspect.signature(cls.__init__)
        options = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name not in _STANDARD and p.kind is inspect.Parameter.KEYWORD_ONLY
        }
        _REGISTRY[name] = BlockSpec(
            name, cls, summary, impls, key_channels, value_channels, fully_connected, options
        )
        cls.block_name = name
        return cls

    return deco


def names() -> list[str]:
    """Registered block names, in registration order."""
    return list(_REGISTRY)


def spec(name: str) -> BlockSpec:
    """The :class:`BlockSpec` of ``name``; ``ValueError`` listing the known blocks if unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown block {name!r}; known blocks: {', '.join(names())}") from None


def resolve_channels(
    name: str, channels: int, key_channels: int | None, value_channels: int | None
) -> tuple[int, int]:
    """Fill in the block's default key/value widths and check all three are positive ints."""
    s = spec(name)
    _check_positive("channels", channels)
    ck = s.default_key_channels(channels) if key_channels is None else key_channels
    cv = s.default_value_channels(channels) if value_channels is None else value_channels
    _check_positive("key_channels", ck, hint=f" (channels={channels} gives {ck} by default)")
    _check_positive("value_channels", cv, hint=f" (channels={channels} gives {cv} by default)")
    return ck, cv


def build(
    name: str,
    channels: int,
    key_channels: int | None = None,
    value_channels: int | None = None,
    *,
    impl: str = "naive",
    **options: Any,
) -> nn.Module:
    """Build block ``name`` mapping ``(B, channels, H, W)`` to ``(B, channels, H, W)``.

    >>> import torch, isaprof
    >>> m = isaprof.build("isa", channels=32, factor=(4, 4))
    >>> m(torch.randn(2, 32, 16, 12)).shape
    torch.Size([2, 32, 16, 12])
    """
    s = spec(name)
    ck, cv = resolve_channels(name, channels, key_channels, value_channels)
    if impl not in s.impls:
        raise ValueError(f"block {name!r} has no impl {impl!r}; allowed: {', '.join(s.impls)}")
    unknown = sorted(set(options) - set(s.options))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in s.options.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    return s.cls(channels, ck, cv, impl=impl, **options)


def _check_positive(what: str, value: Any, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}{hint}")
