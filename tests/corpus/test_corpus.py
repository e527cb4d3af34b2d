"""Third-party modules (tests/corpus/modules.py) against independent references: MACs against PyTorch's
``FlopCounterMode`` on real CPU tensors with the fused kernels off (the math SDPA backend, no
``nn.MultiheadAttention`` fast path), the fake-tensor peak against the storage tracker on real CPU tensors,
and the derived MAC formula against numeric counts at three sizes it was not traced at."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sympy
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from isaprof.measure.memory import track_peak
from isaprof.measure.protocol import step
from isaprof.symbolic.peak import derive_peak
from isaprof.symbolic.trace import H, W, derive, numeric_count
from tests.corpus.modules import CORPUS, Entry


def _params() -> list:  # noqa: ANN401
    return [pytest.param(e, id=e.name) for e in CORPUS]


@pytest.fixture(autouse=True)
def no_fast_path() -> Iterator[None]:
    """The fused inference path of nn.MultiheadAttention off (one op whose inside no counter sees)."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    yield
    torch.backends.mha.set_fastpath_enabled(before)


def _need(e: Entry) -> None:
    if e.needs:
        pytest.importorskip(e.needs)


@pytest.mark.parametrize("entry", _params())
def test_macs_equal_torch_flop_counter_with_fused_kernels_off(entry: Entry) -> None:
    _need(entry)
    torch.manual_seed(0)
    module, x = entry.factory(), torch.randn(1, entry.channels, *entry.traced)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        step(module, x, "inference")()
    macs = numeric_count(entry.factory, entry.channels, entry.traced, 1, "inference")
    assert macs > 0 and 2 * macs == counter.get_total_flops()  # FLOPs = 2 MACs in both conventions


@pytest.mark.parametrize("entry", _params())
def test_fake_tensor_peak_equals_the_peak_on_real_cpu_tensors(entry: Entry) -> None:
    _need(entry)
    torch.manual_seed(0)
    module, x = entry.factory(), torch.randn(1, entry.channels, *entry.traced)
    real = track_peak(step(module, x, "inference")).peak
    meta = numeric_count(entry.factory, entry.channels, entry.traced, 1, "inference", "peak_bytes")
    assert meta == real > 0


@pytest.mark.parametrize("entry", _params())
def test_derived_macs_exact_at_three_untraced_sizes(entry: Entry) -> None:
    _need(entry)
    d = derive(entry.factory, entry.channels, entry.traced, bytes_moved=False)
    expr = sympy.sympify(str(d.macs.expression), locals={"H": H, "W": W})  # plain SymPy: reads back
    assert expr == d.macs.expression
    for h, w in entry.untraced:
        assert entry.traced != (h, w)
        assert all(bool(g.subs({H: h, W: w})) for g in d.macs.valid_when), (h, w, d.macs.valid_when)
        want = numeric_count(entry.factory, entry.channels, (h, w), 1, "inference")
        assert int(expr.subs({H: h, W: w})) == want, (entry.name, (h, w))


def _entry(name: str) -> Entry:
    return next(e for e in CORPUS if e.name == name)


def _peak_exact(entry: Entry, sizes: tuple[tuple[int, int], ...]) -> sympy.Expr:
    """The derived peak (traced at the entry's size), checked exact against the tracker's numeric peak at
    each of ``sizes``, none of them traced; its conditions each on one size only (no order between H and
    W: such a guard comes from Python's min/max on the two sizes, and the cost does not depend on it)."""
    p = derive_peak(entry.factory, entry.channels, entry.traced)
    assert p.derived is not None, p.reason
    assert all(len(g.free_symbols) == 1 for g in p.derived.valid_when), p.derived.valid_when
    expr = p.derived.expression
    for h, w in sizes:
        assert entry.traced != (h, w)
        assert all(bool(g.subs({H: h, W: w})) for g in p.derived.valid_when), ((h, w), p.derived.valid_when)
        want = numeric_count(entry.factory, entry.channels, (h, w), 1, "inference", "peak_bytes")
        assert int(expr.subs({H: h, W: w})) == want, (entry.name, (h, w))
    return p.derived


def test_attention_peak_holds_on_both_sides_of_the_flash_kernel_block_sizes() -> None:
    """nn.MultiheadAttention (math path off: the CPU flash kernel) picks its query block by L = H W (32 /
    64 / 256 at L < 192 / < 768 / else): the derived peak holds across both thresholds, no condition on
    H W, at sizes odd and even, H < W and H > W."""
    sizes = ((9, 13), (13, 9), (12, 20), (17, 23), (29, 31), (40, 24))  # H W = 117, 117, 240, 391, 899, 960
    d = _peak_exact(_entry("nn.MultiheadAttention"), sizes)
    assert all(g.rhs <= 2 for g in d.valid_when)  # only torch's own H, W >= 2
    assert d.expression.atoms(sympy.Min)  # the block size, min(block, L), as Min


@pytest.mark.parametrize("name", ["SwinLayer (W-MSA)", "SwinLayer (SW-MSA)"])
def test_swin_peak_conditions_are_the_codes_own(name: str) -> None:
    """Swin's peak: no H <= W (transformers' ``min(input_resolution)`` compares H and W; the cost does not
    depend on which is smaller), exact at H < W and H > W, odd and even H. The kept ``Mod(W, 4) = 0`` is
    the code's: where the window padding pads W, the padded branch's extra copy changes the peak."""
    entry = _entry(name)
    pytest.importorskip("transformers")
    d = _peak_exact(entry, ((9, 16), (21, 8), (13, 12), (12, 20), (30, 24)))
    assert sympy.Eq(sympy.Mod(W, 4), 0) in d.valid_when
    want = numeric_count(entry.factory, entry.channels, (12, 10), 1, "inference", "peak_bytes")
    assert int(d.expression.subs({H: 12, W: 10})) != want  # W = 10 padded: the condition is needed
