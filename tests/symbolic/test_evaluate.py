"""Exact grid evaluation (isaprof/symbolic/evaluate.py) against SymPy's own value at each point."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

from isaprof.symbolic.evaluate import Unsupported, evaluate
from isaprof.symbolic.trace import H, W

POINTS = [np.array([1, 2, 7, 63, 64, 65, 513, 1023]), np.array([3, 64, 9, 1, 100, 65, 512, 1024])]


@pytest.mark.parametrize(
    "text",
    [
        "49152*ceiling(H/64)**2*ceiling(W/64)**2 + 154763264*ceiling(H/64)*ceiling(W/64) + 46080*H*W",
        "3*H**2*W**2/1024 + H/7 - W/9",  # fractions, left unreduced while small
        "floor((H + Mod(6*H, 7))/7) - ceiling(W/8)/3",
        "Max(H*W/3, 100) + Min(H, W)",
        "7",  # a constant: one value per point all the same
        "H/(W - 64)",  # undefined (NaN) at W = 64
    ],
)
def test_values_equal_sympys_at_every_point(text: str) -> None:
    e = sympy.sympify(text, locals={"H": H, "W": W})
    got = evaluate(e, (H, W), POINTS)
    assert got.shape == POINTS[0].shape
    for i, (h, w) in enumerate(zip(*POINTS, strict=True)):
        want = e.subs({H: int(h), W: int(w)})
        if want.is_finite is False or want is sympy.nan:
            assert np.isnan(got[i])
        else:
            assert got[i] == float(want), (text, h, w)


def test_relations_and_logic_are_boolean_at_every_point() -> None:
    got = evaluate(sympy.And(sympy.Eq(sympy.Mod(sympy.ceiling(H / 8), 8), 0), W <= 64), (H, W), POINTS)
    assert got.dtype == bool and got.tolist() == [False, False, False, True, False, False, False, False]
    assert evaluate(sympy.true, (H, W), POINTS).tolist() == [True] * 8


def test_a_value_beyond_int64_is_refused() -> None:
    with pytest.raises(Unsupported):
        evaluate(H**8 * W**8 * 2**40, (H, W), POINTS)
