"""Sweeps declared as data: TOML grids expanded into an ordered, duplicate-free list of configurations.

A sweep file holds one or more ``[[grid]]`` tables; each expands to the cartesian product of its lists::

    [[grid]]
    name = "meta"                 # optional label, shown by --dry-run
    blocks = "all"                # or a list of targets: registered names, import paths "pkg.mod:Attr"
    sizes = ["16x16", "32x32"]    # "HxW", N (= NxN) or [H, W]
    channels = [512]
    key_channels = [256]          # optional; default: the block's own default width
    value_channels = [256]        # optional
    batch = [1]
    factors = ["8x8"]             # ISA's `factor` option; "all" = isaprof.studies.factorize.candidate_factors
    recurrences = [2]             # criss-cross's `recurrence` option
    options = { name = [...] }    # any other block option, same rule
    target_options = { "pkg.mod:Attr" = { window = [7] } }   # options of one target only
    impls = ["naive", "sdpa"]     # or "all": every impl the block has
    backends = ["math"]           # sdpa kernel (impl "sdpa" only); default: profile picks per device
    devices = ["meta"]            # meta, cpu, cuda
    skip_if_unavailable = true    # devices absent at run time are skipped, not failed
    dtypes = ["float32"]
    modes = ["inference", "train"]
    paths = ["reference", "fast"] # block as published, or its inference fast path (inference rows only)
    layouts = ["map"]             # the input: map (B, C, H, W), or tokens (B, H*W, C) for sequence modules
    latency = "quick"             # latency protocol for profile (real devices only): quick, fixed, none

Options and impls are applied only to the blocks that take them (read from the block registry).
Order is deterministic: grids in file order, then the product in the order of the keys above.
A key no grid knows is refused (``ValueError``), at the top level of the file too. A combination that
is not a valid configuration (``channels = [1]`` where the block's default key width is C/2, a
token layout for a map block) is kept, unvalidated: the sweep records it as failed with the reason and
measures the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from itertools import product
from pathlib import Path
from typing import Any

from isaprof.config import Config, RunSettings

_OPTION_ALIASES = {"factors": "factor", "recurrences": "recurrence"}
# A grid's keys: its label, each schema field's axis (isaprof.config.setting's ``grid``), the option
# aliases and per-target options, then the sweep's own settings.
_GRID_KEYS = [
    "name",
    *(f.metadata["grid"] for f in fields(Config) if f.metadata.get("grid")),
    *_OPTION_ALIASES,
    "target_options",
    "skip_if_unavailable",
    *(f.metadata["grid"] for f in fields(RunSettings) if f.metadata.get("grid")),
]
_PAIR = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class SweepConfig:
    """One point of a sweep: a :class:`~isaprof.config.Config` (everything that decides what is measured)
    and what does not take part in equality: its :class:`~isaprof.config.RunSettings` (the latency
    protocol), whether an absent device skips it (``optional``) and the grid it came from. The
    configuration's fields read through (``point.block``, ``point.height``, ...)."""

    config: Config
    run: RunSettings = field(default_factory=RunSettings, compare=False)
    optional: bool = field(default=False, compare=False)  # skip (not fail) if the device is absent
    grid: str = field(default="", compare=False)

    @property
    def latency(self) -> str | None:
        return self.run.latency

    def __getattr__(self, name: str) -> Any:
        if name == "config" or name.startswith("__"):  # unpickling: no config yet
            raise AttributeError(name)
        return getattr(self.config, name)

    def profile_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``profile(self.block, **kwargs)``: the configuration and the run settings."""
        kwargs = self.config.kwargs()
        del kwargs["block"]
        return {**kwargs, **self.run.kwargs()}

    def label(self) -> str:
        """Short one-line description (progress bar, --dry-run)."""
        return self.config.label()


def load(path: str | Path) -> list[dict[str, Any]]:
    """Read a sweep TOML file and return its ``[[grid]]`` tables; ``ValueError`` if malformed."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the tomli backport (a dependency there, see pyproject.toml)
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ValueError("reading a sweep spec on Python < 3.11 needs tomli: pip install tomli") from None
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"sweep spec {str(path)!r} is a directory; give one TOML file in it")
    if not path.is_file():
        raise ValueError(f"sweep spec {str(path)!r} does not exist")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"sweep spec {path}: invalid TOML: {e}") from None
    grids = data.get("grid")
    if not isinstance(grids, list) or not grids:
        raise ValueError(f"sweep spec {path}: needs at least one [[grid]] table")
    stray = sorted(set(data) - {"grid"})
    if stray:
        raise ValueError(f"sweep spec {path}: unknown top-level key(s) {', '.join(stray)}; allowed: [[grid]]")
    return grids


def expand(grids: Sequence[dict[str, Any]]) -> list[SweepConfig]:
    """Expand grid tables into configurations: cartesian products, in order, duplicates removed."""
    out: dict[SweepConfig, None] = {}
    for i, grid in enumerate(grids):
        label = str(grid.get("name", f"grid {i + 1}"))
        try:
            for cfg in _expand_grid(grid, label):
                out.setdefault(cfg, None)
        except ValueError as e:
            raise ValueError(f"{label}: {e}") from None
    return list(out)


def load_configs(path: str | Path) -> list[SweepConfig]:
    """``expand(load(path))``."""
    return expand(load(path))


def select(
    configs: Iterable[SweepConfig],
    *,
    blocks: Sequence[str] | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
    devices: Sequence[str] | None = None,
    modes: Sequence[str] | None = None,
) -> list[SweepConfig]:
    """Keep the configurations matching every given filter (the CLI overrides); order is kept.

    A filter value that matches no configuration raises ``ValueError`` listing what the sweep has.
    """
    configs = list(configs)
    filters = {
        "blocks": (blocks, lambda c: c.block),
        "sizes": (sizes, lambda c: (c.height, c.width)),
        "devices": (devices, lambda c: c.device),
        "modes": (modes, lambda c: c.mode),
    }
    for what, (wanted, get) in filters.items():
        if wanted is None:
            continue
        present = list(dict.fromkeys(get(c) for c in configs))
        missing = [w for w in wanted if w not in present]
        if missing:
            have = ", ".join(_fmt(p) for p in present) or "nothing"
            raise ValueError(
                f"--{what} {', '.join(_fmt(m) for m in missing)}: not in the sweep (it has {have})"
            )
        configs = [c for c in configs if get(c) in wanted]
    return configs


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``"K/N"`` (1 <= K <= N) into ``(K, N)``."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if m is None or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise ValueError(f"shard must look like K/N with 1 <= K <= N (e.g. 2/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard(configs: Sequence[SweepConfig], k: int, n: int) -> list[SweepConfig]:
    """Shard ``k`` of ``n`` (1-based): configurations ``i`` with ``i % n == k - 1``, in sweep order.

    The sweep order is deterministic (see module docstring), so every process computing the same
    sweep picks the same disjoint subsets, and their union is the whole sweep.
    """
    if not 1 <= k <= n:
        raise ValueError(f"shard must satisfy 1 <= K <= N, got {k}/{n}")
    return [c for i, c in enumerate(configs) if i % n == k - 1]


def parse_size(value: Any, what: str = "size") -> tuple[int, int]:
    """``"HxW"``, ``N`` or ``[H, W]`` -> ``(H, W)``, positive ints; ``ValueError`` otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        pair: Any = (value, value)
    elif isinstance(value, str) and _PAIR.match(value):
        m = _PAIR.match(value)
        pair = (int(m.group(1)), int(m.group(2)))  # type: ignore[union-attr]
    elif isinstance(value, str) and value.strip().isdigit():
        pair = (int(value), int(value))
    elif isinstance(value, (list, tuple)) and len(value) == 2:
        pair = tuple(value)
    else:
        raise ValueError(f"{what} must look like 'HxW' (e.g. 97x97), N or [H, W], got {value!r}")
    if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pair):
        raise ValueError(f"{what} must be positive integers, got {value!r}")
    return pair


def _expand_grid(grid: dict[str, Any], label: str) -> list[SweepConfig]:
    """The grid's combinations as unvalidated configurations (profile validates each when it runs it: an
    invalid one is recorded as failed, the others measured)."""
    ax = _axes(grid)
    configs = []
    for s in ax["specs"]:
        impls = [i for i in s.impls if ax["impls"] is None or i in ax["impls"]]
        own = ax["target_options"].get(s.name, {})
        known = options_of(s)
        opt_names = [o for o in ax["options"] if o in known and o not in own]  # only where it takes them
        opt_names += list(own)
        for (h, w), c, kc, vc, b, impl, dev, dt, mode, path, layout in product(
            ax["sizes"], ax["channels"], ax["kcs"], ax["vcs"], ax["batch"], impls, *ax["tail"], ax["paths"],
            ax["layouts"],
        ):  # fmt: skip
            if path != "reference" and mode != "inference":
                continue  # the fast path is inference-only
            ck = s.default_key_channels(c) if kc is None else kc
            cv = s.default_value_channels(c) if vc is None else vc
            lists = [_option_values({**ax["options"], **own}[o], h, w) for o in opt_names]
            for backend, *values in product(ax["backends"] if impl == "sdpa" else [None], *lists):
                opts = tuple(sorted({**known, **dict(zip(opt_names, values, strict=True))}.items()))
                cfg = Config(s.name, b, c, ck, cv, h, w, options=opts, impl=impl, backend=backend,
                             path=path, dtype=dt, device=dev, mode=mode, layout=layout)  # fmt: skip
                optional = ax["optional"] and dev != "meta"
                configs.append(SweepConfig(cfg, RunSettings(latency=ax["latency"]), optional, label))
    return configs


def options_of(s: Any) -> dict[str, Any]:
    """A target's options with their defaults; none for an import path that does not import (the sweep
    records it as failed, with the reason, when it comes to measure it)."""
    try:
        return dict(s.options)
    except ValueError:
        return {}


def _axes(grid: dict[str, Any]) -> dict[str, Any]:
    """The validated lists of one grid (``ValueError`` naming the bad key and what is allowed)."""
    from isaprof import targets as registry
    from isaprof.config import DEVICES, DTYPES, LAYOUTS, MODES, PATHS

    unknown = sorted(set(grid) - set(_GRID_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(_GRID_KEYS)}")
    if "blocks" not in grid or "sizes" not in grid or "channels" not in grid:
        raise ValueError("every grid needs 'blocks', 'sizes' and 'channels'")
    names = registry.names() if grid["blocks"] == "all" else _list(grid, "blocks", str)
    specs = [registry.spec(n) for n in names]  # ValueError naming the known blocks
    impls_all = sorted({i for s in specs for i in s.impls})
    impls = None if grid.get("impls", "all") == "all" else _list(grid, "impls", str)
    bad = [i for i in impls or [] if i not in impls_all]
    if bad:
        raise ValueError(f"impl(s) {', '.join(bad)} not offered by any of its blocks; they offer {impls_all}")
    return dict(
        specs=specs,
        impls=impls,
        sizes=[parse_size(s) for s in _list(grid, "sizes")],
        channels=_ints(grid, "channels"),
        kcs=_ints(grid, "key_channels") if "key_channels" in grid else [None],
        vcs=_ints(grid, "value_channels") if "value_channels" in grid else [None],
        batch=_ints(grid, "batch", [1]),
        tail=(
            _choices(grid, "devices", tuple(DEVICES), ["meta"]),
            _choices(grid, "dtypes", tuple(DTYPES), ["float32"]),
            _choices(grid, "modes", tuple(MODES), ["inference"]),
        ),
        backends=_backends(grid),
        paths=_choices(grid, "paths", tuple(PATHS), ["reference"]),
        layouts=_choices(grid, "layouts", tuple(LAYOUTS), ["map"]),
        options=_option_lists(grid, specs),
        target_options=_target_options(grid, names),
        latency=_latency(grid.get("latency", "quick")),
        optional=bool(grid.get("skip_if_unavailable", False)),
    )


def _latency(value: Any) -> str | None:
    from isaprof.measure.latency import PROTOCOLS

    if value == "none":
        return None
    if value not in PROTOCOLS:
        raise ValueError(f"latency must be one of {', '.join(PROTOCOLS)} or 'none', got {value!r}")
    return value


def _backends(grid: dict[str, Any]) -> list[str | None]:
    from isaprof.config import BACKENDS

    if "backends" not in grid:
        return [None]  # profile picks the device's default kernel
    values = _list(grid, "backends", str)
    bad = [b for b in values if b not in BACKENDS]
    if bad:
        raise ValueError(f"'backends': {', '.join(map(repr, bad))} unknown; allowed: {', '.join(BACKENDS)}")
    return values


def _option_values(values: list[Any] | str, h: int, w: int) -> list[Any]:
    """The option's values at size (h, w); ``"all"`` (factor only) = every candidate factor."""
    if values == "all":
        from isaprof.studies.factorize import candidate_factors

        return candidate_factors((h, w))
    return list(values)


def _target_options(grid: dict[str, Any], names: list[str]) -> dict[str, dict[str, list[Any]]]:
    """``target_options``: ``{target: {option: [values]}}`` for targets of this grid only."""
    raw = grid.get("target_options", {})
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise ValueError("'target_options' must map a target to a table of option lists")
    stray = sorted(set(raw) - set(names))
    if stray:
        raise ValueError(f"'target_options' names {', '.join(stray)}, not among this grid's blocks")
    return {t: {k: [tuple(x) if isinstance(x, list) else x for x in _as_list(v)] for k, v in opts.items()}
            for t, opts in raw.items()}  # fmt: skip


def _option_lists(grid: dict[str, Any], specs: list[Any]) -> dict[str, Any]:
    from isaprof import targets as registry

    raw = dict(grid.get("options", {}))
    for alias, opt in _OPTION_ALIASES.items():
        if alias in grid:
            raw[opt] = grid[alias]
    every = {o for n in registry.names() for o in options_of(registry.spec(n))} | {
        o for s in specs for o in options_of(s)
    }
    out: dict[str, Any] = {}
    for opt, values in raw.items():
        if opt not in every:
            raise ValueError(f"no registered block takes option {opt!r}; options: {', '.join(sorted(every))}")
        if opt == "factor" and values == "all":
            out[opt] = "all"
        elif opt == "factor":
            out[opt] = [parse_size(v, "factor") for v in _as_list(values)]
        elif opt == "recurrence":
            out[opt] = _as_list(values)
            if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out[opt]):
                raise ValueError(f"'recurrences' must hold integers >= 1, got {values!r}")
        else:
            out[opt] = [tuple(v) if isinstance(v, list) else v for v in _as_list(values)]
    return out


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _list(
    grid: dict[str, Any], key: str, kind: type | None = None, default: list[Any] | None = None
) -> list[Any]:
    if key not in grid:
        if default is None:
            raise ValueError(f"missing {key!r}")
        return default
    values = _as_list(grid[key])
    if not values:
        raise ValueError(f"{key!r} is empty")
    if kind is not None and not all(isinstance(v, kind) for v in values):
        raise ValueError(f"{key!r} must hold {kind.__name__} values, got {grid[key]!r}")
    return values


def _ints(grid: dict[str, Any], key: str, default: list[int] | None = None) -> list[Any]:
    values = _list(grid, key, None, default)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{key!r} must hold positive integers, got {v!r}")
    return values


def _choices(grid: dict[str, Any], key: str, allowed: tuple[str, ...], default: list[str]) -> list[str]:
    values = _list(grid, key, str, default)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{key!r}: {', '.join(map(repr, bad))} not allowed; allowed: {', '.join(allowed)}")
    return values


def _fmt(value: Any) -> str:
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}x{value[1]}"
    return str(value)


__all__ = ["SweepConfig", "expand", "load", "load_configs", "parse_shard", "parse_size", "select", "shard"]
