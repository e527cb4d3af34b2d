"""Closed-form bytes moved (formulas.traffic) against the counter (measure.traffic), exactly."""

from __future__ import annotations

import pytest

from isaprof.formulas.traffic import affinity_bytes, dense_traffic, isa_traffic
from isaprof.profiling.profiler import profile


def _by_kind(terms: dict[str, int]) -> dict[str, int]:
    kinds = {"bmm": "aten.bmm", "mul": "aten.mul", "softmax": "aten._softmax", "copy": "aten.clone"}
    out: dict[str, int] = {}
    for term, v in terms.items():
        op = next(op for k, op in kinds.items() if k in term)
        out[op] = out.get(op, 0) + v
    return out


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_dense_closed_form_equals_counter(dtype):
    rec = profile("dense", size=(6, 5), channels=16, key_channels=4, value_channels=8, dtype=dtype)
    terms = dense_traffic(rec.config)
    measured = rec.bytes_moved.by_op
    assert {op: measured[op] for op in _by_kind(terms)} == _by_kind(terms)
    b = 4 if dtype == "float32" else 2
    assert affinity_bytes(1, 30, b) == 6 * 30 * 30 * b  # 1 write + 2 (scale) + 2 (softmax) + 1 read


@pytest.mark.parametrize("factor", [(2, 3), (4, 1)])
def test_isa_closed_form_equals_counter(factor):
    rec = profile("isa", size=(8, 6), channels=16, batch=2, factor=factor)
    terms = isa_traffic(rec.config)
    measured = rec.bytes_moved.by_op
    assert {op: measured[op] for op in _by_kind(terms)} == _by_kind(terms)
    assert terms["regroup_copy"] > 0


def test_isa_moves_less_affinity_than_dense():
    # 128x128, factor 8x8: dense 6 N^2 b vs isa 6 N (Q + P) b with N = 16384, Q = 256, P = 64
    n, q, p = 128 * 128, 256, 64
    assert affinity_bytes(1, n, 4) // (affinity_bytes(p, q, 4) + affinity_bytes(q, p, 4)) == n // (q + p)
