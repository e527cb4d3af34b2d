"""Exact evaluation of a size expression at many integer points at once (numpy, no code generation).

The derivation evaluates hundreds of expressions (costs, guards, candidate simplifications) on a grid of
sizes. ``sympy.lambdify`` prints and compiles each one (milliseconds apiece) and computes in float64, where
``floor((H + 3)/7)`` may land on the wrong side of an integer. Here an expression is walked once, each
value kept as an exact rational (int64 numerator and positive denominator arrays, in lowest terms), so
``floor``, ``ceiling``, ``Mod``, ``Max``, ``Min`` and comparisons are exact.

Supported: integers and rationals, the symbols given, ``+``, ``*``, powers by an integer,
``floor``, ``ceiling``, ``Mod``, ``Max``, ``Min``, the six relations, ``And``, ``Or``, ``Not``, true and
false. Anything else, or a value that could overflow int64, raises :class:`Unsupported` (the caller falls
back to ``lambdify``). A point where a division or ``Mod`` is by zero is undefined there: NaN in a value,
false in a relation (true for ``Ne``), as numpy's float arithmetic gives.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy

LIMIT = 2**62  # an intermediate bound above this: Unsupported (int64 would overflow)


class Unsupported(ValueError):
    """An expression (or a magnitude) this evaluator does not handle."""


class _Value:
    """``num / den`` at every point (``den`` > 0, int64 arrays broadcastable to the points' shape: a
    constant is 0-d), ``bad`` where undefined (None: nowhere). Reduced to lowest terms only where the
    magnitudes grow large (:data:`SMALL`): floors, comparisons and ``Mod`` need no reduction."""

    __slots__ = ("num", "den", "bad", "_bounds")

    def __init__(self, num: np.ndarray, den: np.ndarray, bad: np.ndarray | None) -> None:
        self.num, self.den, self.bad = num, den, bad
        self._bounds: tuple[int, int] | None = None

    def bounds(self) -> tuple[int, int]:
        """The largest magnitudes of the numerator and of the denominator."""
        if self._bounds is None:
            if not self.num.size:
                self._bounds = (0, 1)
            else:
                self._bounds = (int(np.abs(self.num).max()), int(self.den.max()))
        return self._bounds


SMALL = 2**31  # numerators and denominators below this are left unreduced


def _reduced(num: np.ndarray, den: np.ndarray, bad: np.ndarray | None) -> _Value:
    if den.size and den.min() > 0:
        value = _Value(num, den, bad)
        n, d = value.bounds()
        if d == 1 or (n < SMALL and d < SMALL):  # integers (most values), or small: left as they are
            return value
    zero = den == 0
    if zero.any():  # a division by zero: undefined there
        bad = zero if bad is None else (bad | zero)
        den = np.where(zero, 1, den)
    sign = np.where(den < 0, -1, 1)
    g = np.gcd(num, den)
    g = np.where(g == 0, 1, g)
    return _Value(num // g * sign, den // g * sign, bad)


def _bad(*values: _Value) -> np.ndarray | None:
    masks = [v.bad for v in values if v.bad is not None]
    if not masks:
        return None
    out = masks[0].copy()
    for m in masks[1:]:
        out |= m
    return out


def _check(*bounds: int) -> None:
    if math.prod(bounds) > LIMIT:
        raise Unsupported("a value too large for int64")


def _check_sum(a: _Value, b: _Value) -> None:
    """``a.num * b.den + b.num * a.den`` and ``a.den * b.den`` within int64."""
    (na, da), (nb, db) = a.bounds(), b.bounds()
    if na * db + nb * da > LIMIT or da * db > LIMIT:
        raise Unsupported("a value too large for int64")


def _add(a: _Value, b: _Value) -> _Value:
    _check_sum(a, b)
    return _reduced(a.num * b.den + b.num * a.den, a.den * b.den, _bad(a, b))


def _mul(a: _Value, b: _Value) -> _Value:
    (na, da), (nb, db) = a.bounds(), b.bounds()
    _check(na, nb)
    _check(da, db)
    return _reduced(a.num * b.num, a.den * b.den, _bad(a, b))


def _difference(a: _Value, b: _Value) -> np.ndarray:
    """The sign-carrying numerator of ``a - b`` (its denominator is positive)."""
    _check_sum(a, b)
    return a.num * b.den - b.num * a.den


def _walk(e: sympy.Basic, env: dict[sympy.Symbol, np.ndarray], shape: tuple[int, ...], memo: dict) -> Any:
    """``e`` as a :class:`_Value` (numbers) or a bool array (relations, logic)."""
    if e in memo:
        return memo[e]
    out = _node(e, env, shape, memo)
    memo[e] = out
    return out


_RELATIONS = {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
              ">=": np.greater_equal}  # fmt: skip


def _node(e: sympy.Basic, env: dict[sympy.Symbol, np.ndarray], shape: tuple[int, ...], memo: dict) -> Any:
    ones = np.ones((), dtype=np.int64)  # broadcast against the points
    if e is sympy.true or e is sympy.false:
        return np.full(shape, bool(e))
    if isinstance(e, sympy.Rational):  # Integer included
        p, q = int(e.p), int(e.q)
        _check(abs(p) + 1, q)
        return _Value(ones * p, ones * q, None)
    if isinstance(e, sympy.Symbol):
        if e not in env:
            raise Unsupported(f"no values for {e}")
        return _Value(env[e], ones, None)
    args = [_walk(a, env, shape, memo) for a in e.args]
    if isinstance(e, (sympy.And, sympy.Or, sympy.Not)):
        if any(isinstance(a, _Value) for a in args):
            raise Unsupported("logic on numbers")
        if isinstance(e, sympy.Not):
            return ~args[0]
        op = np.logical_and if isinstance(e, sympy.And) else np.logical_or
        out = args[0]
        for a in args[1:]:
            out = op(out, a)
        return out
    if any(not isinstance(a, _Value) for a in args):
        raise Unsupported(f"{type(e).__name__} of a relation")
    if isinstance(e, (sympy.Add, sympy.Mul)):
        out = args[0]
        for a in args[1:]:
            out = _add(out, a) if isinstance(e, sympy.Add) else _mul(out, a)
        return out
    if isinstance(e, sympy.Pow):
        base, k = args[0], e.args[1]
        if not k.is_Integer:
            raise Unsupported("a power by other than an integer")
        k = int(k)
        _check(*([max(base.bounds())] * abs(k)))
        num, den = (base.num**k, base.den**k) if k >= 0 else (base.den ** (-k), base.num ** (-k))
        return _reduced(num, den, base.bad)
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        (a,) = args
        q = np.floor_divide(a.num, a.den) if isinstance(e, sympy.floor) else -np.floor_divide(-a.num, a.den)
        return _Value(q, ones, a.bad)
    if isinstance(e, (sympy.Max, sympy.Min)):
        out = args[0]
        for a in args[1:]:
            d = _difference(a, out)
            take = d > 0 if isinstance(e, sympy.Max) else d < 0
            out = _Value(np.where(take, a.num, out.num), np.where(take, a.den, out.den), _bad(out, a))
        return out
    if isinstance(e, sympy.Mod):  # a - b floor(a / b), the sign of b as Python's and SymPy's
        a, b = args
        _check_sum(a, b)
        na, nb, den = a.num * b.den, b.num * a.den, a.den * b.den  # a = na / den, b = nb / den
        zero = nb == 0
        bad = _bad(a, b)
        if zero.any():
            bad = zero if bad is None else (bad | zero)
            nb = np.where(zero, 1, nb)
        return _reduced(np.mod(na, nb), den, bad)
    if isinstance(e, sympy.core.relational.Relational):
        if e.rel_op not in _RELATIONS:
            raise Unsupported(f"relation {e.rel_op}")
        a, b = args
        out = _RELATIONS[e.rel_op](_difference(a, b), 0)
        bad = _bad(a, b)
        if bad is not None:
            out = np.where(bad, e.rel_op == "!=", out)
        return out
    raise Unsupported(f"no exact evaluation of {type(e).__name__}")


def evaluate(
    expr: sympy.Basic,
    symbols: Sequence[sympy.Symbol],
    values: Sequence[np.ndarray],
    replace: dict[sympy.Basic, sympy.Basic] | None = None,
) -> np.ndarray:
    """``expr`` at every point, the points given by ``values[k]``, the integer values of ``symbols[k]``:
    a float64 array (NaN where undefined) or, for a relation or logic, a bool array. ``replace``: each
    sub-expression key evaluated as its value instead (the values of ``expr.xreplace(replace)``, without
    building it). :class:`Unsupported` for what the module docstring does not list."""
    arrays = [np.asarray(v, dtype=np.int64) for v in values]
    shape = arrays[0].shape
    env = dict(zip(symbols, arrays, strict=True))
    memo: dict[sympy.Basic, Any] = {}
    seeded = {a: _walk(sympy.sympify(c), env, shape, memo) for a, c in (replace or {}).items()}
    memo.update(seeded)
    out = _walk(sympy.sympify(expr), env, shape, memo)
    if not isinstance(out, _Value):
        return np.broadcast_to(out, shape).copy() if np.shape(out) != shape else out
    result = out.num / out.den
    if out.bad is not None:
        result = np.where(out.bad, np.nan, result)
    return np.broadcast_to(result, shape).copy() if result.shape != shape else result
