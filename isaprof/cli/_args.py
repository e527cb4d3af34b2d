"""Argument types shared by the subcommands: each raises ``argparse.ArgumentTypeError`` with a
message that says what was wrong and what is allowed, so argparse prints one line, not a trace."""

from __future__ import annotations

import argparse
import re
from typing import Any

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


# The configuration keywords a command may have parsed (``Config.make``'s, but ``block`` and the options).
_CONFIG_FLAGS = (
    "size", "channels", "key_channels", "value_channels", "batch", "device", "dtype", "mode", "impl",
    "backend", "path",
)  # fmt: skip


def config_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``isaprof.profile`` / ``Config.make`` that ``args`` holds (those a command
    does not define are left to their defaults); ``size`` as a tuple."""
    out = {k: getattr(args, k) for k in _CONFIG_FLAGS if hasattr(args, k)}
    if out.get("size") is not None:
        out["size"] = tuple(out["size"])
    return out
