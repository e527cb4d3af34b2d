"""Peak memory as a closed form in H, W: the storage tracker run once under the symbolic input of
:mod:`isaprof.symbolic.trace`.

:class:`isaprof.measure.memory.StorageTracker` keeps the live bytes as a running sum and, after every op,
compares it with the peak so far. On symbolic sizes that comparison is the one thing that cannot simply be
evaluated: ``current > peak`` between two expressions in H, W has no single answer. So the tracker here
(:class:`MomentTracker`) does not compare; it records the live bytes after every op (a *moment*), all as
expressions. The peak is the ``Max`` of the moments, reduced:

1. moments that are nowhere the largest on a grid of sizes (``[2, R]^2`` plus a few large maps) are
   dropped; what is left is ``Max(a, b, ...)``;
2. that ``Max`` goes through the same guard minimisation and simplification as the MAC expression
   (:func:`isaprof.symbolic.trace.closed_form`): where one moment is the largest at every size of the region
   the ``Max`` becomes that moment; where the order of two moments changes with the size (the comparison
   cannot be decided for all H, W), the ``Max`` stays and the reason names the two moments and a size where
   each is the larger;
3. the result is confirmed against numeric peaks (same tracker, concrete sizes) at up to five sizes.

NB: as for MACs, step 1 and 2 decide on a finite grid (and large probes), confirmed numerically beyond it;
a peak that moves to another moment only past all probed sizes would be missed and caught by none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy

from isaprof.symbolic.evaluate import Unsupported, evaluate
from isaprof.symbolic.trace import (
    GRID_MIN,
    Derivation,
    Derived,
    Factory,
    H,
    MomentTracker,
    NotSymbolic,
    SizeGrid,
    Traced,
    Truth,
    W,
    allowed_region,
    closed_form,
    derivation,
    derive,
    holds,
    leading_term,
    simplify_on,
    trace_costs,
)

__all__ = ["LARGE", "MomentTracker", "PeakDerivation", "derive_all", "derive_peak"]

LARGE = ((256, 256), (1024, 1024), (4096, 64), (64, 4096))  # beyond the grid: growth decides these


@dataclass(frozen=True)
class PeakDerivation:
    """Result of :func:`derive_peak`: ``derived`` (None when no closed form) and the one-line ``reason``;
    ``numeric`` the peak at the traced size (the fallback), ``moments`` how many the tracker recorded."""

    derived: Derived | None
    reason: str
    numeric: int | None
    moments: int
    candidates: int

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"expression": None, "reason": self.reason, "numeric_at_traced": self.numeric}
        if self.derived is not None:
            obj.update(self.derived.to_json())
        obj["moments"], obj["candidates"] = self.moments, self.candidates
        return obj


def _values(expr: sympy.Expr, grid: SizeGrid, extra: list[tuple[int, int]]) -> np.ndarray:
    """``expr`` on ``grid``, then at the ``extra`` sizes (float64)."""
    on_grid = grid.eval(expr)
    try:
        beyond = evaluate(expr, (H, W), [np.array([h for h, _ in extra]), np.array([w for _, w in extra])])
    except Unsupported:
        f = sympy.lambdify((H, W), expr, modules=["math", {"Max": max, "Min": min}])
        beyond = np.array([float(f(h, w)) for h, w in extra])
    return np.concatenate([on_grid.astype(float), beyond.astype(float)])


def _crossing(a: sympy.Expr, b: sympy.Expr) -> str:
    """``", equal at H*W = n"`` when ``a - b`` is a function of N = H W alone with one positive root."""
    n = sympy.Symbol("N", positive=True)
    diff = sympy.simplify((a - b).subs(W, n / H))
    if H in diff.free_symbols or diff.atoms(sympy.floor, sympy.ceiling, sympy.Mod):
        return ""
    try:
        roots = [r for r in sympy.solve(diff, n) if r.is_positive]
    except (NotImplementedError, TypeError, ValueError):  # SymPy cannot solve it (a Min or Max of N)
        return ""
    return f", equal at H*W = {roots[0]}" if len(roots) == 1 else ""


def _beyond_grid(
    derived: Derived,
    winners: list[sympy.Expr],
    truth: Callable[[tuple[int, ...]], int | None],
    grid: SizeGrid,
) -> Derived:
    """``derived`` with the moments put back that the grid simplification dropped but that are the
    largest at a large probe (a moment growing faster that overtakes past the grid, e.g. ISA's attention
    maps at C = 512 from H W = 40960); those probes are then confirmed numerically. ``ValueError`` if a
    numeric run disagrees."""
    subs_ok = [p for p in LARGE if holds(derived.valid_when, {H: p[0], W: p[1]})]
    expr = derived.expression

    def larger(c: sympy.Expr, h: int, w: int) -> bool:
        try:
            return bool(c.subs({H: h, W: w}) > expr.subs({H: h, W: w}))
        except (ZeroDivisionError, TypeError, ValueError):  # not defined at this point: skipped
            return False

    missing = [c for c in winners if any(larger(c, h, w) for h, w in subs_ok)]
    if not missing:
        return derived
    region = allowed_region(derived.valid_when, grid)  # each put back simplified on the same region
    expr = sympy.Max(expr, *(simplify_on(c, region, grid) if region.any() else c for c in missing))
    for h, w in subs_ok:
        want, got = truth((h, w)), expr.subs({H: h, W: w})
        if want is None or got != want:
            raise ValueError(f"{expr} is {got} at {(h, w)} where a numeric run gives {want}")
    lead, exp, square = leading_term(expr)
    checked = derived.checked + tuple(subs_ok)
    return dataclasses.replace(
        derived, expression=expr, leading=lead, exponent=exp, square_maps=square, checked=checked
    )


def derive_peak(
    factory: Factory,
    channels: int,
    size: tuple[int, int] = (64, 64),
    *,
    mode: str = "inference",
    layout: str = "map",
) -> PeakDerivation:
    """Peak bytes (the storage tracker's convention, batch 1) of one protocol step as a closed form in
    H, W where the tracker's comparisons resolve; otherwise ``derived=None`` with the reason and the numeric
    peak at ``size``. Never raises for a module that runs numerically. ``layout="tokens"``: a
    ``(B, H*W, C)`` input."""
    truth = Truth(factory, channels, 1, mode, layout, (H, W))
    try:
        traced = trace_costs(
            factory, channels, size, mode=mode, layout=layout, bytes_moved=False, moments=True
        )
    except NotSymbolic as e:
        return PeakDerivation(None, f"symbolic run stopped: {e}", truth.of("peak_bytes")(tuple(size)), 0, 0)
    return _peak(traced, size, truth)


def derive_all(
    factory: Factory,
    channels: int,
    size: tuple[int, int] = (64, 64),
    *,
    mode: str = "inference",
    bytes_moved: bool = True,
    layout: str = "map",
) -> tuple[Derivation, PeakDerivation]:
    """:func:`isaprof.symbolic.trace.derive` and :func:`derive_peak` (batch 1) from one symbolic run, the
    numeric checks of all three costs sharing one numeric run per size. Where that run stops, each is
    derived on its own (so each fails or falls back exactly as it does alone)."""
    truth = Truth(factory, channels, 1, mode, layout, (H, W))
    try:
        traced = trace_costs(
            factory, channels, size, mode=mode, layout=layout, bytes_moved=bytes_moved, moments=True
        )
        d = derivation(traced, size, truth)
    except NotSymbolic:  # each on its own, failing or falling back as it does alone
        d = derive(factory, channels, size, mode=mode, bytes_moved=bytes_moved, layout=layout)
        return d, derive_peak(factory, channels, size, mode=mode, layout=layout)
    return d, _peak(traced, size, truth)


def _peak(traced: Traced, size: tuple[int, int], truth: Truth) -> PeakDerivation:
    """The peak's :class:`PeakDerivation` from the tracker's moments (op, live bytes) of a symbolic run
    traced at ``size`` (module docstring, steps 1 to 3)."""
    peak_of = truth.of("peak_bytes")
    numeric = peak_of(tuple(size))
    try:
        exprs = [(op, sympy.expand(traced.translate(e))) for op, e in traced.measured.moments or ()]
    except NotSymbolic as e:
        return PeakDerivation(None, f"symbolic run stopped: {e}", numeric, 0, 0)
    if not any(e.free_symbols for _, e in exprs):
        why = "the tracker's sizes came out as integers (specialised): no closed form"
        return PeakDerivation(None, why, numeric, len(exprs), 0)
    unique: dict[sympy.Expr, str] = {}
    for op, e in exprs:
        unique.setdefault(e, op)
    grid = SizeGrid((H, W), max(GRID_MIN, 2 * max(size)))
    keep = np.all([v >= 2 for v in grid.values], axis=0)
    cand = list(unique)
    table = np.array([_values(e, grid, list(LARGE)) for e in cand])  # (moments, points)
    table = table[:, np.concatenate([keep, np.ones(len(LARGE), dtype=bool)])]
    top = table.max(axis=0)
    winners = [i for i in range(len(cand)) if np.any(table[i] >= top)]  # the largest somewhere
    raw = sympy.Max(*(cand[i] for i in winners))
    try:
        derived = closed_form(raw, traced.guards(), (H, W), size, peak_of)
    except ValueError as e:  # the numeric check disagreed
        return PeakDerivation(
            None, f"not confirmed numerically: {e}"[:300], numeric, len(exprs), len(winners)
        )
    try:
        derived = _beyond_grid(derived, [cand[i] for i in winners], peak_of, grid)
    except ValueError as e:
        return PeakDerivation(None, f"beyond the grid: {e}"[:300], numeric, len(exprs), len(winners))
    maxes = derived.expression.atoms(sympy.Max)
    if not maxes:
        op = unique.get(derived.expression, None)
        after = f" (live bytes after aten.{op})" if op else ""
        why = (f"resolved: one moment{after} is the largest of {len(unique)} distinct moments at every size "
               "of the grid and the large probes; confirmed numerically")  # fmt: skip
        return PeakDerivation(derived, why, numeric, len(exprs), len(winners))
    if isinstance(derived.expression, sympy.Max):  # leading term: that of the fastest-growing argument
        leads = [leading_term(a) for a in derived.expression.args]
        if all(e is not None for _, e, _ in leads):
            lead, exp, square = max(leads, key=lambda t: t[1])
            derived = dataclasses.replace(derived, leading=lead, exponent=exp, square_maps=square)
    m = derived.expression if isinstance(derived.expression, sympy.Max) else max(maxes, key=sympy.count_ops)
    a, b = m.args[0], m.args[1]
    va, vb = _values(a, grid, list(LARGE)), _values(b, grid, list(LARGE))
    points = [grid.point(i) for i in range(grid.values[0].size)] + list(LARGE)
    where_a = next((p for p, x, y in zip(points, va, vb, strict=True) if x > y and min(p) >= 2), None)
    where_b = next((p for p, x, y in zip(points, va, vb, strict=True) if y > x and min(p) >= 2), None)

    def name(e: sympy.Expr) -> str:
        return f"{e} (after aten.{unique[e]})" if e in unique else str(e)

    why = (f"undecided: {name(a)} vs {name(b)}: the first is larger at {where_a}, the second at {where_b}"
           f"{_crossing(a, b)}; the peak is their Max")  # fmt: skip
    return PeakDerivation(derived, why, numeric, len(exprs), len(winners))
