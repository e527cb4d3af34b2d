"""The one number formatter: exact strings for SI prefixes, significant figures, bytes, times, ratios."""

from __future__ import annotations

import math

import pytest

from isaprof import units


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (113.0854, 4, "113.1"),
        (0.00049, 4, "0.0004900"),  # trailing zeros are significant
        (9.9996, 4, "10.00"),  # rounds up a decade: still 4 digits, not "10.000"
        (9999.6, 4, "10,000"),  # 10**digits and up: an integer with separators
        (2131.4, 3, "2,131"),  # what ".3g" wrote as 2.13e+03
        (-0.5, 2, "-0.50"),
        (0, 4, "0"),
    ],
)
def test_sig(value: float, digits: int, text: str) -> None:
    assert units.sig(value, digits) == text


def test_sig_trim_and_missing() -> None:
    assert units.sig(47.60, 4, trim=True) == "47.6" and units.sig(100.0, 3, trim=True) == "100"
    assert units.sig(1e-5, 3, trim=True) == "0.00001"  # never an exponent
    assert units.sig(None) == units.sig(math.nan) == units.sig(math.inf) == ""  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (12480, "MAC", "12.48 kMAC"),  # 12,480 = 12.48 x 10^3
        (512, "MAC", "512 MAC"),  # an exact small count stays an integer
        (999_999, "FLOP", "1.000 MFLOP"),  # rounding to 4 digits crosses the prefix
        (6.7e13, "FLOP/s", "67.00 TFLOP/s"),
        (3.736e15, "FLOP", "3.736 PFLOP"),
        (2.5e18, "FLOP", "2500 PFLOP"),  # beyond the last prefix: P stays, 4 digits
    ],
)
def test_si(value: float, unit: str, text: str) -> None:
    assert units.si(value, unit) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (640, "640 B"),
        (1536, "1.500 KiB"),  # 1.5 x 2^10
        (3 * 2**20, "3 MiB"),  # a whole number of MiB
        (2**30 + 2**29, "1.500 GiB"),
        (1_073_741_823, "1.000 GiB"),  # 2^30 - 1 rounds to 1.000 x 2^30: the next unit, not exact
    ],
)
def test_nbytes(value: float, text: str) -> None:
    assert units.nbytes(value) == text


def test_times_ratios_percent_plural() -> None:
    assert (
        units.ms(1.23456) == "1.235 ms"
        and units.ms(2417.3) == "2417 ms"
        and units.ms(0.012345) == "0.01235 ms"
    )
    assert units.ratio(0.14625) == "0.146x (85.4% saved)"
    assert units.ratio(3.2) == "3.20x (220.0% more)" and units.ratio(1.0) == "1.00x"
    assert units.ratio(0.05, latex=True) == r"0.0500$\times$ (95.0\% saved)"
    assert units.percent(0.8537) == "85.4%" and units.fixed(0.25, 3) == "0.250"
    assert units.plural(1, "block") == "1 block" and units.plural(8, "block") == "8 blocks"
    assert units.integer(1_050_112) == "1,050,112"


def test_quantity_dispatches_on_the_tidy_unit() -> None:
    assert units.quantity(12480, "MAC") == "12.48 kMAC"
    assert units.quantity(213 * 2**10, "byte") == "213 KiB"
    assert units.quantity(0.5, "ms") == "0.5000 ms"
    assert units.quantity(5504, "count") == "5,504"
    assert units.quantity(None, "MAC", empty="-") == "-"


def test_by_spec() -> None:
    assert units.by_spec(2131.4, ".3g") == "2,131" and units.by_spec(47.6, ".3g") == "47.6"
    assert units.by_spec(0.123, ".1%") == "12.3%" and units.by_spec(1.005, ".2f") == "1.00"
    assert units.by_spec(math.nan, ".3g") == ""
    with pytest.raises(ValueError, match="unknown number format"):
        units.by_spec(1.0, ".3e")


def test_expression_writes_branch_free_steps_as_iverson_brackets() -> None:
    text = "Min(H*W, 192*Min(1, Max(0, H*W - 767)) + 32*Min(1, Max(0, H*W - 191)) + 32) + Min(32, H)"
    assert units.expression(text) == "Min(H*W, 192*[H*W >= 768] + 32*[H*W >= 192] + 32) + Min(32, H)"
    assert units.expression("Max(0, H - 3) + Min(1, W)") == "Max(0, H - 3) + Min(1, W)"  # not a step
