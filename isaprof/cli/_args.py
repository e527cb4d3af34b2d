"""Argument types shared by the subcommands: each raises ``argparse.ArgumentTypeError`` with a
message that says what was wrong and what is allowed, so argparse prints one line, not a trace."""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any

from isaprof.config import Config, default_of, normalize_device

_PAIR = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def pair(text: str, what: str = "size") -> tuple[int, int]:
    """Parse ``"HxW"`` (or a single ``"N"`` meaning ``NxN``) into two positive ints."""
    m = _PAIR.match(text)
    if m is None and text.strip().isdigit():
        n = int(text)
        a, b = n, n
    elif m is not None:
        a, b = int(m.group(1)), int(m.group(2))
    elif re.match(r"^\s*-?\d+\s*[xX×,]\s*-?\d+\s*$|^\s*-\d+\s*$", text):
        raise argparse.ArgumentTypeError(f"{what} must be positive in both dimensions, got {text!r}")
    else:
        raise argparse.ArgumentTypeError(
            f"{what} must look like HxW with positive integers (e.g. 97x97), got {text!r}"
        )
    if a <= 0 or b <= 0:
        raise argparse.ArgumentTypeError(f"{what} must be positive in both dimensions, got {text!r}")
    return a, b


def size(text: str) -> tuple[int, int]:
    """argparse type for ``--size HxW``."""
    return pair(text, "size")


def factor(text: str) -> tuple[int, int]:
    """argparse type for ``--factor PHxPW``."""
    return pair(text, "factor")


def positive_int(text: str) -> int:
    """argparse type for a positive integer."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


# -- the configuration flags every command that takes a target shares (defined once) -------------------
TARGET_HELP = "a block name (`isaprof list`), or any nn.Module by import path package.module:Attr"


def add_widths(p: argparse.ArgumentParser, *, channels_default: int | None = None) -> None:
    """``--channels`` (required for a block unless a default is given here; a network's defaults to 3, its
    image), ``--key-channels``, ``--value-channels``."""
    if channels_default is None:
        p.add_argument("--channels", type=positive_int, metavar="C",
                       help="required for a block; a network's default is 3 (an image)")  # fmt: skip
    else:
        p.add_argument("--channels", type=positive_int, default=channels_default, metavar="C",
                       help=f"default {channels_default}")  # fmt: skip
    p.add_argument("--key-channels", type=positive_int, metavar="CK", help="default: the block's")
    p.add_argument("--value-channels", type=positive_int, metavar="CV", help="default: the block's")


def add_options(p: argparse.ArgumentParser) -> None:
    """The block options: ``--factor``, ``--recurrence`` and any ``--option KEY=VALUE``."""
    p.add_argument("--factor", type=factor, metavar="PHxPW", help="blocks with a factor option (isa)")
    p.add_argument("--recurrence", type=positive_int, metavar="R", help="blocks with a recurrence option")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any block option, VALUE a Python literal (repeatable)")  # fmt: skip


def _device(text: str) -> str:
    try:
        return normalize_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def non_negative(text: str) -> float:
    """argparse type for a number >= 0 (MiB)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return x


# the argparse types a field's ``flag`` metadata names (isaprof.config.setting)
TYPES: dict[str, Callable[[str], Any]] = {
    "positive_int": positive_int,
    "size": size,
    "device": _device,
    "non_negative": non_negative,
}


def add_schema_flags(
    p: argparse.ArgumentParser,
    schema: type = Config,
    *,
    skip: Iterable[str] = (),
    **overrides: dict[str, Any],
) -> None:
    """One flag per field of ``schema`` (a :class:`~isaprof.config.Config` or
    :class:`~isaprof.config.RunSettings` dataclass) with a ``flag`` in its metadata, in field order, its
    default the field's; the block options (``--factor``, ``--recurrence``, ``--option``) where the
    options field is. ``skip``: field names left out; ``overrides``: argparse keywords replacing a field's
    (``backend=dict(choices=...)``)."""
    skipped = set(skip)
    for f in dataclasses.fields(schema):
        facts = f.metadata.get("flag")
        if facts is None or f.name in skipped:
            continue
        if facts.get("type") == "options":
            add_options(p)
            continue
        spec = {k: v for k, v in facts.items() if k != "flag"}
        if "type" in spec:
            spec["type"] = TYPES[spec["type"]]
        default = default_of(f)
        if not spec.get("required") and default is not dataclasses.MISSING:
            spec["default"] = default
        spec.update(overrides.get(f.name, {}))
        p.add_argument(facts["flag"], **spec)
