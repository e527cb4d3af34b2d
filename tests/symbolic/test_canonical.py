"""The canonical forms of size expressions and conditions (isaprof/symbolic/canonical.py): each rule
gives what a reader checks, and every rewrite equals the original at every integer size of a range."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy

from isaprof.symbolic.canonical import canonical, conditions, integral, readable
from isaprof.symbolic.evaluate import evaluate
from isaprof.symbolic.trace import H, W

SIZES = np.arange(1, 601)  # every W (and H) checked
GRID = np.meshgrid(np.arange(1, 131), np.arange(1, 131), indexing="ij")
HALF, EIGHTH = sympy.Rational(1, 2), sympy.Rational(1, 8)


def _parse(text: str) -> sympy.Basic:
    return sympy.sympify(text, locals={"H": H, "W": W})


def _same(a: sympy.Basic, b: sympy.Basic) -> None:
    """``a`` and ``b`` equal at every size of the range (one symbol W, or H and W on a grid)."""
    if a.free_symbols <= {W} and b.free_symbols <= {W}:
        syms, vals = [W], [SIZES]
    else:
        syms, vals = [H, W], [g.ravel() for g in GRID]
    va = evaluate(a, syms, vals) if a.free_symbols else np.full(vals[0].shape, a)
    vb = evaluate(b, syms, vals) if b.free_symbols else np.full(vals[0].shape, b)
    bad = np.flatnonzero(np.asarray(va != vb))
    assert not bad.size, f"{a} != {b} at {[int(v[bad[0]]) for v in vals]}"


@pytest.mark.parametrize(
    "before,after",
    [
        ("floor(W/8 - 1/8) + 1", "ceiling(W/8)"),  # ResNet's padded stride: floor((W - 1)/8) + 1
        ("floor(W/2 - 1/2) + 1", "ceiling(W/2)"),
        ("ceiling(ceiling(W/8)/8)", "ceiling(W/64)"),
        ("ceiling(floor(W/8 - 1/8)/8 + 1/8)", "ceiling(W/64)"),
        ("floor((floor((W - 1)/2) + 1 - 1)/2) + 1", "ceiling(W/4)"),
        ("floor(floor(W/2)/4)", "floor(W/8)"),
        ("floor(W/2 + 1/3)", "floor(W/2)"),
        ("ceiling((3*W + 2)/6)", "floor(W/2) + 1"),
        ("floor((W + 17)/8)", "floor((W + 1)/8) + 2"),
        ("floor((W + Mod(3*W, 4))/4)", "ceiling(W/4)"),  # W padded to a multiple of 4, then / 4
        ("Eq(ceiling(floor(W/8 - 1/8)/8 + 1/8), 1)", "W <= 64"),
        ("Eq(floor(H/8 - 1/8) + 1, 8*ceiling(floor(H/8 - 1/8)/8 + 1/8))", "Eq(Mod(ceiling(H/8), 8), 0)"),
        ("Eq(W, 4*floor(W/4))", "Eq(Mod(W, 4), 0)"),
        ("Eq(floor((H + Mod(6*H, 7))/floor(H/7 + Mod(6*H, 7)/7)), 7)", "True"),  # the window is 7
        ("floor(W/8 - 1/8) + 1 >= 2", "W >= 9"),
        ("2*ceiling(W/4) < 9", "W <= 16"),
        ("Eq(ceiling(W/8), 3)", "(W >= 17) & (W <= 24)"),
        ("Eq(ceiling(W/8), 1)", "W <= 8"),
        ("Eq(floor(W/8), 0)", "W <= 7"),
        ("Eq(2*W, 7)", "False"),
        ("ceiling(W/8) <= 0", "False"),
        ("W >= 1", "True"),
        ("H >= 2", "H >= 2"),  # torch's own assumption stays as it is
        ("Eq(Mod(W, 4), 0)", "Eq(Mod(W, 4), 0)"),
        ("H*W >= 4", "H*W >= 4"),
    ],
)
def test_each_rule_gives_the_readable_form_and_is_exact(before: str, after: str) -> None:
    e = _parse(before)
    got = canonical(e)
    assert got == _parse(after), got
    _same(e, got)


def test_conditions_split_equalities_into_bounds_and_drop_what_always_holds() -> None:
    got = conditions([_parse("Eq(ceiling(W/8), 3)"), _parse("W >= 1"), _parse("Eq(H, 8*ceiling(H/8))")])
    assert got == [W >= 17, W <= 24, sympy.Eq(sympy.Mod(H, 8), 0)]


@pytest.mark.parametrize(
    "guards,want",
    [
        (["Eq(ceiling(floor(W/8 - 1/8)/8 + 1/8), 1)",
          "Eq(floor(W/8 - 1/8) + 1, 8*ceiling(floor(W/8 - 1/8)/8 + 1/8))", "H >= 2"],
         ["W >= 57", "W <= 64", "H >= 2"]),  # ISA's 8x8 grouping of a map of 8 or fewer: one group
        (["W <= 64", "Eq(Mod(W, 64), 0)"], ["Eq(W, 64)"]),
        (["W <= 64", "Eq(Mod(W, 8), 0)"], ["W <= 64", "Eq(Mod(W, 8), 0)"]),  # not an interval: stays
        (["W <= 6", "W >= 7"], ["False"]),
        (["Eq(Mod(ceiling(W/8), 8), 0)"], ["Eq(Mod(ceiling(W/8), 8), 0)"]),  # no upper bound: stays
    ],
)  # fmt: skip
def test_conditions_on_one_bounded_size_become_their_interval(guards: list[str], want: list[str]) -> None:
    before = [_parse(g) for g in guards]
    got = conditions(before)
    assert got == [_parse(w) for w in want]
    _same(sympy.And(*before), sympy.And(*got))


def _roundings(depth: int) -> list[sympy.Expr]:
    """Floors and ceilings of affine forms in W, nested ``depth`` deep, offsets on both sides of zero."""
    out: list[sympy.Expr] = []
    for kind, k, c in itertools.product((sympy.floor, sympy.ceiling), (1, 2, 3, 4, 8), (-3, -1, 0, 1, 5)):
        out.append(kind((W + c) / k))
        out.append(kind(3 * W / k + sympy.Rational(c, 2 * k)))
    if depth > 1:
        inner = _roundings(depth - 1)[::7]
        for f, kind, k, c in itertools.product(inner, (sympy.floor, sympy.ceiling), (2, 3, 8), (-1, 0, 2)):
            out.append(kind((f + c) / k))
            out.append(kind(f / k - HALF) + 1)
    return out


def test_every_rewrite_of_nested_roundings_equals_the_original_at_every_size() -> None:
    exprs = _roundings(2)
    assert len(exprs) > 400
    for e in exprs:
        _same(e, canonical(e))
    stride2 = sympy.floor(W / 2 - HALF) + 1  # floor((W - 1)/2) + 1, then a stride 4: floor((x - 1)/4) + 1
    assert canonical(sympy.floor((stride2 - 1) / 4) + 1) == sympy.ceiling(W / 8)


def test_every_rewrite_of_a_relation_equals_the_original_at_every_size() -> None:
    fs = [W, sympy.ceiling(W / 8), sympy.floor(W / 8 - EIGHTH) + 1, sympy.floor((3 * W + 2) / 4),
          sympy.ceiling(sympy.ceiling(W / 8) / 8)]  # fmt: skip
    rels = (sympy.Eq, sympy.Ge, sympy.Le, sympy.Gt, sympy.Lt)
    for f, rel, a, v in itertools.product(fs, rels, (1, -2, 3), (0, 1, 2, 7, sympy.Rational(9, 2), 64)):
        e = rel(a * f, v)
        if isinstance(e, sympy.core.relational.Relational):
            got = conditions([e])
            _same(e, sympy.And(*got))
    for f in fs[1:]:
        for k in (2, 4, 8):
            e = sympy.Eq(f, k * canonical(sympy.ceiling(f / k)))
            assert canonical(e) == sympy.Eq(sympy.Mod(canonical(f), k), 0)
            _same(e, canonical(e))


def test_two_sizes_and_what_is_left_alone() -> None:
    e = _parse("Eq(ceiling(floor(H/8 - 1/8)/8 + 1/8)*ceiling(floor(W/8 - 1/8)/8 + 1/8), 1)")
    got = canonical(e)
    assert got == sympy.Eq(sympy.ceiling(H / 64) * sympy.ceiling(W / 64), 1)  # no bound on one size
    _same(e, got)
    odd = _parse("floor(H/W)")  # a quotient by a size: not an affine form, unchanged
    assert canonical(odd) == odd
    assert integral(_parse("Mod(H, 4) + 2*ceiling(W/8)")) and not integral(_parse("H/2"))


def test_readable_writes_equalities_with_an_equals_sign() -> None:
    assert readable(_parse("Eq(Mod(ceiling(H/8), 8), 0)")) == "Mod(ceiling(H/8), 8) = 0"
    assert readable(_parse("Ne(Mod(H, 7), 0)")) == "Mod(H, 7) != 0"
    assert readable(_parse("W <= 64")) == "W <= 64"
