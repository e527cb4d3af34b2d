"""Argument types shared by the subcommands: each raises ``argparse.ArgumentTypeError`` with a
message that says what was wrong and what is allowed, so argparse prints one line, not a trace."""

from __future__ import annotations

import argparse
import re

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
