"""Size expressions and conditions in the form a reader checks: exact rewrite rules for integer sizes.

Every symbol is a positive integer (a size). A rule fires only where it is an identity at every such
value; ``n`` below is any integer-valued expression (integer coefficients over symbols, ``floor``,
``ceiling``, ``Mod``, ``Max``, ``Min``), ``k``, ``j`` positive integers, ``c``, ``d`` integers:

1. ``floor((n + r)/k) = floor((n + floor(r))/k)`` and ``ceiling((n + r)/k) = ceiling((n + ceiling(r))/k)``
   for a rational ``r``: a floor or ceiling of a rational affine form becomes ``floor((n + c)/k)``, with the
   common factor of ``n``'s coefficients and ``k`` cancelled (``floor((g n + c)/(g k)) = floor((n +
   floor(c/g))/k)``) and ``ceiling(x/k) = floor((x + k - 1)/k)``;
2. nesting collapses: ``floor((floor((n + c)/k) + d)/j) = floor((n + c + k d)/(k j))``, so ResNet's
   ``floor((floor((W - 1)/2) + 1 - 1)/2) + 1`` chain is ``ceiling(W/4)``;
3. ``floor((n + c)/k)`` is printed as ``q + floor(n/k)`` (``c = q k``), ``q + ceiling(n/k)`` (``c = q k + k -
   1``) or ``q + floor((n + s)/k)`` (``c = q k + s``): ``floor(W/8 - 1/8) + 1`` is ``ceiling(W/8)``;
4. ``Eq(A, k F)`` with ``F`` the floor or ceiling of ``A/k`` (``A`` integer-valued) is ``Eq(Mod(A, k), 0)``;
5. a relation on ``a f + c`` (``a`` a non-zero integer) with ``f`` the symbol ``s`` or ``floor((b s + c)/k)``
   (``b > 0``: non-decreasing in ``s``) is solved for ``s``: ``Eq(ceiling(W/64), 1)`` is ``W <= 64``; an
   equality gives two bounds (:func:`conditions` splits them), a bound ``s >= 1`` is dropped (true);
6. inside a floor or ceiling, ``Mod(a n, m)`` with ``a = -1 (mod m)`` (the padding of ``n`` up to a multiple
   of ``m``) is ``m ceiling(n/m) - n``: ``floor((H + Mod(6 H, 7))/7)`` is ``ceiling(H/7)``, and a quotient
   by it, ``floor((H + Mod(6 H, 7))/ceiling(H/7))``, is 7.

:func:`canonical` applies them bottom-up; anything else is rebuilt unchanged. SymPy and numpy (no torch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
import sympy

from isaprof.symbolic.evaluate import Unsupported, evaluate

__all__ = ["SPAN", "canonical", "conditions", "integral", "readable"]

_ROUNDING = (sympy.floor, sympy.ceiling)


def integral(e: sympy.Basic) -> bool:
    """Whether ``e`` takes integer values at every integer value of its (integer) symbols."""
    if isinstance(e, sympy.Integer):
        return True
    if isinstance(e, sympy.Symbol):
        return bool(e.is_integer)
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        return True
    if isinstance(e, (sympy.Add, sympy.Mul, sympy.Mod, sympy.Max, sympy.Min)):
        return all(integral(a) for a in e.args)
    if isinstance(e, sympy.Pow):
        return integral(e.base) and e.exp.is_Integer and e.exp >= 0
    return False


def _padding(x: sympy.Basic) -> dict[sympy.Basic, sympy.Expr]:
    """Rule 6: each ``Mod(a n, m)`` in ``x`` with ``a = -1 (mod m)`` (the padding ``-n % m`` up to a multiple
    of ``m``), ``n`` integer-valued, as ``m ceiling(n/m) - n``."""
    reps: dict[sympy.Basic, sympy.Expr] = {}
    for mod in x.atoms(sympy.Mod):
        p, m = mod.args
        a, n = p.as_coeff_Mul()
        if m.is_Integer and m > 1 and a.is_Integer and (a + 1) % m == 0 and integral(n):
            reps[mod] = m * _rounded(sympy.ceiling, n / m) - n
    return reps


def _affine(x: sympy.Expr) -> tuple[sympy.Expr, int, int] | None:
    """``(n, c, k)`` with ``x = (n + c)/k``: ``n`` integer-valued without a constant term and its
    coefficients' common factor with ``k`` not cancelled yet, ``c`` an integer, ``k >= 1``; None if ``x``
    is not of that form."""
    terms = sympy.Add.make_args(sympy.expand(x.xreplace(_padding(x))))
    parts: list[tuple[sympy.Rational, sympy.Expr]] = []
    for t in terms:
        coeff, rest = t.as_coeff_Mul()
        if not coeff.is_Rational or not (rest == 1 or integral(rest)):
            return None
        parts.append((coeff, rest))
    k = math.lcm(*(int(coeff.q) for coeff, _ in parts)) if parts else 1
    c = sum(int(coeff * k) for coeff, rest in parts if rest == 1)
    n = sympy.Add(*(int(coeff * k) * rest for coeff, rest in parts if rest != 1))
    return n, c, k


def _floor_parts(kind: type, x: sympy.Expr) -> tuple[sympy.Expr, int, int] | None:
    """``(n, c, k)`` with ``kind(x) = floor((n + c)/k)`` (rule 1, then rule 2 on a nested floor), ``n`` with
    no common factor with ``k``; None if ``x`` is not a rational affine form of integer-valued terms."""
    found = _affine(x)
    if found is None:
        return None
    n, c, k = found
    g = math.gcd(k, *(int(t.as_coeff_Mul()[0]) for t in sympy.Add.make_args(n))) if n != 0 else k
    if g > 1:
        n, k = sympy.expand(n / g), k // g
        c = c // g if kind is sympy.floor else -((-c) // g)  # floor(c/g) or ceiling(c/g)
    if kind is sympy.ceiling:
        c += k - 1
    if isinstance(n, _ROUNDING) and k > 1:  # rule 2: floor((floor((m + c2)/k2) + c)/k)
        inner = _floor_parts(type(n), n.args[0])
        if inner is not None:
            m, c2, k2 = inner
            return m, c2 + k2 * c, k2 * k
    return n, c, k


def _rounded(kind: type, x: sympy.Expr) -> sympy.Expr:
    """``kind(x)`` (floor or ceiling) by rules 1 to 3."""
    parts = _floor_parts(kind, x)
    if parts is None:
        return kind(x)
    n, c, k = parts
    if k == 1:
        return n + c
    q, s = divmod(c, k)
    if s == 0:
        return q + sympy.floor(n / k)
    if s == k - 1:
        return q + sympy.ceiling(n / k)
    return q + sympy.floor((n + s) / k)


def _divisible(rel: sympy.Basic) -> sympy.Basic | None:
    """Rule 4: ``Eq(Mod(A, k), 0)`` for ``Eq(A, k F)``, ``F`` the floor or ceiling of ``A/k``; else None."""
    e = sympy.expand(rel.lhs - rel.rhs)
    for t in sympy.Add.make_args(e):
        coeff, atom = t.as_coeff_Mul()
        if not isinstance(atom, _ROUNDING) or not coeff.is_Integer or abs(coeff) < 2:
            continue
        k = abs(int(coeff))
        a = sympy.expand(-(e - t) / coeff * k)  # e = 0  <=>  a = k atom
        if not integral(a):
            continue
        if atom in (_rounded(sympy.floor, a / k), _rounded(sympy.ceiling, a / k)):
            return sympy.Eq(sympy.Mod(a, k), 0)
    return None


def _monotone(f: sympy.Expr) -> tuple[sympy.Symbol, int, int, int] | None:
    """``(s, b, c, k)`` with ``f = floor((b s + c)/k)``, ``b > 0`` (``k = 1``: ``f = b s + c``); else None."""
    if isinstance(f, sympy.Symbol) and f.is_integer:
        return f, 1, 0, 1
    if not isinstance(f, _ROUNDING):
        return None
    parts = _floor_parts(type(f), f.args[0])
    if parts is None:
        return None
    n, c, k = parts
    b, s = n.as_coeff_Mul()
    if not (isinstance(s, sympy.Symbol) and s.is_integer and b.is_Integer and b > 0):
        return None
    return s, int(b), c, k


def _solved(rel: sympy.Basic) -> sympy.Basic | None:
    """Rule 5: the relation as bounds on one symbol (``true``/``false`` where they decide it); else None."""
    if rel.rel_op not in ("==", ">=", "<=", ">", "<"):
        return None
    e = sympy.expand(rel.lhs - rel.rhs)
    const, rest = e.as_coeff_Add()
    a, f = rest.as_coeff_Mul()
    if not (const.is_Rational and a.is_Integer and a != 0):
        return None
    found = _monotone(f)
    if found is None:
        return None
    s, b, c, k = found
    op, x = rel.rel_op, -const / a  # a f op' x
    if a < 0:
        op = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "=="}[op]
    lo: int | None = None  # f >= lo
    hi: int | None = None  # f <= hi
    if op == "==":
        if not x.is_Integer:
            return sympy.false
        lo = hi = int(x)
    elif op in (">=", ">"):
        lo = int(sympy.ceiling(x)) if op == ">=" else int(sympy.floor(x)) + 1
    else:
        hi = int(sympy.floor(x)) if op == "<=" else int(sympy.ceiling(x)) - 1
    # floor((b s + c)/k) >= v  <=>  b s + c >= v k;  <= v  <=>  b s + c <= (v + 1) k - 1
    s_lo = None if lo is None else -((c - lo * k) // b)  # ceiling((lo k - c)/b)
    s_hi = None if hi is None else ((hi + 1) * k - 1 - c) // b
    out: list[sympy.Basic] = []
    if s_lo is not None and s_lo > 1:  # s >= 1 always
        out.append(sympy.Ge(s, s_lo))
    if s_hi is not None:
        if s_hi < max(1, s_lo or 1):
            return sympy.false
        out.append(sympy.Eq(s, s_hi) if s_lo == s_hi else sympy.Le(s, s_hi))
        if s_lo == s_hi:
            out = [out[-1]]
    return sympy.And(*out) if out else sympy.true


def _relation(rel: sympy.Basic) -> sympy.Basic:
    """A relation between canonical sides by rules 4 and 5, else as it is."""
    if rel.rel_op == "==":
        found = _divisible(rel)
        if found is not None:
            return found
    found = _solved(rel)
    return rel if found is None else found


@functools.lru_cache(maxsize=65536)
def canonical(e: sympy.Basic) -> sympy.Basic:
    """``e`` with the module's rules applied bottom-up; equal to ``e`` at every positive integer value of
    its (integer, positive) symbols."""
    if not e.args or isinstance(e, (sympy.Symbol, sympy.Number)):
        return e
    args = [canonical(a) for a in e.args]
    if isinstance(e, _ROUNDING):
        return _rounded(type(e), args[0])
    if isinstance(e, sympy.core.relational.Relational):
        rel = e.func(*args)
        return _relation(rel) if isinstance(rel, sympy.core.relational.Relational) else rel
    if any(a is not b for a, b in zip(args, e.args, strict=True)):
        return e.func(*args)
    return e


def conditions(guards: Iterable[sympy.Basic]) -> list[sympy.Basic]:
    """:func:`canonical` of each of ``guards``, an ``And`` split into its parts, ``true`` and repeats
    dropped, in order; then the conditions on one size ``s`` that include an upper bound ``s <= u``
    (``u`` at most :data:`SPAN`) replaced by the interval they allow, found by evaluating them at every
    ``s`` in ``[1, u]`` (exact: that is every size they allow): ``W <= 64`` and ``Eq(Mod(ceiling(W/8),
    8), 0)`` are ``W >= 57`` and ``W <= 64``. Where what they allow is not an interval they stay."""
    out: list[sympy.Basic] = []
    for g in guards:
        c = canonical(g)
        for part in sympy.And.make_args(c):
            if part is not sympy.true and part not in out:
                out.append(part)
    for s in sorted({next(iter(g.free_symbols)) for g in out if len(g.free_symbols) == 1}, key=str):
        out = _interval(out, s)
    return out


SPAN = 1 << 16  # the largest upper bound below which the conditions on a size are enumerated


def _interval(conds: list[sympy.Basic], s: sympy.Symbol) -> list[sympy.Basic]:
    """``conds`` with those on ``s`` alone replaced by bounds (see :func:`conditions`)."""
    mine = [g for g in conds if g.free_symbols == {s}]
    tops = [int(g.rhs) for g in mine if isinstance(g, sympy.LessThan) and g.lhs == s and g.rhs.is_Integer]
    if len(mine) < 2 or not tops or min(tops) > SPAN:
        return conds
    values = np.arange(1, min(tops) + 1, dtype=np.int64)
    try:
        ok = evaluate(sympy.And(*mine), [s], [values]).astype(bool)
    except Unsupported:
        return conds
    idx = np.flatnonzero(ok)
    if not idx.size:
        return [sympy.false]
    lo, hi = int(values[idx[0]]), int(values[idx[-1]])
    if idx.size != hi - lo + 1:  # not an interval
        return conds
    bounds = [sympy.Eq(s, lo)] if lo == hi else [*([s >= lo] if lo > 1 else []), s <= hi]
    at = conds.index(mine[0])
    rest = [g for g in conds if g not in mine]
    return rest[:at] + bounds + rest[at:]


def readable(condition: sympy.Basic) -> str:
    """A condition as a reader writes it: ``Eq(a, b)`` as ``a = b``, ``Ne(a, b)`` as ``a != b``, any other
    as SymPy prints it (``W <= 64``)."""
    if isinstance(condition, sympy.Eq):
        return f"{condition.lhs} = {condition.rhs}"
    if isinstance(condition, sympy.Ne):
        return f"{condition.lhs} != {condition.rhs}"
    return str(condition)
