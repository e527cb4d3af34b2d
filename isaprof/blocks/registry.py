"""The one registry of attention blocks. Imports no torch: a block's class is imported on first use.

A block is registered either *lazily*, by its import path (``declare("isa", "isaprof.blocks.isa:ISA",
...)``: the built-in catalogue in :mod:`isaprof.blocks`, installed plugins), or *eagerly*, by decorating
an imported ``nn.Module`` class with :func:`register`. Either way its options (keyword-only constructor
parameters with their defaults) are read from the constructor itself, the one place they are defined:
from the source with :mod:`ast` when the class is not imported yet (no torch), else from its signature.
Every block's constructor has the same shape::

    Block(channels: int, key_channels: int, value_channels: int, *, impl: str = "naive", **options)

and its forward maps ``(B, C, H, W) -> (B, C, H, W)``. :func:`build` resolves the default key/value
widths, validates every argument and raises a ``ValueError`` that says what is allowed.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from isaprof.config import check_positive

if TYPE_CHECKING:
    from torch import nn

_STANDARD = ("self", "channels", "key_channels", "value_channels", "impl")
FullPredicate = Callable[[dict[str, Any], tuple[int, int]], bool]


@dataclass(frozen=True)
class BlockSpec:
    """What the registry knows about one block.

    ``target``: its class as ``"module:QualName"``; ``options`` maps each block-specific keyword option
    to its default, read from the constructor; ``fully_connected`` is what the block advertises: every
    output position receives information from every input position (checked by ``isaprof verify``); a
    bool, or a predicate of ``(options, (H, W))`` where it depends on them (see :meth:`advertises_full`).
    ``source``: ``"built-in"`` or the plugin distribution that declared it.
    """

    name: str
    target: str
    summary: str
    impls: tuple[str, ...]
    default_key_channels: Callable[[int], int]
    default_value_channels: Callable[[int], int]
    fully_connected: bool | FullPredicate
    source: str = "built-in"
    loaded: Any = field(default=None, compare=False, repr=False)  # the class, once imported

    @property
    def cls(self) -> type[nn.Module]:
        """The block's class (imported on first use; it learns its registry name as ``block_name``)."""
        cls = self.loaded if self.loaded is not None else load_attr(self.target)
        if getattr(cls, "block_name", None) is None:
            cls.block_name = self.name  # fast paths and error messages name the block
        return cls

    @cached_property
    def options(self) -> dict[str, Any]:
        """``{option: default}`` of the constructor's keyword-only parameters (no torch if not imported)."""
        if self.loaded is not None:
            return signature_options(self.loaded)
        found = _source_options(self.target)
        return found if found is not None else signature_options(self.cls)

    def advertises_full(self, options: dict[str, Any], size: tuple[int, int]) -> bool:
        """Whether the block claims full connectivity with ``options`` (defaults filled in) at ``size``."""
        if callable(self.fully_connected):
            return bool(self.fully_connected({**self.options, **options}, size))
        return self.fully_connected


_REGISTRY: dict[str, BlockSpec] = {}


def declare(
    name: str,
    target: str,
    *,
    summary: str,
    impls: tuple[str, ...] = ("naive",),
    key_channels: Callable[[int], int] = lambda c: c // 2,
    value_channels: Callable[[int], int] = lambda c: c // 2,
    fully_connected: bool | FullPredicate = True,
    source: str = "built-in",
) -> BlockSpec:
    """Register block ``name`` by import path ``"module:QualName"``; nothing is imported until it is built."""
    if name in _REGISTRY:
        raise ValueError(f"block {name!r} is registered twice")
    s = BlockSpec(name, target, summary, impls, key_channels, value_channels, fully_connected, source)
    _REGISTRY[name] = s
    return s


def register(
    name: str,
    *,
    summary: str,
    impls: tuple[str, ...] = ("naive",),
    key_channels: Callable[[int], int] = lambda c: c // 2,
    value_channels: Callable[[int], int] = lambda c: c // 2,
    fully_connected: bool | FullPredicate = True,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that adds an imported block class to the registry under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        target = f"{cls.__module__}:{cls.__qualname__}"
        s = declare(
            name, target, summary=summary, impls=impls, key_channels=key_channels,
            value_channels=value_channels, fully_connected=fully_connected,
        )  # fmt: skip
        _REGISTRY[name] = BlockSpec(**{**s.__dict__, "loaded": cls})
        return cls

    return deco


def unregister(name: str) -> None:
    """Remove ``name`` (tests, plugin reloads); unknown names are ignored."""
    _REGISTRY.pop(name, None)


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
    check_positive("channels", channels)
    ck = s.default_key_channels(channels) if key_channels is None else key_channels
    cv = s.default_value_channels(channels) if value_channels is None else value_channels
    check_positive("key_channels", ck, hint=f" (channels={channels} gives {ck} by default)")
    check_positive("value_channels", cv, hint=f" (channels={channels} gives {cv} by default)")
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

    The module is returned in training mode, as every ``nn.Module``: call ``.eval()`` before an
    inference forward (BatchNorm otherwise uses the batch's statistics).

    >>> import torch, isaprof
    >>> m = isaprof.build("isa", channels=32, factor=(4, 4)).eval()
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


# -- reading options without importing -----------------------------------------------------------------
def load_attr(target: str) -> Any:
    """Import ``"package.module:Attr"`` (``Attr`` may be dotted) and return the attribute."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def signature_options(cls: Callable[..., Any]) -> dict[str, Any]:
    """Keyword-only constructor parameters with defaults, read from the signature."""
    sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name not in _STANDARD
        and p.kind is inspect.Parameter.KEYWORD_ONLY
        and p.default is not inspect.Parameter.empty
    }


def _source_options(target: str) -> dict[str, Any] | None:
    """The same, read from the module's source with :mod:`ast` (nothing imported); None if the class or a
    default is not a plain literal there (the caller then imports)."""
    module_name, _, qualname = target.partition(":")
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return None
    with open(found.origin, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=found.origin)
    node: Any = tree
    for part in qualname.split("."):
        node = next((n for n in node.body if isinstance(n, ast.ClassDef) and n.name == part), None)
        if node is None:
            return None
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        return None
    out = {}
    for arg, default in zip(init.args.kwonlyargs, init.args.kw_defaults, strict=True):
        if arg.arg in _STANDARD or default is None:
            continue
        try:
            out[arg.arg] = ast.literal_eval(default)
        except ValueError:
            return None
    return out
