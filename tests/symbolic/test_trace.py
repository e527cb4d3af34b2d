"""Derived closed forms (isaprof/symbolic/trace.py) against numeric counts, and check --symbolic."""

from __future__ import annotations

import pytest
import sympy
import torch
from torch import nn

from isaprof import targets as blocks
from isaprof.cli import main
from isaprof.studies.symbolic_check import compare_block
from isaprof.symbolic.trace import H, NotSymbolic, W, derive, numeric_count

SIZES = [(9, 11), (16, 16), (13, 8), (24, 40), (33, 17)]  # odd and even


class TwoConvs(nn.Module):
    """Not a built-in: conv 3x3 (pad 1), stride-2 1x1 conv: MACs = 9 C^2 H W + C^2 ceil(H/2) ceil(W/2)."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b = nn.Conv2d(c, c, 1, stride=2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.flatten(1).t()  # (C*H*W... ) -> keep rows where positive
        kept = rows[rows[:, 0] > 0]  # (K, B): K depends on the data
        return kept.t() @ kept


def _value(expr: sympy.Expr, size: tuple[int, int]) -> int:
    return int(expr.subs({H: size[0], W: size[1]}))


@pytest.mark.parametrize("name,impl", [(n, i) for n in blocks.names() for i in blocks.spec(n).impls])
def test_derived_macs_equal_numeric_counts(name: str, impl: str) -> None:
    def factory() -> nn.Module:
        return blocks.build(name, 16, impl=impl)

    d = derive(factory, 16, (61, 59), bytes_moved=False)  # a size no factor divides: the padded branches
    expr = sympy.sympify(d.to_json()["macs"]["expression"], locals={"H": H, "W": W})
    assert expr == d.macs.expression  # SymPy's own functions only: reads back
    for size in SIZES:
        if all(bool(g.subs({H: size[0], W: size[1]})) for g in d.macs.valid_when):
            assert _value(expr, size) == numeric_count(factory, 16, size, 1, "inference"), size


def test_non_builtin_module_with_stride_keeps_its_ceilings() -> None:
    d = derive(TwoConvs, 4, (9, 7))
    assert d.macs.expression == sympy.expand(144 * H * W + 16 * sympy.ceiling(H / 2) * sympy.ceiling(W / 2))
    for size in SIZES:
        assert _value(d.macs.expression, size) == numeric_count(TwoConvs, 4, size, 1, "inference")
    assert d.macs.exponent == 1 and not d.macs.square_maps


def test_dense_exponent_two_and_criss_cross_on_square_maps() -> None:
    dense = derive(lambda: blocks.build("dense", 64), 64, bytes_moved=False)
    assert dense.macs.expression == 64 * H**2 * W**2 + 10240 * H * W  # (HW)^2 (Ck + Cv) + convs
    assert dense.macs.exponent == 2 and not dense.macs.square_maps
    cc = derive(lambda: blocks.build("criss_cross", 64), 64, bytes_moved=False)
    assert cc.macs.exponent == sympy.Rational(3, 2) and cc.macs.square_maps


def test_train_mode_is_three_times_the_convs() -> None:
    d = derive(lambda: blocks.build("linear", 16), 16, (8, 8), mode="train", bytes_moved=False)
    for size in SIZES[:2]:
        assert _value(d.macs.expression, size) == numeric_count(
            lambda: blocks.build("linear", 16), 16, size, 1, "train"
        )


def test_isa_traced_without_padding_holds_with_padding_too() -> None:
    """Traced at 64x64 (the unpadded branch), ISA's MACs come out in the padded sizes 8 ceil(H/8): the
    padded branch (masks, crop) adds no MAC, so no divisibility condition is kept; at divisible sizes the
    expression is H^2 W^2 + 24576 H W, and it is exact at odd sizes where the block pads."""
    factory = lambda: blocks.build("isa", 64)  # noqa: E731
    d = derive(factory, 64, (64, 64), bytes_moved=False)
    assert d.macs.valid_when == ()
    h8, w8 = sympy.Symbol("h8", positive=True, integer=True), sympy.Symbol("w8", positive=True, integer=True)
    divisible = sympy.expand(d.macs.expression.subs({H: 8 * h8, W: 8 * w8}))
    assert divisible == sympy.expand((H**2 * W**2 + 24576 * H * W).subs({H: 8 * h8, W: 8 * w8}))
    for h, w in ((9, 13), (12, 10), (17, 8)):  # padded in H, in W, in both
        assert int(d.macs.expression.subs({H: h, W: w})) == numeric_count(factory, 64, (h, w), 1, "inference")


def test_data_dependent_shape_is_refused_in_one_line() -> None:
    with pytest.raises(NotSymbolic) as e:
        derive(DataDependent, 4, (8, 8))
    assert "\n" not in str(e.value) and "aten." in str(e.value)


def test_check_symbolic_equal_and_wrong_formula_caught() -> None:
    assert compare_block("linear", "naive", "inference").status == "equal"
    assert compare_block("isa", "naive", "inference").status == "equal"
    wrong = compare_block("dense", "naive", "inference", hand=lambda h, w: 32 * (h * w) ** 2 + 2561 * h * w)
    assert wrong.status == "differs" and "2561" in wrong.hand


def test_cli_formula_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formula", "linear", "--channels", "16", "--json"]) == 0
    import json

    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"macs", "bytes_moved", "symbols", "peak_bytes", "traced_at"} and out["symbols"] == [
        "H",
        "W",
    ]
    assert out["peak_bytes"]["expression"] == "340*H*W + 136"  # C = 16: resolved to one moment
    assert out["peak_bytes"]["reason"].startswith("resolved")
    assert set(out["macs"]) == {"expression", "leading", "exponent", "valid_when"}
    assert out["macs"]["exponent"] == 1


def test_bytes_moved_derived_in_closed_form_matches_the_counter():
    """The traffic counter keeps symbolic sizes symbolic: dense's unfused traffic is 6 passes over the
    (B, N, N) fp32 affinity (24 H^2 W^2 bytes at B = 1) plus linear terms, exact at every size checked."""
    d = derive(lambda: blocks.build("dense", 16), 16, (8, 8))
    assert d.bytes_moved is not None
    expr = sympy.sympify(d.bytes_moved.expression, locals={"H": H, "W": W})
    assert sympy.Poly(expr, H, W).coeff_monomial(H**2 * W**2) == 24
    for h, w in ((5, 7), (8, 8), (12, 9)):
        want = numeric_count(lambda: blocks.build("dense", 16), 16, (h, w), 1, "inference", "bytes_moved")
        assert int(expr.subs({H: h, W: w})) == want


@pytest.mark.slow
def test_a_whole_network_derives_in_readable_form_exact_at_untraced_sizes() -> None:
    """FCN-R50-D8 (the cheapest network): ResNet's padded stride-2 convs, floor((W - 1)/2) + 1 each, come
    out as ceiling(W/2), ceiling(W/4), ceiling(W/8); no condition; exact at three untraced sizes, odd and
    even, H < W and H > W."""
    factory = lambda: blocks.build("fcn_r50_d8", 3)  # noqa: E731
    d = derive(factory, 3, (40, 24), bytes_moved=False)
    e = d.macs.expression
    assert d.macs.valid_when == ()
    assert e.atoms(sympy.ceiling) == {sympy.ceiling(s / k) for s in (H, W) for k in (2, 4, 8)}, e
    assert not e.atoms(sympy.floor)
    for h, w in ((37, 51), (64, 48), (90, 33)):
        assert int(e.subs({H: h, W: w})) == numeric_count(factory, 3, (h, w), 1, "inference"), (h, w)
