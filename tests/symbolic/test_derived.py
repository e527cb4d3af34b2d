"""ISA's optimum from its factored MAC expression, and peak memory as a closed form (symbolic tracker)."""

from __future__ import annotations

import sympy

from isaprof import targets as blocks
from isaprof.symbolic.optima import P_h, P_w, Q_h, Q_w, best_factors, factored_macs, optimum
from isaprof.symbolic.peak import derive_peak
from isaprof.symbolic.trace import H, W, numeric_count


def test_isa_optimum_is_sqrt_hw_and_the_factored_expression_is_exact() -> None:
    f = factored_macs(16)  # C = 16, Ck = Cv = 8: attention (Ck + Cv) P Q (P + Q) + convs
    assert f == sympy.expand(16 * P_h * P_w * Q_h * Q_w * (P_h * P_w + Q_h * Q_w + 80))
    opt = optimum(f)
    assert opt["optimum"] == "P_h*P_w = sqrt(H*W)" and opt["second_derivative_positive"]
    assert sympy.simplify(opt["solution"] - sympy.sqrt(H * W)) == 0
    for (h, w), (ph, pw) in [((11, 13), (2, 2)), ((12, 9), (4, 3))]:  # padded and not
        want = numeric_count(lambda ph=ph, pw=pw: blocks.build("isa", 16, factor=(ph, pw)), 16, (h, w), 1,
                             "inference")  # fmt: skip
        assert f.subs({P_h: ph, P_w: pw, Q_h: -(-h // ph), Q_w: -(-w // pw)}) == want


def test_isa_integer_optimum_at_the_papers_sizes() -> None:
    f = sympy.expand(512 * P_h * P_w * Q_h * Q_w * (P_h * P_w + Q_h * Q_w + 2560))  # C = 512, its trace
    at97 = best_factors(f, (97, 97))
    assert at97["factors"] == ["1x97", "97x1"] and at97["P"] == [97]  # sqrt(97*97) = 97, up to rounding
    at128 = best_factors(f, (128, 128))
    assert at128["P"] == [128] and "8x16" in at128["factors"] and len(at128["factors"]) == 8


def test_symbolic_peak_of_dense_equals_numeric_peaks() -> None:
    """Dense at C = 16: the peak is the output stage's tensors (256 H W bytes) on small maps and the
    attention map with its softmax (2 x 4 (HW)^2 bytes) plus the projections (96 H W) on large ones: a Max
    whose order changes at H W = 20, so no single moment. (linear resolves to one:
    tests/symbolic/test_trace.py.)"""

    def factory():  # noqa: ANN202
        return blocks.build("dense", 16)

    p = derive_peak(factory, 16, (16, 16))
    assert p.derived is not None and p.reason.startswith("undecided"), p.reason
    expr = p.derived.expression
    assert isinstance(expr, sympy.Max) and p.derived.exponent == 2
    assert expr == sympy.Max(256 * H * W, 8 * H**2 * W**2 + 96 * H * W)
    for size in [(3, 2), (16, 16), (40, 24)]:  # H W = 6 < 20: the first moment; then the second
        want = numeric_count(factory, 16, size, 1, "inference", "peak_bytes")
        assert expr.subs({H: size[0], W: size[1]}) == want, size
