"""Numbers as text: the one formatter of the CLI and the report (pure Python, no torch).

Conventions: decimal SI prefixes (k = 10^3, ..., P = 10^15) for counts and rates (MAC, FLOP, FLOP/s, op),
binary prefixes for bytes (KiB = 2^10 B, MiB = 2^20 B, GiB = 2^30 B), milliseconds for times. A number is
shown to a number of significant digits in fixed-point notation, never with an exponent: a value of
``10**digits`` or more is shown as an integer with thousands separators (``2,131``, not ``2.13e+03``).
The model is ``torch.utils.benchmark``'s ``select_unit`` / ``trim_sigfig``.

>>> si(12480, "MAC"), nbytes(3 * 2**20), ms(0.012345), sig(2131.4, 3)
('12.48 kMAC', '3 MiB', '0.01235 ms', '2,131')
"""

from __future__ import annotations

import math
import re

SI_PREFIXES = ("", "k", "M", "G", "T", "P")
BINARY_PREFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi")
DIGITS = 4  # significant digits of a quantity unless told otherwise
EMPTY = ""  # the text of a missing value (None, NaN, inf)


def missing(value: object) -> bool:
    """True for ``None`` and non-finite floats (NaN, inf), and for pandas' NA (anything not ``== itself``)."""
    if value is None:
        return True
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True
    return not math.isfinite(x)


def round_sig(x: float, digits: int = DIGITS) -> float:
    """``x`` rounded to ``digits`` significant digits (``trim_sigfig``)."""
    return float(f"{x:.{digits}g}") if x else 0.0


def sig(x: float, digits: int = DIGITS, *, trim: bool = False) -> str:
    """``x`` to ``digits`` significant digits in fixed-point notation: ``sig(0.00049) == "0.0004900"``,
    ``sig(113.0854) == "113.1"``; from ``10**digits`` on an integer with separators (``"12,346"``).
    ``trim``: drop trailing zeros (``sig(47.60, 4, trim=True) == "47.6"``). Empty for a missing value."""
    if missing(x):
        return EMPTY
    r = round_sig(float(x), digits)
    if r == 0:
        return "0"
    if abs(r) >= 10**digits:
        return f"{float(x):,.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    text = f"{r:.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def integer(n: float) -> str:
    """A count with thousands separators: ``1,050,112``. Empty for a missing value."""
    return EMPTY if missing(n) else f"{int(n):,}"


def select_unit(
    value: float, base: float = 1000.0, prefixes: tuple[str, ...] = SI_PREFIXES
) -> tuple[float, str]:
    """``(scale, prefix)`` with ``1 <= |value| / scale < base`` where a prefix allows (``select_unit``):
    ``select_unit(12480) == (1000.0, "k")``; ``select_unit(2**21, 1024, BINARY_PREFIXES)`` is
    ``(2**20, "Mi")``."""
    i, scale = 0, 1.0
    while abs(value) >= scale * base and i < len(prefixes) - 1:
        i, scale = i + 1, scale * base
    return scale, prefixes[i]


def _scaled(value: float, unit: str, base: float, prefixes: tuple[str, ...], digits: int) -> str:
    if missing(value):
        return EMPTY
    x = float(value)
    scale, prefix = select_unit(round_sig(x, digits), base, prefixes)
    if scale == 1.0 and x == int(x):
        return f"{int(x)} {unit}".rstrip()  # an exact small count: "512 MAC", "640 B"
    return f"{sig(x / scale, digits)} {prefix}{unit}".rstrip()


def si(value: float, unit: str = "", digits: int = DIGITS) -> str:
    """A count or rate with a decimal prefix: ``si(12480, "MAC") == "12.48 kMAC"``,
    ``si(6.7e13, "FLOP/s", 3) == "67.0 TFLOP/s"``, ``si(512, "MAC") == "512 MAC"``."""
    return _scaled(value, unit, 1000.0, SI_PREFIXES, digits)


def nbytes(value: float, digits: int = DIGITS) -> str:
    """Bytes with a binary prefix: ``nbytes(1536) == "1.500 KiB"``, ``nbytes(3 * 2**30) == "3 GiB"``,
    ``nbytes(640) == "640 B"``."""
    if missing(value):
        return EMPTY
    x = float(value)
    scale, prefix = select_unit(round_sig(x, digits), 1024.0, BINARY_PREFIXES)
    if x / scale == int(x / scale):
        return f"{int(x / scale)} {prefix}B"  # a whole number of units: "3 MiB"
    return f"{sig(x / scale, digits)} {prefix}B"


def ms(value: float, digits: int = DIGITS) -> str:
    """A time in milliseconds: ``ms(1.23456) == "1.235 ms"``, ``ms(2417.3) == "2417 ms"``."""
    return EMPTY if missing(value) else f"{sig(value, digits)} ms"


def percent(fraction: float, decimals: int = 1) -> str:
    """A fraction as a percentage with ``decimals`` decimals: ``percent(0.8537) == "85.4%"``."""
    return EMPTY if missing(fraction) else f"{100 * float(fraction):.{decimals}f}%"


def fixed(x: float, decimals: int) -> str:
    """``x`` with exactly ``decimals`` decimals: ``fixed(0.5, 3) == "0.500"`` (fractions, FLOP/byte)."""
    return EMPTY if missing(x) else f"{float(x):.{decimals}f}"


def ratio(r: float | None, digits: int = 3, *, decimals: int = 1, latex: bool = False) -> str:
    """``0.1463`` -> ``"0.146x (85.4% saved)"``; above 1 ``"3.20x (220.0% more)"``; ``1`` -> ``"1.00x"``.
    The ratio has ``digits`` significant digits, the percentage ``decimals`` decimals (both from the unrounded
    ratio). ``latex``: ``$\\times$`` and ``\\%``."""
    if r is None or missing(r):
        return EMPTY
    times, pct = (r"$\times$", r"\%") if latex else ("x", "%")
    text = f"{sig(r, digits)}{times}"
    if r == 1:
        return text
    change = (1 - r) * 100
    word = "saved" if change > 0 else "more"
    return f"{text} ({abs(change):.{decimals}f}{pct} {word})"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``plural(1, "block") == "1 block"``, ``plural(3, "block") == "3 blocks"``."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def quantity(value: float | None, unit: str, digits: int = DIGITS, *, empty: str = EMPTY) -> str:
    """A value in the unit of a tidy row (``MAC``, ``FLOP``, ``op``, ``byte``, ``ms``, ``fraction`` as a
    percentage; other units, e.g.
    ``count``: the number alone): the prefixed text of :func:`si`, :func:`nbytes` or :func:`ms`;
    ``empty`` when missing."""
    if value is None or missing(value):
        return empty
    if unit in ("MAC", "FLOP", "op", "FLOP/s", "byte/s"):
        return si(value, unit, digits)
    if unit == "byte":
        return nbytes(value, digits)
    if unit == "ms":
        return ms(value, digits)
    if unit == "fraction":
        return percent(value)
    return integer(value) if float(value) == int(value) else sig(value, digits)


def by_spec(value: object, spec: str) -> str:
    """A table cell from a format spec: ``".3g"`` -> :func:`sig` with 3 digits, trailing zeros dropped
    (an integer from 1,000 on, never an exponent); ``".2f"`` -> :func:`fixed`; ``".1%"`` ->
    :func:`percent`. Empty for a missing value; ``ValueError`` for another spec."""
    if missing(value):
        return EMPTY
    n, kind = int(spec[1:-1] or 6), spec[-1]
    if kind == "g":
        return sig(float(value), n, trim=True)  # type: ignore[arg-type]
    if kind == "f":
        return fixed(float(value), n)  # type: ignore[arg-type]
    if kind == "%":
        return percent(float(value), n)  # type: ignore[arg-type]
    raise ValueError(f"unknown number format {spec!r}; use .Ng, .Nf or .N%")


# A step "1 where X >= k + 1, else 0" as the closed forms write it without a branch (see
# isaprof.measure.scratch: the CPU flash kernel's block sizes): Min(1, Max(0, X - k)), X a product of symbols.
_STEP = re.compile(r"Min\(1, Max\(0, ([A-Za-z_][A-Za-z0-9_*]*) - (\d+)\)\)")
IVERSON = "[c] is 1 where c holds, else 0"


def expression(text: str) -> str:
    """A SymPy-printed closed form as shown to a reader: each branch-free step ``Min(1, Max(0, X - k))``
    written as the Iverson bracket ``[X >= k+1]`` (:data:`IVERSON`); everything else unchanged.

    >>> expression("32 + 32*Min(1, Max(0, H*W - 191))")
    '32 + 32*[H*W >= 192]'
    """
    return _STEP.sub(lambda m: f"[{m.group(1)} >= {int(m.group(2)) + 1}]", text)
