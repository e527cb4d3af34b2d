"""The one configuration type and the tidy row schema. Pure Python: imports no torch, nor the targets.

A :class:`Config` is everything that decides what is measured: the target, the input shape, the
block's options, the implementation, the numeric type, the device and the protocol mode. Everything
that runs configurations (``profile``, ``check``, ``sweep``, ``baseline``, ``factorize``,
``reproduce``) and every closed-form formula takes one. Run settings that are not part of a
configuration (the latency protocol, the per-module breakdown) are a :class:`RunSettings` beside it.

The dataclass is the schema: each field's ``metadata`` (:func:`setting`) says how it is written to a
tidy row, read back from one, spelled as a keyword and as a CLI flag, and checked. Every list of
configuration fields elsewhere (CSV columns, store keys, CLI flags, row readers) is derived from
``dataclasses.fields``: adding a field is one edit here.

A configuration is a plain value: the target's defaults (key/value widths, options) are resolved by
the targets layer, :func:`isaprof.targets.configure`, which hands :meth:`Config.make` the target's
description (any object with the :class:`Target` attributes).

>>> from isaprof.targets import configure
>>> cfg = configure("isa", size=(97, 97), channels=512, factor=(8, 8))
>>> cfg.key_channels, cfg.option("factor"), cfg.height
(256, (8, 8), 97)
>>> configure("isa", size=(97, 97), channels=512, mode="fast")
Traceback (most recent call last):
ValueError: unknown mode 'fast'; allowed: inference, train, step
>>> Config.from_row(cfg.to_row()) == cfg
True
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import KW_ONLY, MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol, TypeVar

# The checkout's data folder: the papers' settings, the devices catalogue, sweeps and the cost baseline.
REFERENCE = Path(__file__).resolve().parent.parent / "reference"

# The choices a configuration validates against (torch objects are mapped in ``isaprof.profiling.profiler``).
DEVICES = ("meta", "cpu", "cuda")  # "cuda:N" is accepted too and picks GPU N
DTYPES = ("float32", "float64", "float16", "bfloat16")
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
MODES = ("inference", "train")  # the module's own passes: what formulas and the studies' grids cover
# and "step": one training iteration, loss, optimizer and resident state included (isaprof.measure.training)
ALL_MODES = (*MODES, "step")
IMPLS = ("naive", "sdpa")  # what the built-in blocks offer; a target's own list is in its description
BACKENDS = ("math", "flash", "efficient", "cudnn")  # sdpa kernels
CUDA_ONLY_BACKENDS = ("efficient", "cudnn")
# "reference": the block as the papers' code computes it; "fast": isaprof.targets.fast.fast_inference of it
# (same outputs, BN folded, GEMM layouts, sdpa core; inference only).
PATHS = ("reference", "fast")
# The input's layout: "map" (B, C, H, W), or "tokens" (B, N, C) with N = H * W (a transformer's sequence).
LAYOUTS = ("map", "tokens")
LATENCY_PROTOCOLS = ("quick", "fixed")  # a run setting, not part of a Config; "none" or None skips
# mode "step" (run settings, isaprof.measure.training): the optimizers, the presets of published runs
OPTIMIZERS = ("sgd", "adamw", "none")
RECIPES = ("mmseg-2020",)

_DEVICE = re.compile(r"^(meta|cpu|cuda)(:\d+)?$")


# -- validation helpers (one-line ValueErrors naming what is allowed) ---------------------------------
def check_choice(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")


def check_positive(what: str, value: Any, hint: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive integer, got {value!r}{hint}")


def check_size(size: Any) -> tuple[int, int]:
    ok = isinstance(size, (tuple, list)) and len(size) == 2
    if not (ok and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size)):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def normalize_device(device: Any) -> str:
    """``"meta"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` from a string or a ``torch.device``."""
    text = str(device)
    if not _DEVICE.match(text) or text.startswith(("meta:", "cpu:")):
        raise ValueError(f"unknown device {device!r}; allowed: meta, cpu, cuda, cuda:N")
    return text


def normalize_dtype(dtype: Any) -> str:
    """A dtype name from a string (``"float16"``, ``"torch.float16"``) or a ``torch.dtype``."""
    text = str(dtype).removeprefix("torch.")
    aliases = {"half": "float16", "float": "float32", "double": "float64", "fp32": "float32"}
    text = aliases.get(text, text)
    check_choice("dtype", text, DTYPES)
    return text


def normalize_latency(latency: str | None) -> str | None:
    """A latency protocol name, or None for "none" / None (skip timing)."""
    if latency is None or latency == "none":
        return None
    if latency not in LATENCY_PROTOCOLS:
        raise ValueError(
            f"unknown latency protocol {latency!r}; allowed: {', '.join(LATENCY_PROTOCOLS)}, none"
        )
    return latency


def check_backend(impl: str, backend: str | None, device: str) -> None:
    """A backend applies to ``sdpa`` only, and the CUDA-only kernels need cuda."""
    if backend is None:
        return
    if impl != "sdpa":
        raise ValueError(f"backend {backend!r} applies to impl 'sdpa' only (got impl {impl!r})")
    check_choice("sdpa backend", backend, BACKENDS)
    if not device.startswith("cuda") and backend in CUDA_ONLY_BACKENDS:
        raise ValueError(f"sdpa backend {backend!r} needs cuda; on {device} use: math, flash")


def yes_no(what: str, value: Any) -> bool:
    """A boolean setting from ``True``/``False`` or ``"yes"``/``"no"``; ``ValueError`` otherwise."""
    if isinstance(value, bool):
        return value
    if value in ("yes", "no"):
        return value == "yes"
    raise ValueError(f"{what} must be yes or no (True or False), got {value!r}")


def non_negative(what: str, value: Any) -> float:
    """A number >= 0; ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)


def freeze_options(options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Options as sorted ``(name, value)`` pairs with lists turned into tuples (hashable, comparable)."""
    return tuple(sorted((k, _hashable(v)) for k, v in options.items()))


def _hashable(v: Any) -> Any:
    return tuple(_hashable(x) for x in v) if isinstance(v, (list, tuple)) else v


def _fmt(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


# -- the schema: one dataclass field per configuration fact -------------------------------------------
def setting(
    default: Any = MISSING,
    *,
    given: Any = MISSING,
    columns: tuple[str, ...] | None = None,
    write: Callable[[Any, tuple[int, int] | None], tuple[Any, ...]] | None = None,
    read: Callable[[str], Any] = str,
    keyword: str | None = None,
    flag: Mapping[str, Any] | None = None,
    check: Callable[[Any], Any] | None = None,
    placement: bool = False,
    grid: str | None = None,
    compare: bool = True,
) -> Any:
    """A field of :class:`Config` or :class:`RunSettings`, its schema facts in ``metadata``.

    ``default``: the dataclass default; ``given``: the keyword form's default where the dataclass has none
    (``batch`` is 1 unless given). ``columns``: the tidy row's columns it writes (default: its name; ``()``:
    none), ``write(config, padded)`` their cells (default: the value, None as ""); ``read``: a non-empty
    cell to the value (an empty or absent cell is the default). ``keyword``: its name in the keyword form
    (``height``/``width``: the pair ``size``; ``"**"``: spread, the block options). ``flag``: the
    ``argparse`` facts of its CLI flag (``flag``, ``type`` as a name in :mod:`isaprof.cli._args`,
    ``choices``, ``metavar``, ``help``, ``required``, ``action``; the default is the field's), None: no
    flag of its own. ``check``: the value validated on its own, normalized (``ValueError``).
    ``placement``: where or how it runs, not what is computed (the report compares across these).
    ``grid``: its key in a sweep's ``[[grid]]`` table (a list of values there), None: not a sweep axis.
    """
    metadata = dict(
        given=given,
        columns=columns,
        write=write,
        read=read,
        keyword=keyword,
        flag=flag,
        check=check,
        placement=placement,
        grid=grid,
    )
    return field(default=default, metadata=metadata, compare=compare)


def keyword_of(f: Field[Any]) -> str:
    """The field's name in the keyword form (``size`` for ``height`` and ``width``)."""
    return f.metadata.get("keyword") or f.name


def default_of(f: Field[Any]) -> Any:
    """The keyword form's default of a field (``MISSING`` when it must be given)."""
    given = f.metadata.get("given", MISSING)
    return given if given is not MISSING else f.default


def _columns_of(f: Field[Any]) -> tuple[str, ...]:
    cols = f.metadata.get("columns")
    return (f.name,) if cols is None else tuple(cols)


def _arg(value: Any) -> str:
    """A value as a command-line word: a pair as ``HxW``."""
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _positive(what: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        check_positive(what, value)
        return value

    return check


def _choice(what: str, allowed: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        check_choice(what, value, allowed)
        return value

    return check


def _write_width(config: Any, padded: tuple[int, int] | None) -> tuple[Any, ...]:
    return config.width, *(padded if padded else (None, None))


def _write_options(config: Any, padded: tuple[int, int] | None) -> tuple[Any, ...]:
    factor, recurrence = config.option("factor"), config.option("recurrence")
    return (
        f"{factor[0]}x{factor[1]}" if isinstance(factor, (tuple, list)) else "",
        recurrence if recurrence is not None else "",
        json.dumps(dict(config.options), sort_keys=True, default=str),
    )


def _read_options(cell: str) -> tuple[tuple[str, Any], ...]:
    try:
        options = json.loads(cell)
    except json.JSONDecodeError:
        raise ValueError(f"options {cell!r} are not JSON") from None
    if not isinstance(options, dict):
        raise ValueError(f"options {cell!r} are not a JSON object")
    return freeze_options(options)


def _read_none(cell: str) -> str | None:
    return cell or None


# The columns a tidy row carries beside the configuration's own: what the target computes on (its
# formula's padded map; empty when unknown), and two views of the options (ISA's factor, CCNet's R).
PADDED = ("padded_height", "padded_width")


class Target(Protocol):
    """What a configuration needs of its target, resolved by the targets layer
    (:class:`isaprof.targets.BlockSpec` is one): its ``name`` (what rows record), the ``impls`` it offers,
    its ``options`` with their defaults (``required`` ones have none), whether it takes any option
    (``open_options``: a ``**kwargs`` constructor), its default input width where it has one
    (``default_channels``: a network takes an image, 3) and its default key/value widths for ``channels``."""

    name: str
    impls: tuple[str, ...]

    @property
    def options(self) -> Mapping[str, Any]: ...

    @property
    def required(self) -> tuple[str, ...]: ...

    @property
    def open_options(self) -> bool: ...

    @property
    def default_channels(self) -> int | None: ...

    def default_key_channels(self, channels: int, /) -> int: ...

    def default_value_channels(self, channels: int, /) -> int: ...


C = TypeVar("C", bound="Config")
R = TypeVar("R", bound="RunSettings")


@dataclass(frozen=True)
class Config:
    """One configuration, validated, every default resolved (build it with :func:`isaprof.targets.configure`,
    or :meth:`make` given the target's description).

    ``block``: the target (a registered name or an import path ``pkg.mod:Attr``); ``height``/``width``:
    the input map (the block may pad it, see the formula's ``padded``); ``key_channels`` /
    ``value_channels``: resolved widths; ``options``: every block option with defaults filled in, as
    sorted ``(name, value)`` pairs (hashable: two spellings of one configuration compare equal);
    ``backend``: the sdpa kernel (``None`` for ``naive``, or for ``sdpa`` until the device's default is
    chosen at run time); ``device``: ``meta``, ``cpu``, ``cuda`` or ``cuda:N``; ``layout``: the input as a
    map ``(B, C, H, W)`` or as tokens ``(B, H*W, C)``. The fields are in the
    order of the tidy row's columns; the first seven may be given positionally.
    """

    block: str = setting(grid="blocks")
    batch: int = setting(
        grid="batch",
        given=1,
        read=int,
        check=_positive("batch"),
        flag=dict(flag="--batch", type="positive_int"),
    )
    channels: int = setting(
        grid="channels",
        read=int,
        check=_positive("channels"),
        flag=dict(
            flag="--channels",
            type="positive_int",
            metavar="C",
            help="the input's channels; required for a block, a network's default is 3 (an image)",
        ),
    )
    key_channels: int = setting(
        grid="key_channels",
        given=None,
        read=int,
        flag=dict(flag="--key-channels", type="positive_int", metavar="CK", help="default: the block's"),
    )
    value_channels: int = setting(
        grid="value_channels",
        given=None,
        read=int,
        flag=dict(flag="--value-channels", type="positive_int", metavar="CV", help="default: the block's"),
    )
    height: int = setting(
        grid="sizes",
        read=int,
        keyword="size",
        flag=dict(flag="--size", type="size", metavar="HxW", required=True, help="input height x width"),
    )
    width: int = setting(read=int, keyword="size", columns=("width", *PADDED), write=_write_width)
    _: KW_ONLY
    options: tuple[tuple[str, Any], ...] = setting(
        (),
        grid="options",
        keyword="**",
        columns=("factor", "recurrence", "options"),
        write=_write_options,
        read=_read_options,
        flag=dict(
            type="options", flag="--option", named={"factor": "--factor", "recurrence": "--recurrence"}
        ),
    )
    impl: str = setting("naive", grid="impls", flag=dict(flag="--impl", choices=IMPLS))
    backend: str | None = setting(
        None,
        grid="backends",
        read=_read_none,
        placement=True,
        flag=dict(flag="--backend", choices=BACKENDS, help="sdpa kernel (default: per device)"),
    )
    path: str = setting(
        "reference",
        grid="paths",
        check=_choice("path", PATHS),
        placement=True,
        flag=dict(flag="--path", choices=PATHS, help="reference block or its inference fast path"),
    )
    dtype: str = setting(
        "float32",
        grid="dtypes",
        check=lambda v: normalize_dtype(v),
        flag=dict(flag="--dtype", choices=DTYPES),
    )
    device: str = setting(
        "meta",
        grid="devices",
        check=lambda v: normalize_device(v),
        placement=True,
        flag=dict(
            flag="--device",
            type="device",
            metavar="DEVICE",
            help="meta (fake tensors, default), cpu, cuda or cuda:N",
        ),
    )
    mode: str = setting(
        "inference",
        grid="modes",
        check=_choice("mode", ALL_MODES),
        flag=dict(flag="--mode", choices=ALL_MODES),
    )
    layout: str = setting(
        "map",
        grid="layouts",
        check=_choice("layout", LAYOUTS),
        flag=dict(
            flag="--layout",
            choices=LAYOUTS,
            help="the input: map (B, C, H, W), or tokens (B, N, C) with N = H*W (default: map)",
        ),
    )

    # -- building ---------------------------------------------------------------------------------------
    @classmethod
    def make(cls: type[C], target: Target, /, **keywords: Any) -> C:
        """Validate the keyword form (``size``, ``channels``, ``key_channels``, ..., and the block's options)
        against ``target``'s description and fill every default; ``ValueError`` on bad input.

        ``target`` is resolved by the targets layer (``isaprof.targets.spec(name)``); users call
        :func:`isaprof.targets.configure` (also ``isaprof.configure``), which does that and calls this.
        ``device`` and ``dtype`` may also be ``torch.device`` / ``torch.dtype`` objects.
        """
        if isinstance(target, str):
            raise TypeError(
                f"Config.make takes a resolved target; for the name {target!r} use "
                "isaprof.targets.configure(name, size=..., channels=..., ...)"
            )
        own = {keyword_of(f) for f in fields(cls) if keyword_of(f) != "**"} - {"block"}
        given = {k: keywords.pop(k) for k in list(keywords) if k in own}
        values: dict[str, Any] = {"block": target.name}
        for f in fields(cls):
            kw = keyword_of(f)
            if kw in ("block", "**") or f.name in values:
                continue
            value = given.get(kw, default_of(f))
            if kw == "channels" and value in (MISSING, None):
                value = target.default_channels
                if value is None:
                    raise ValueError(
                        f"target {target.name!r} needs channels (--channels C): it has no default input width"
                    )
            if value is MISSING:
                raise ValueError(f"{kw} is required")
            if kw == "size":
                values["height"], values["width"] = check_size(value)
                continue
            check = f.metadata.get("check")
            values[f.name] = check(value) if check is not None and value is not None else value
        values["key_channels"], values["value_channels"] = resolve_widths(
            target, values["channels"], values["key_channels"], values["value_channels"]
        )
        check_choice(f"impl of block {target.name!r}", values["impl"], target.impls)
        if values["path"] == "fast" and values["mode"] != "inference":
            raise ValueError(
                "the fast path is inference-only (BatchNorm folded, no autograd); use path 'reference'"
            )
        values["options"] = _options(target, keywords)
        check_backend(values["impl"], values["backend"], values["device"])
        return cls(**values)

    def replace(self: C, target: Target, /, **changes: Any) -> C:
        """A copy with ``changes`` (fields, ``size`` or block options by name), re-validated against
        ``target`` (the description :meth:`make` takes; :func:`isaprof.targets.configure` of a Config with
        changes is the same without it)."""
        kwargs = self.kwargs()
        del kwargs["block"]
        names = {f.name for f in fields(self)}
        opts = {k: changes.pop(k) for k in list(changes) if k not in kwargs and k not in names}
        for i, name in enumerate(("height", "width")):
            if name in changes:
                size = list(changes.get("size", kwargs["size"]))
                size[i] = changes.pop(name)
                changes["size"] = tuple(size)
        return type(self).make(target, **{**kwargs, **changes, **opts})

    @classmethod
    def keywords(cls) -> list[str]:
        """The keyword form's names but ``block`` and the options: ``size``, ``channels``, ..., in order."""
        return list(dict.fromkeys(keyword_of(f) for f in fields(cls) if keyword_of(f) not in ("block", "**")))

    @classmethod
    def from_args(cls, namespace: Any) -> dict[str, Any]:
        """The keyword form of the configuration flags a parsed ``argparse`` namespace holds (those a
        command does not define are left to their defaults; ``size`` as a tuple; no block, no options):
        ``isaprof.targets.configure(name, **Config.from_args(args), **options)``."""
        out = {k: getattr(namespace, k) for k in cls.keywords() if hasattr(namespace, k)}
        if out.get("size") is not None:
            out["size"] = tuple(out["size"])
        return out

    def to_argv(self, *, skip: tuple[str, ...] = ()) -> list[str]:
        """The command-line arguments giving this configuration (``isaprof profile``'s): the target, then
        each field's flag with its value (None left out; ``skip``: field names left out), the options as
        their own flags (``--factor``) or ``--option KEY=VALUE`` (a Python literal)."""
        argv, kwargs = [self.block], self.kwargs()
        for f in fields(self):
            facts = f.metadata.get("flag")
            if facts is None or f.name in skip:
                continue
            if keyword_of(f) == "**":
                named = facts.get("named", {})
                for key, value in getattr(self, f.name):
                    argv += [named[key], _arg(value)] if key in named else [facts["flag"], f"{key}={value!r}"]
                continue
            value = kwargs[keyword_of(f)]
            if value is not None:
                argv += [facts["flag"], _arg(value)]
        return argv

    # -- rows -------------------------------------------------------------------------------------------
    @classmethod
    def column_names(cls, *, placement: bool = True, padded: bool = True) -> list[str]:
        """The configuration columns of a tidy row, in order; without the ``placement`` fields' (backend,
        path, device: what a FLOP count on meta and a latency on cpu share) or the ``padded`` map's."""
        return [
            c
            for f in fields(cls)
            if placement or not f.metadata.get("placement")
            for c in _columns_of(f)
            if padded or c not in PADDED
        ]

    @classmethod
    def key_names(cls) -> list[str]:
        """The columns that identify a configuration (two rows describe the same one iff these agree):
        each field's own column."""
        return [f.name for f in fields(cls)]

    def to_row(self, padded: tuple[int, int] | None = None) -> dict[str, Any]:
        """The configuration columns of a tidy row (``padded`` None: unknown, left empty)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            write = f.metadata.get("write")
            cells = write(self, padded) if write is not None else (_cell(getattr(self, f.name)),)
            out.update(zip(_columns_of(f), cells, strict=True))
        return out

    @classmethod
    def from_row(cls: type[C], row: Mapping[str, Any]) -> C:
        """The configuration a tidy row (text cells, as :mod:`csv` reads them, or :meth:`to_row`'s values)
        describes: each field from its own column; an empty or absent cell is the field's default.
        ``ValueError`` naming the column when a cell is missing or malformed."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            cell = row.get(f.name)
            if cell is None or cell == "":
                value = default_of(f)
                if value is MISSING or (value is None and f.metadata.get("given") is not MISSING):
                    raise ValueError(f"row has no {f.name!r}")
            else:
                try:
                    value = f.metadata["read"](str(cell))
                except ValueError as e:
                    raise ValueError(f"column {f.name!r}: bad cell {cell!r} ({e})") from None
                check = f.metadata.get("check")
                value = check(value) if check is not None else value
            values[f.name] = value
        return cls(**values)

    # -- views ------------------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def device_type(self) -> str:
        """``cuda`` for ``cuda:N``; the device otherwise."""
        return self.device.split(":")[0]

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    def option(self, name: str, default: Any = None) -> Any:
        return dict(self.options).get(name, default)

    def kwargs(self) -> dict[str, Any]:
        """The keyword form: ``configure(**cfg.kwargs()) == cfg`` and ``profile(**cfg.kwargs())``."""
        out: dict[str, Any] = {}
        for f in fields(self):
            kw = keyword_of(f)
            if kw == "**":
                out.update(getattr(self, f.name))
            elif kw == "size":
                out["size"] = self.size
            else:
                out[kw] = getattr(self, f.name)
        return out

    def label(self) -> str:
        """Short one-line description (progress bars, --dry-run)."""
        opts = " ".join(f"{k}={_fmt(v)}" for k, v in self.options)
        impl = self.impl if self.backend is None else f"{self.impl}/{self.backend}"
        impl += "" if self.path == "reference" else f" [{self.path}]"
        return (
            f"{self.block} {self.height}x{self.width} C={self.channels} B={self.batch} {impl} "
            f"{self.device} {self.dtype} {self.mode}{' tokens' if self.layout == 'tokens' else ''}"
            f"{' ' + opts if opts else ''}"
        )


def resolve_widths(
    target: Target, channels: int, key_channels: int | None, value_channels: int | None
) -> tuple[int, int]:
    """The key/value widths, the target's defaults for ``channels`` where not given, checked positive."""
    ck = target.default_key_channels(channels) if key_channels is None else key_channels
    cv = target.default_value_channels(channels) if value_channels is None else value_channels
    check_positive("key_channels", ck, hint=f" (channels={channels} gives {ck} by default)")
    check_positive("value_channels", cv, hint=f" (channels={channels} gives {cv} by default)")
    return ck, cv


def _options(target: Target, options: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The target's options with ``options`` applied: unknown ones and required ones left out refused."""
    known = target.options
    unknown = sorted(set(options) - set(known)) if not target.open_options else []
    if unknown:
        allowed = ", ".join(f"{k} (default {v!r})" for k, v in known.items()) or "none"
        raise ValueError(
            f"block {target.name!r} has no option(s) {', '.join(unknown)}; its options: {allowed}"
        )
    missing = [k for k in target.required if k not in options]
    if missing:
        raise ValueError(needs_message(target.name, missing))
    defaults = {k: v for k, v in known.items() if k not in target.required}
    return freeze_options({**defaults, **options})


def needs_message(target: str, missing: list[str]) -> str:
    """The one line for a target's option without default that the user did not give."""
    return (
        f"target {target!r} needs option(s) {', '.join(missing)} (no default): "
        f"give them as options (--option {missing[0]}=VALUE)"
    )


@dataclass(frozen=True)
class RunSettings:
    """How one configuration is run, not what it is (never part of a Config, its rows' key or equality):
    ``latency``: the timing protocol (``quick``, ``fixed``; None skips; never timed on meta);
    ``by_module``: also break MACs and peak bytes down per submodule; mode ``step``'s settings (the
    optimizer, gradients kept between steps, the foreach update, data-parallel buckets in MiB, softmax
    saving its input, a ``recipe``; None: the recipe's or today's PyTorch default, see
    :mod:`isaprof.measure.training`). Derived like :class:`Config`."""

    latency: str | None = setting(
        "quick",
        grid="latency",
        check=lambda v: normalize_latency(v),
        columns=(),
        flag=dict(flag="--latency", choices=(*LATENCY_PROTOCOLS, "none"), help="cpu/cuda only"),
    )
    by_module: bool = setting(
        False,
        columns=(),
        flag=dict(
            flag="--by-module",
            action="store_true",
            help="MACs and peak bytes per submodule too ('by_module' in JSON)",
        ),
    )

    # -- mode "step" (isaprof.measure.training): None = the recipe's value, or today's PyTorch without one ---
    optimizer: str | None = setting(
        None,
        columns=(),
        check=_choice("optimizer", OPTIMIZERS),
        flag=dict(
            flag="--optimizer",
            choices=OPTIMIZERS,
            help="step mode: sgd (momentum, default), adamw or none",
        ),
    )
    keep_grads: bool | None = setting(
        None,
        columns=(),
        check=lambda v: yes_no("keep_grads", v),
        flag=dict(
            flag="--keep-grads",
            choices=("yes", "no"),
            help="step mode: gradients resident between steps (zero_grad(set_to_none=False)); default no",
        ),
    )
    foreach: bool | None = setting(
        None,
        columns=(),
        check=lambda v: yes_no("foreach", v),
        flag=dict(
            flag="--foreach",
            choices=("yes", "no"),
            help="step mode: multi-tensor (foreach) optimizer update, CUDA default; default yes",
        ),
    )
    bucket_mib: float | None = setting(
        None,
        columns=(),
        check=lambda v: non_negative("bucket_mib", v),
        flag=dict(
            flag="--bucket-mib",
            type="non_negative",
            metavar="MIB",
            help="step mode: data-parallel gradient buckets of this size (DDP: 25); 0 (default): no DDP",
        ),
    )
    softmax_saves_input: bool | None = setting(
        None,
        columns=(),
        check=lambda v: yes_no("softmax_saves_input", v),
        flag=dict(
            flag="--softmax-saves-input",
            choices=("yes", "no"),
            help="step mode: (log_)softmax saves its input too, as torch before late 2021; default no",
        ),
    )
    recipe: str | None = setting(
        None,
        columns=(),
        check=_choice("recipe", RECIPES),
        flag=dict(
            flag="--recipe",
            choices=RECIPES,
            help="step mode: a published run's settings (each one above it overrides)",
        ),
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            check = f.metadata.get("check")
            if check is not None and getattr(self, f.name) is not None:
                object.__setattr__(self, f.name, check(getattr(self, f.name)))

    def step_settings(self) -> dict[str, Any]:
        """The mode-"step" settings given (None left out), as :func:`isaprof.measure.training.resolve` takes
        them."""
        names = ("optimizer", "keep_grads", "foreach", "bucket_mib", "softmax_saves_input", "recipe")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @classmethod
    def names(cls) -> list[str]:
        """The run settings' keyword names (what ``profile`` takes besides the configuration)."""
        return [f.name for f in fields(cls)]

    @classmethod
    def from_args(cls: type[R], namespace: Any) -> R:
        """The run settings a parsed ``argparse`` namespace holds (the others at their defaults)."""
        return cls(**{k: getattr(namespace, k) for k in cls.names() if hasattr(namespace, k)})

    def kwargs(self) -> dict[str, Any]:
        """The keyword form ``profile`` takes (mode "step"'s settings only where given)."""
        return {"latency": self.latency, "by_module": self.by_module, **self.step_settings()}


CONFIG_COLUMNS = Config.column_names()  # the configuration columns of a tidy row
KEY_COLUMNS = Config.key_names()  # the columns that identify a configuration (the store's key)
SIZE_FIELDS = [f.name for f in fields(Config) if keyword_of(f) == "size"]  # height, width: ``size``'s fields
# The tidy row schema (docs/ARCHITECTURE.md), in order: configuration, metric, environment. ``spread``: the
# IQR of a timed ``measured`` (its median), ``samples`` the samples behind both, ``flags`` the measurement's
# warnings ("noisy", "contended"); all three empty for exact counts. ``machine``: what machine-dependent
# figures are keyed by (isaprof.measure.env.machine_id). A store written before a column existed reads
# with that column empty.
METRIC_COLUMNS = "metric measured analytic unit spread samples flags status error".split()
ENV_COLUMNS = "torch isaprof device_name threads host machine timestamp".split()
COLUMNS = CONFIG_COLUMNS + METRIC_COLUMNS + ENV_COLUMNS
UNITS = {
    "params": "count",
    "macs": "MAC",
    "flops": "FLOP",
    "elementwise": "op",
    "peak_bytes": "byte",
    "bytes_moved": "byte",
    "latency_ms": "ms",
    "peak_fraction": "fraction",  # FLOP rate / the same run's interleaved sgemm rate (measure.latency)
}
STATUSES = ("ok", "oom", "error", "skipped")  # skipped: the device was absent; not a failure


def select(columns: Iterable[str], *left_out: str, first: Iterable[str] = ()) -> list[str]:
    """A table's choice of configuration columns: ``first`` in that order, then the other ``columns`` in
    their (schema) order but ``left_out``, so that a field added to the schema joins every selection.
    ``ValueError`` naming a name that is none of ``columns`` (a renamed or removed field)."""
    columns, first = list(columns), list(first)
    unknown = [c for c in (*first, *left_out) if c not in columns]
    if unknown:
        raise ValueError(f"no configuration column(s) {', '.join(unknown)}; the columns: {' '.join(columns)}")
    return first + [c for c in columns if c not in first and c not in left_out]


def row(
    config: Config,
    metric: str,
    measured: Any,
    analytic: Any,
    *,
    env: Mapping[str, Any],
    padded: tuple[int, int] | None = None,
    spread: Any = None,
    samples: int | None = None,
    flags: str = "",
    status: str = "ok",
    error: str = "",
) -> dict[str, Any]:
    """One tidy row (:data:`COLUMNS`, in order, for a :class:`Config`): ``metric`` of ``config``, raw
    numbers, units from :data:`UNITS`, environment columns from ``env`` (missing ones empty)."""
    check_choice("status", status, STATUSES)
    return {
        **config.to_row(padded),
        "metric": metric,
        "measured": measured,
        "analytic": analytic,
        "unit": UNITS[metric],
        "spread": spread,
        "samples": samples,
        "flags": flags,
        "status": status,
        "error": " ".join(str(error).split()),
        **{k: env.get(k) for k in ENV_COLUMNS},
    }


__all__ = [
    "ALL_MODES",
    "BACKENDS",
    "COLUMNS",
    "CONFIG_COLUMNS",
    "Config",
    "DEVICES",
    "DTYPES",
    "DTYPE_BYTES",
    "KEY_COLUMNS",
    "LAYOUTS",
    "MODES",
    "OPTIMIZERS",
    "PATHS",
    "RECIPES",
    "RunSettings",
    "SIZE_FIELDS",
    "STATUSES",
    "Target",
    "UNITS",
    "check_choice",
    "needs_message",
    "normalize_latency",
    "resolve_widths",
    "row",
    "select",
    "setting",
]
