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
from isaprof.symbolic.trace import H, W, derive, numeric_count
from tests.corpus.modules import CORPUS, Entry

SLOW = {"SwinLayer (SW-MSA)"}  # its derivation takes ~15 s on 2 cores; W-MSA covers the same code


def _params(slow: bool = False) -> list:  # noqa: ANN401
    out = []
    for e in CORPUS:
        marks = [pytest.mark.slow] if slow and e.name in SLOW else []
        out.append(pytest.param(e, id=e.name, marks=marks))
    return out


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


@pytest.mark.parametrize("entry", _params(slow=True))
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
