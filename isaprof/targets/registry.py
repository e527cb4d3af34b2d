"""The one registry of attention blocks. Imports no torch: a block's class is imported on first use.

A block is registered either *lazily*, by its import path (``declare("isa", "isaprof.targets.blocks.isa:ISA",
...)``: the built-in catalogue in :mod:`isaprof.targets`, installed plugins), or *eagerly*, by decorating
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
import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from isaprof.config import Config, check_positive, needs_message, resolve_widths

if TYPE_CHECKING:
    from torch import nn

_STANDARD = ("self", "channels", "key_channels", "value_channels", "impl")
_VARIADIC = ("VAR_POSITIONAL", "VAR_KEYWORD")
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
    fully_connected: bool | FullPredicate | None
    source: str = "built-in"
    loaded: Any = field(default=None, compare=False, repr=False)  # the class, once imported
    kind: str = "registered"  # registered | import path | instance | callable | plugin
    listed: bool = (
        True  # in names() (tables, sweeps' "all", check, baseline); heads are reachable by name only
    )
    formula: str | None = None  # the registered name whose formula applies (None: this spec's name)
    # Constructor keywords the catalogue fixes for this name (a network's ``depth``): passed by build, not
    # options a user sets or sees.
    preset: tuple[tuple[str, Any], ...] = ()
    default_channels: int | None = None  # ``channels`` when none is given (networks: 3, an RGB image)

    @property
    def cls(self) -> type[nn.Module]:
        """The block's class (imported on first use; it learns its registry name as ``block_name``)."""
        cls = self.loaded if self.loaded is not None else load_attr(self.target)
        if self.standard_contract and inspect.isclass(cls) and getattr(cls, "block_name", None) is None:
            cls.block_name = self.name  # fast paths and error messages name the block
        return cls

    @cached_property
    def options(self) -> dict[str, Any]:
        """``{option: default}`` read from the constructor, without importing it where its source says
        enough: a registered block's keyword-only parameters; any other target's parameters but
        ``channels``, ``key_channels``, ``value_channels`` and ``impl`` (:data:`REQUIRED` where a parameter
        has no default). An instance takes no option."""
        if self.kind == "instance":
            return {}
        generic = not self.standard_contract
        if self.loaded is not None:
            return self._unpreset(signature_options(self.loaded, generic))
        found = _source_options(self.target, generic)
        if found is not None:
            return self._unpreset(found)
        try:
            factory = self.cls
        except Exception as e:  # noqa: BLE001  an import path that does not import: say which and why
            raise ValueError(import_error(self.target, e)) from None
        try:
            return self._unpreset(signature_options(factory, generic))
        except (TypeError, ValueError):  # no signature (a builtin): the constructor speaks at build
            return {}

    def _unpreset(self, options: dict[str, Any]) -> dict[str, Any]:
        fixed = dict(self.preset)
        return {k: v for k, v in options.items() if k not in fixed}

    @property
    def required(self) -> tuple[str, ...]:
        """The options without a default (the user must give them)."""
        return tuple(k for k, v in self.options.items() if v is REQUIRED)

    @property
    def open_options(self) -> bool:
        """Whether the constructor takes any option (``**kwargs``)."""
        return takes_any(self)

    def takes(self, name: str) -> bool:
        """Whether the constructor names parameter ``name`` (``channels``, ``key_channels``, ...): always
        for a registered block (the contract), never for an instance, by signature otherwise (a
        ``**kwargs`` catch-all names nothing)."""
        if self.standard_contract:
            return True
        if self.kind == "instance":
            return False
        try:
            return any(p.name == name and p.kind not in _VARIADIC for p in _parameters(self.cls))
        except Exception:  # noqa: BLE001  not importable or no signature: build() says why
            return False

    @property
    def formula_name(self) -> str:
        """The name closed-form formulas are registered under for this target."""
        return self.formula or self.name

    @property
    def standard_contract(self) -> bool:
        """Whether the constructor follows the block contract ``(channels, key_channels, value_channels, *,
        impl, **options)`` (registered blocks), or takes whatever subset of them it accepts (any module)."""
        return self.kind == "registered"

    def advertises_full(self, options: dict[str, Any], size: tuple[int, int]) -> bool | None:
        """Whether the block claims full connectivity with ``options`` (defaults filled in) at ``size``;
        None when the target makes no claim (a module from outside the registry)."""
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
    fully_connected: bool | FullPredicate | None = True,
    source: str = "built-in",
    listed: bool = True,
    preset: dict[str, Any] | None = None,
    channels: int | None = None,
) -> BlockSpec:
    """Register block ``name`` by import path ``"module:QualName"``; nothing is imported until it is built.
    ``listed=False``: reachable by name, but not among :func:`names` (what "every block" means).
    ``preset``: constructor keywords fixed for this name (not options); ``channels``: the default input
    width (None: the user must give it)."""
    if name in _REGISTRY:
        raise ValueError(f"block {name!r} is registered twice")
    s = BlockSpec(name, target, summary, impls, key_channels, value_channels, fully_connected, source,
                  listed=listed, preset=tuple((preset or {}).items()), default_channels=channels)  # fmt: skip
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
        _REGISTRY[name] = dataclasses.replace(s, loaded=cls)
        return cls

    return deco


def names(everything: bool = False) -> list[str]:
    """Registered block names (built-in, then plugins), in registration order; with ``everything``, also
    the targets reachable by name only (the published heads)."""
    load_plugins()
    return [n for n, s in _REGISTRY.items() if everything or s.listed]


def spec(target: str) -> BlockSpec:
    """The :class:`BlockSpec` of a target: a registered name (built-in or plugin), an import path
    ``"pkg.module:Attr"`` (a class or a function returning an ``nn.Module``; nothing is imported here), or
    a name :func:`adopt` gave an instance or callable. ``ValueError`` listing the known blocks if unknown."""
    load_plugins()
    if target in _REGISTRY:
        return _REGISTRY[target]
    if target in _ADOPTED:
        return _ADOPTED[target]
    if isinstance(target, str) and _IMPORT_PATH.match(target):
        return _path_spec(target)
    unlisted = len(names(everything=True)) - len(names())
    more = f"; {unlisted} more targets (heads, whole networks): `isaprof list`" if unlisted else ""
    raise ValueError(
        f"unknown block {target!r}; known blocks: {', '.join(names())}{more} "
        "(or an import path package.module:Attr)"
    )


def default_channels(name: str, channels: int | None) -> int:
    """``channels``, or the target's default input width when None (networks take an image: 3);
    ``ValueError`` when the target has none (every block: its width is the user's to choose)."""
    if channels is not None:
        return channels
    s = spec(name)
    if s.default_channels is None:
        raise ValueError(f"target {name!r} needs channels (--channels C): it has no default input width")
    return s.default_channels


def resolve_channels(
    name: str, channels: int, key_channels: int | None, value_channels: int | None
) -> tuple[int, int]:
    """Fill in the block's default key/value widths and check all three are positive ints."""
    check_positive("channels", channels)
    return resolve_widths(spec(name), channels, key_channels, value_channels)


def configure(block: str | Config, **kwargs: Any) -> Config:
    """The validated :class:`~isaprof.config.Config` of a target and the keyword form (``size``,
    ``channels``, ``key_channels``, ``value_channels``, ``batch``, ``device``, ``dtype``, ``mode``,
    ``impl``, ``backend``, ``path`` and the target's options): the one place a target's name is resolved
    to its description (:func:`spec`: impls, options and their defaults, default widths), handed to
    :meth:`Config.make <isaprof.config.Config.make>`. ``block`` may be a Config: returned as is, or
    re-validated with ``kwargs`` as changes (fields, ``size``, ``height``/``width`` or options by name).
    Nothing is built or imported (no torch); ``ValueError`` in one line on bad input.

    >>> configure("criss_cross", size=(97, 97), channels=512).key_channels
    64
    """
    if isinstance(block, Config):
        config = block.replace(spec(block.block), **kwargs) if kwargs else block
    else:
        config = Config.make(spec(block), **kwargs)
    if config.layout == "tokens" and spec(config.block).standard_contract:
        raise ValueError(
            f"block {config.block!r} takes a map (B, C, H, W); layout 'tokens' (B, N, C) is for modules "
            "that take a sequence"
        )
    return config


def build(
    name: str,
    channels: int | None,
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
    channels = default_channels(name, channels)
    ck, cv = resolve_channels(name, channels, key_channels, value_channels)
    if impl not in s.impls:
        raise ValueError(f"block {name!r} has no impl {impl!r}; allowed: {', '.join(s.impls)}")
    unknown = sorted(set(options) - set(s.options)) if not takes_any(s) else []
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in s.options.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    if s.standard_contract:
        return s.cls(channels, ck, cv, impl=impl, **dict(s.preset), **options)
    return _construct(s, dict(channels=channels, key_channels=ck, value_channels=cv, impl=impl), options)


# -- any module: import paths, instances, callables, plugins ---------------------------------------------
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_ADOPTED: dict[str, BlockSpec] = {}
_PATHS: dict[str, BlockSpec] = {}
# The entry-point group plugins declare (a public contract: plugins name it in their packaging metadata)
PLUGIN_GROUP = "isaprof.blocks"
PLUGIN_ERRORS: dict[str, str] = {}  # entry point -> one-line reason it could not be registered
_PLUGINS_LOADED = False


def target_name(obj: Any) -> str:
    """How result rows name a target: a string as given; an instance by its class's ``module:QualName``;
    a class or function by its own."""
    if isinstance(obj, str):
        return obj
    cls = obj if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismethod(obj) else type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


@contextlib.contextmanager
def adopted(obj: Any) -> Iterator[str]:
    """Make a Python object usable as a target while the block runs and yield its name: an ``nn.Module``
    instance (built as a deep copy, never mutated; its options are fixed, so it takes none), or a class /
    function returning an ``nn.Module`` (built per configuration like an import path). A string is yielded
    as is. Afterwards the name means what it says again (an instance's class, as an import path)."""
    if isinstance(obj, str):
        yield obj
        return
    name = _adopt(obj)
    try:
        yield name
    finally:
        _ADOPTED.pop(name, None)


def _adopt(obj: Any) -> str:
    name = target_name(obj)
    builtin = _builtin_for(name)
    if _is_module(obj):
        instance = obj
        _ADOPTED[name] = BlockSpec(
            name, name, _summary(type(obj)), ("naive",), _same_width, _same_width, None,
            source="instance", loaded=lambda: copy.deepcopy(instance), kind="instance",
        )  # fmt: skip
    elif callable(obj):
        _ADOPTED[name] = _generic_spec(name, obj, "callable", builtin)
    else:
        raise ValueError(
            f"target {obj!r} is neither an nn.Module, a class or function returning one, a registered name "
            "nor an import path package.module:Attr"
        )
    return name


def _same_width(c: int) -> int:
    return c  # a module outside the registry has no separate key/value width unless it takes one


def _path_spec(target: str) -> BlockSpec:
    if target not in _PATHS:
        _PATHS[target] = _generic_spec(target, None, "import path", _builtin_for(target))
    return _PATHS[target]


def _builtin_for(target: str) -> BlockSpec | None:
    """The registered spec whose class is ``target`` (a built-in reached by its import path)."""
    return next((s for s in _REGISTRY.values() if s.target == target), None)


def _generic_spec(name: str, obj: Any, kind: str, builtin: BlockSpec | None) -> BlockSpec:
    if builtin is not None:  # the same class as a registered block: its metadata and formula apply
        return dataclasses.replace(builtin, name=name, formula=builtin.formula_name, loaded=obj)
    return BlockSpec(
        name, name, "", ("naive",), _same_width, _same_width, None,
        source=kind, loaded=obj, kind=kind,
    )  # fmt: skip


def takes_any(s: BlockSpec) -> bool:
    """A constructor with ``**kwargs`` takes any option."""
    if s.kind in ("registered", "instance"):
        return False
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in _parameters(s.cls))
    except Exception:  # noqa: BLE001  not importable or no signature: build() says why, in one line
        return False


def _parameters(fn: Any) -> list[inspect.Parameter]:
    sig = inspect.signature(fn.__init__ if inspect.isclass(fn) else fn)
    return [p for p in sig.parameters.values() if p.name != "self"]


def _construct(s: BlockSpec, standard: dict[str, Any], options: dict[str, Any]) -> nn.Module:
    """Call a target that is not bound to the block contract: pass ``channels``, ``key_channels``,
    ``value_channels`` and ``impl`` only where it accepts them, plus the options; one-line errors."""
    try:
        factory = s.cls
    except Exception as e:  # noqa: BLE001  an import path that does not import: say which and why
        raise ValueError(import_error(s.target, e)) from None
    if s.kind == "instance":
        return factory()
    if not callable(factory):
        raise ValueError(f"target {s.name!r} is {type(factory).__name__}, expected an nn.Module class or a "
                         "function returning one")  # fmt: skip
    try:
        params = {p.name: p for p in _parameters(factory) if p.kind.name not in _VARIADIC}
    except (TypeError, ValueError):  # no signature to read (a builtin): the options alone
        params = {}
    # only the parameters the signature names: a ``**kwargs`` factory gets only the user's options
    kwargs = {k: v for k, v in standard.items() if k in params and k not in options}
    missing = [
        n for n, p in params.items()
        if p.default is inspect.Parameter.empty and n not in kwargs and n not in options
    ]  # fmt: skip
    if missing:
        raise ValueError(needs_message(s.name, missing))
    try:
        module = factory(**kwargs, **options)
    except Exception as e:  # noqa: BLE001  the user's constructor: one line, which and why
        raise ValueError(f"constructing {s.name!r} failed: {type(e).__name__}: {_line(e)}") from None
    if not _is_module(module):
        raise ValueError(f"target {s.name!r} returned {type(module).__name__}, expected an nn.Module")
    return module


def import_error(target: str, e: BaseException) -> str:
    """The one line for an import path that does not import: which, why, and where it was looked for."""
    where = ""
    if isinstance(e, ModuleNotFoundError) and e.name and target.startswith(e.name.split(".")[0]):
        where = " (looked in the current folder and the installed packages)"
    return f"cannot import target {target!r}: {type(e).__name__}: {_line(e)}{where}"


def importable_cwd() -> None:
    """Put the current folder first on ``sys.path``, as ``python -m`` does, so that ``mine:Block`` names
    ``./mine.py`` from the command line whichever way isaprof was started (a console script's
    ``sys.path`` starts with the script's folder instead)."""
    import os

    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()


def _is_module(obj: Any) -> bool:
    """An ``nn.Module`` instance (checked without importing torch if it is not loaded)."""
    torch_nn = sys.modules.get("torch.nn")
    return torch_nn is not None and isinstance(obj, torch_nn.Module)


def _summary(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def load_plugins() -> None:
    """Register every installed plugin's blocks (entry-point group ``isaprof.blocks``: ``name = module:attr``)
    once. Nothing is imported: a plugin that cannot be resolved is recorded in :data:`PLUGIN_ERRORS` and
    reported by ``isaprof list``, and the others still register."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        dist = getattr(ep.dist, "name", None) or "plugin"
        if ep.name in _REGISTRY:
            PLUGIN_ERRORS[f"{ep.name} ({dist})"] = f"name taken by {_REGISTRY[ep.name].source}"
            continue
        if not _IMPORT_PATH.match(ep.value):
            PLUGIN_ERRORS[f"{ep.name} ({dist})"] = f"{ep.value!r} is not module:attr"
            continue
        s = BlockSpec(ep.name, ep.value, "", ("naive",), _same_width, _same_width, None,
                      source=dist, kind="plugin")  # fmt: skip
        _REGISTRY[ep.name] = s


def reset_plugins() -> None:
    """Forget plugin registrations so the next lookup scans entry points again (tests, after installs)."""
    global _PLUGINS_LOADED
    for name in [n for n, s in _REGISTRY.items() if s.kind == "plugin"]:
        del _REGISTRY[name]
    PLUGIN_ERRORS.clear()
    _PLUGINS_LOADED = False


# -- reading options without importing -----------------------------------------------------------------
def load_attr(target: str) -> Any:
    """Import ``"package.module:Attr"`` (``Attr`` may be dotted) and return the attribute."""
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = _Required()  # the "default" of a constructor parameter that has none: the user must give it


def signature_options(cls: Callable[..., Any], generic: bool = False) -> dict[str, Any]:
    """Constructor options read from the signature: keyword-only parameters with defaults (the block
    contract), or with ``generic`` every named parameter but the standard ones (:data:`REQUIRED` where
    there is no default)."""
    sig = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls)
    kinds = (inspect.Parameter.KEYWORD_ONLY,) if not generic else (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)  # fmt: skip
    out = {}
    for p in sig.parameters.values():
        if p.name in _STANDARD or p.kind not in kinds:
            continue
        if p.default is not inspect.Parameter.empty:
            out[p.name] = p.default
        elif generic:
            out[p.name] = REQUIRED
    return out


def _source_options(target: str, generic: bool = False) -> dict[str, Any] | None:
    """The same, read from the module's source with :mod:`ast` (nothing imported); None if the class or
    function, or a default, is not a plain literal there (the caller then imports)."""
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
    parts = qualname.split(".")
    for i, part in enumerate(parts):
        kinds = (ast.ClassDef,) if i < len(parts) - 1 else (ast.ClassDef, ast.FunctionDef)
        node = next((n for n in node.body if isinstance(n, kinds) and n.name == part), None)
        if node is None:
            return None
    if isinstance(node, ast.ClassDef):
        node = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if node is None:
            return None if generic else {}
    args = node.args
    pairs = list(zip(args.kwonlyargs, args.kw_defaults, strict=True))
    if generic:
        positional = [a for a in args.posonlyargs + args.args if a.arg != "self"]
        padded = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        pairs = list(zip(positional, padded, strict=True)) + pairs
    out = {}
    for arg, default in pairs:
        if arg.arg in _STANDARD or (default is None and not generic):
            continue
        if default is None:
            out[arg.arg] = REQUIRED
            continue
        try:
            out[arg.arg] = ast.literal_eval(default)
        except ValueError:
            return None
    return out
