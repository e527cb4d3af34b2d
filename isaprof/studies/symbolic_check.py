"""``isaprof check --symbolic``: every registered hand formula compared with the derived MACs as expressions.

The derived side is :func:`isaprof.symbolic.trace.derive` (one symbolic run, traced at a size no small
factor divides, so padding branches are the general ones). The hand side is a pure-Python function of a
``Config`` (ints in, ints out, ``math.ceil`` and ``//`` inside): it is recovered as an exact polynomial by
interpolation with rational coefficients, then checked at further sizes (a formula that is not such a
polynomial fails that check and is reported). Floors and ceilings are taken apart by residue classes: where
the derived expression has ``ceiling(H/L)``, the sizes H = L q - r (r = 0, 1, L/2, L - 1) turn it into q,
and both sides become polynomials in q; they must be identical polynomials on every class.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from isaprof import formulas
from isaprof import targets as blocks
from isaprof.config import MODES
from isaprof.symbolic.trace import H, NotSymbolic, W, derive

CHANNELS = 32
TRACE_SIZE = (61, 59)  # divisible by no factor of the blocks: the padding branches are the general ones
QH, QW = sympy.symbols("q_h q_w", integer=True, positive=True)


@dataclass(frozen=True)
class Comparison:
    """One block x impl x mode: ``status`` is ``equal``, ``differs`` or ``underivable``."""

    block: str
    impl: str
    mode: str
    status: str
    derived: str
    hand: str
    detail: str = ""

    def __str__(self) -> str:
        head = f"{self.block} [{self.impl}, {self.mode}]: {self.status}"
        if self.status == "equal":
            return f"{head}  MACs = {self.derived}{self.detail}"
        if self.status == "underivable":
            return f"{head}: {self.detail}"
        return f"{head}\n  derived: {self.derived}\n  hand:    {self.hand}\n  {self.detail}"


def _lcm_of_denominators(expr: sympy.Expr, sym: sympy.Symbol) -> int:
    dens = [1]
    for a in expr.atoms(sympy.floor, sympy.ceiling):
        num, den = sympy.fraction(sympy.together(a.args[0]))
        if sym in num.free_symbols and den.is_Integer:
            dens.append(int(den))
    return int(sympy.ilcm(*dens)) if len(dens) > 1 else 1


def _residues(period: int) -> list[int]:
    return sorted({0, 1 % period, period // 2, period - 1}) if period > 1 else [0]


def _interpolate(fn: Callable[[int, int], int], dh: int, dw: int, q0: tuple[int, int]) -> sympy.Expr:
    """The polynomial in (q_h, q_w) of degrees <= (dh, dw) through ``fn`` on a grid from ``q0``."""
    pts = list(itertools.product(range(q0[0], q0[0] + dh + 1), range(q0[1], q0[1] + dw + 1)))
    monos = [(i, j) for i in range(dh + 1) for j in range(dw + 1)]
    a = sympy.Matrix([[sympy.Integer(p) ** i * sympy.Integer(q) ** j for i, j in monos] for p, q in pts])
    b = sympy.Matrix([fn(p, q) for p, q in pts])
    coeffs = a.LUsolve(b)
    return sympy.expand(sum(c * QH**i * QW**j for c, (i, j) in zip(coeffs, monos, strict=True)))


def compare_block(
    name: str, impl: str, mode: str, hand: Callable[[int, int], int] | None = None
) -> Comparison:
    """Compare block ``name``'s hand formula (or ``hand(height, width) -> MACs``) with the derived MACs."""
    s = blocks.spec(name)
    ck, cv = blocks.resolve_channels(name, CHANNELS, None, None)

    def factory():  # noqa: ANN202 - an nn.Module factory
        return blocks.build(name, CHANNELS, impl=impl)

    try:
        d = derive(factory, CHANNELS, TRACE_SIZE, mode=mode, bytes_moved=False)  # MACs are compared
    except NotSymbolic as e:
        return Comparison(name, impl, mode, "underivable", "", "", str(e))
    expr = d.macs.expression
    if hand is None:
        options = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(s.options.items()))

        def hand(height: int, width: int) -> int:
            cfg = formulas.Config(name, 1, CHANNELS, ck, cv, height, width, impl=impl, options=options)
            c = formulas.cost(cfg)
            return c.total_macs if mode == "inference" else c.total_train_macs

    lh, lw = _lcm_of_denominators(expr, H), _lcm_of_denominators(expr, W)
    classes = 0
    for rh, rw in itertools.product(_residues(lh), _residues(lw)):
        sub = {H: lh * QH - rh, W: lw * QW - rw}
        derived_q = sympy.expand(expr.subs(sub))
        if derived_q.atoms(sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min):
            return Comparison(
                name, impl, mode, "underivable", str(expr), "", f"{derived_q} is not a polynomial"
            )
        poly = sympy.Poly(derived_q, QH, QW)
        dh, dw = poly.degree(QH) + 1, poly.degree(QW) + 1  # one more: a hand formula of higher degree shows
        q0 = next(
            (qh, qw)
            for qh, qw in itertools.product(range(1, 40), repeat=2)
            if all(_holds(g, {H: lh * q - rh, W: lw * p - rw})
                   for g in d.macs.valid_when for q in range(qh, qh + dh + 3) for p in range(qw, qw + dw + 3))
            and lh * qh - rh >= 2 and lw * qw - rw >= 2
        )  # fmt: skip

        def at(qh: int, qw: int, rh: int = rh, rw: int = rw) -> int:
            return hand(lh * qh - rh, lw * qw - rw)

        hand_q = _interpolate(at, dh, dw, q0)
        extra = [(q0[0] + dh + 1, q0[1] + dw + 2), (q0[0] + dh + 2, q0[1] + 1)]
        for qh, qw in extra:
            if hand_q.subs({QH: qh, QW: qw}) != at(qh, qw):
                not_poly = f"(not a polynomial of degree <= {dh}, {dw} in q_h, q_w)"
                where = f"on H = {lh}*q_h - {rh}, W = {lw}*q_w - {rw}"
                return Comparison(name, impl, mode, "differs", str(expr), not_poly, where)
        if sympy.expand(hand_q - derived_q) != 0:
            back = {QH: (H + rh) / lh, QW: (W + rw) / lw}
            return Comparison(
                name, impl, mode, "differs", str(sympy.expand(derived_q.subs(back))),
                str(sympy.expand(hand_q.subs(back))), f"on H = {lh}*q_h - {rh}, W = {lw}*q_w - {rw}",
            )  # fmt: skip
        classes += 1
    region = f"  (on {classes} residue classes of H mod {lh}, W mod {lw})" if lh * lw > 1 else ""
    valid = f"  valid when {' and '.join(map(str, d.macs.valid_when))}" if d.macs.valid_when else ""
    return Comparison(name, impl, mode, "equal", str(expr), str(expr), region + valid)


def _holds(cond: sympy.Basic, subs: dict) -> bool:
    return bool(cond.subs(subs))


def check_symbolic(names: list[str] | None = None, modes: tuple[str, ...] = MODES) -> list[Comparison]:
    """Every registered block (with a formula) x impl x mode."""
    out = []
    for name in names or blocks.names():
        if name not in formulas.base.known():
            continue
        for impl in blocks.spec(name).impls:
            for mode in modes:
                out.append(compare_block(name, impl, mode))
    return out
