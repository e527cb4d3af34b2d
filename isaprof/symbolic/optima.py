"""ISA's best factorization (P_h, P_w) derived from its own MAC expression, with the factor as symbols.

ISA (isaprof/targets/blocks/isa.py) is traced once on fake tensors whose sizes are products of four symbols,
``(1, C, P_h Q_h, P_w Q_w)``, with its ``factor`` set to the symbols ``(P_h, P_w)`` and its geometry to
``Q = H / P`` (no padding: the region where H = P_h Q_h, W = P_w Q_w). ``FlopCounterMode`` then returns
MACs as a polynomial in P_h, P_w, Q_h, Q_w; substituting Q = H / P gives MACs(H, W, P_h, P_w). The block's
cost depends on the factor only through P = P_h P_w (checked, not assumed); setting dMACs/dP = 0 and
solving with SymPy gives the optimum, ``P_h P_w = sqrt(H W)`` when both stages have the same widths.

The integer optimum at a given H x W (sizes no factor divides included) comes from the same polynomial
with Q = ceiling(H / P_h), ceiling(W / P_w): the padded map is (Q_h P_h, Q_w P_w) and zero padding costs no
MACs, so that is exact for every factor. It is evaluated at every (P_h, P_w) in [1, H] x [1, W].
"""

from __future__ import annotations

import unittest.mock
from typing import Any

import numpy as np
import sympy

from isaprof import papers
from isaprof.symbolic.trace import H, W

P_h, P_w, Q_h, Q_w = (sympy.Symbol(n, integer=True, positive=True) for n in ("P_h", "P_w", "Q_h", "Q_w"))
P = sympy.Symbol("P", positive=True)  # P = P_h * P_w, relaxed to a real number for the derivative
TRACE_HINTS = {"P_h": 8, "P_w": 4, "Q_h": 5, "Q_w": 7}  # distinct values: a swapped symbol shows


def factored_macs(channels: int, key_channels: int | None = None, value_channels: int | None = None,
                  impl: str = "naive", mode: str = "inference") -> sympy.Expr:  # fmt: skip
    """ISA's MACs of one protocol step as a polynomial in P_h, P_w, Q_h, Q_w (batch 1), from one trace."""
    import torch
    from torch._dynamo.source import ConstantSource
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

    import isaprof.targets.blocks.isa as isa_block
    from isaprof import targets as blocks
    from isaprof.measure.protocol import step
    from isaprof.symbolic.trace import count_flops_symbolic, translate

    with torch.device("meta"):
        module = blocks.build("isa", channels, key_channels, value_channels, impl=impl)
    env = ShapeEnv(duck_shape=False)
    fake = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    with fake:
        module = module.to_empty(device="cpu")
    sym: dict[str, Any] = {}
    for name, hint in TRACE_HINTS.items():
        s = env.create_symbol(hint, ConstantSource(name), dynamic_dim=DimDynamic.DYNAMIC)
        sym[name] = env.create_symintnode(s, hint=hint)
    names = {sym[n].node.expr: s for n, s in zip(TRACE_HINTS, (P_h, P_w, Q_h, Q_w), strict=True)}
    module.factor = (sym["P_h"], sym["P_w"])  # the attribute forward() reads; check_factor wants ints

    def geometry(h: Any, w: Any, factor: Any) -> tuple[Any, ...]:  # H = P_h Q_h exactly: no padding
        return sym["Q_h"], sym["Q_w"], 0, 0, 0, 0

    with (
        fake,
        unittest.mock.patch.object(isa_block, "isa_geometry", geometry),
        unittest.mock.patch.object(isa_block, "check_factor", tuple),  # symbolic P_h, P_w are not ints
    ):
        x = torch.empty(1, channels, sym["P_h"] * sym["Q_h"], sym["P_w"] * sym["Q_w"])  # (1, C, H, W)
        (total, uncounted) = count_flops_symbolic(step(module, x, mode))
    if uncounted:
        raise ValueError(f"isa: op aten.{uncounted[0]} multiplies matrices but has no FLOP formula")
    expr = total.node.expr if isinstance(total, torch.SymInt) else sympy.sympify(total)
    return sympy.expand(translate(expr, names) / 2)


def optimum(factored: sympy.Expr) -> dict[str, Any]:
    """The factor minimising ``factored`` (MACs in P_h, P_w, Q_h, Q_w) at fixed H, W.

    Returns ``expression`` (MACs in H, W, P_h, P_w), ``in_P`` (the same in P = P_h P_w), ``attention``
    (its P-dependent terms), ``derivative`` (d/dP), ``solution`` (P at the minimum, in H, W), ``optimum``
    (the sentence ``P_h*P_w = ...``) and ``second_derivative_positive`` (a minimum, not a maximum).
    ``ValueError`` if the cost depends on P_h and P_w other than through their product.
    """
    in_hw = sympy.expand(factored.subs({Q_h: H / P_h, Q_w: W / P_w}))  # H = P_h Q_h, W = P_w Q_w
    in_p = sympy.expand(in_hw.subs(P_w, P / P_h))
    if P_h in in_p.free_symbols:
        raise ValueError(f"isa: MACs depend on P_h, P_w other than through P_h*P_w: {in_hw}")
    attention = sympy.Add(*(t for t in sympy.Add.make_args(in_p) if P in t.free_symbols))
    derivative = sympy.diff(in_p, P)
    roots = [r for r in sympy.solve(sympy.Eq(derivative, 0), P) if r.is_positive is not False]
    if len(roots) != 1:
        raise ValueError(f"isa: dMACs/dP = {derivative} has {len(roots)} positive roots")
    root = sympy.simplify(roots[0])
    curvature = sympy.simplify(sympy.diff(in_p, P, 2).subs(P, root))
    return {
        "expression": in_hw,
        "in_P": in_p,
        "attention": attention,
        "derivative": derivative,
        "solution": root,
        "optimum": f"P_h*P_w = {_text(root)}",
        "second_derivative_positive": bool(curvature.is_positive),
    }


def _text(expr: sympy.Expr) -> str:
    """``sqrt(H*W)`` rather than SymPy's ``sqrt(H)*sqrt(W)`` (equal for positive H, W)."""
    for k in (1, 2, 3, 4):
        if sympy.simplify(expr - k * sympy.sqrt(H) * sympy.sqrt(W)) == 0:
            return "sqrt(H*W)" if k == 1 else f"{k}*sqrt(H*W)"
    return str(expr)


def best_factors(factored: sympy.Expr, size: tuple[int, int], tie: float = 0.0) -> dict[str, Any]:
    """Integer optimum at ``size`` over every (P_h, P_w) in [1, H] x [1, W], padding included (module
    docstring): ``factors`` (every pair within ``tie`` of the minimum, as ``"PhxPw"``), ``macs`` (the
    minimum), ``P`` (their products), ``continuous_P`` (sqrt(H W) rule's value for comparison)."""
    h, w = size
    ph, pw = np.meshgrid(np.arange(1, h + 1), np.arange(1, w + 1), indexing="ij")
    qh, qw = -(-h // ph), -(-w // pw)  # ceil(H / P_h), ceil(W / P_w)
    fn = sympy.lambdify((P_h, P_w, Q_h, Q_w), factored, modules="numpy")
    macs = np.broadcast_to(
        np.asarray(fn(ph.astype(object), pw.astype(object), qh.astype(object), qw.astype(object))), ph.shape
    )  # fmt: skip  (exact ints)
    low = min(macs.ravel())
    best = [(int(a), int(b)) for a, b, m in zip(ph.ravel(), pw.ravel(), macs.ravel(), strict=True)
            if m <= low * (1 + tie)]  # fmt: skip
    return {
        "factors": [f"{a}x{b}" for a, b in best],
        "P": sorted({a * b for a, b in best}),
        "macs": int(low),
        "continuous_P": float(np.sqrt(h * w)),
    }


def isa_optimum(channels: int, sizes: tuple[tuple[int, int], ...] = papers.SIZES,
                impl: str = "naive") -> dict[str, Any]:  # fmt: skip
    """The JSON of ``derived.json``'s ``isa_optimum``: the factored expression, the optimum over
    P = P_h P_w and the integer optimum at each of ``sizes`` (inference, batch 1, the block's widths)."""
    factored = factored_macs(channels, impl=impl)
    opt = optimum(factored)
    return {
        "channels": channels,
        "impl": impl,
        "factored": str(factored),
        "expression": str(opt["expression"]),
        "attention": str(opt["attention"]),
        "derivative": str(opt["derivative"]),
        "solution": str(opt["solution"]),
        "optimum": opt["optimum"],
        "minimum": opt["second_derivative_positive"],
        "at": {f"{h}x{w}": best_factors(factored, (h, w)) for h, w in sizes},
    }
