"""Structural connectivity: exact pair counts, checked against brute-force boolean products and by hand."""

from __future__ import annotations

import numpy as np
import pytest

from isaprof.flow.stages import Cross, Neighbours, Partition, dense_chain_stats, pair_stats
from isaprof.flow.structural import analyse, isa_layout, reach, structure
from isaprof.targets.blocks.isa import isa_geometry

ISA_CASES = [
    ((8, 8), (2, 2)),
    ((8, 8), (4, 2)),
    ((8, 8), (8, 8)),
    ((8, 8), (3, 3)),  # padded to 9x9
    ((7, 9), (2, 3)),  # padded to 8x9
    ((7, 9), (4, 4)),  # padded to 8x12
]


def _brute(s) -> list:
    """Prefix statistics by dense (N, N) boolean products: the reference for every fast path."""
    return [dense_chain_stats(list(s.stages[: k + 1]), s.real, s.residual) for k in range(len(s.stages))]


@pytest.mark.parametrize("size,factor", ISA_CASES)
def test_isa_every_pair_after_both_stages_exactly_one_path(size, factor):
    r = analyse(structure("isa", size, factor=factor))
    n = size[0] * size[1]
    assert r.cumulative[-1].connected == n * n
    assert (r.cumulative[-1].paths_min, r.cumulative[-1].paths_max) == (1, 1)  # one intermediate position
    assert r.stages_needed == (1 if factor == (1, 1) else 2)
    assert list(r.cumulative) == _brute(structure("isa", size, factor=factor))


@pytest.mark.parametrize("size,factor", ISA_CASES)
def test_isa_single_stage_reaches_only_its_group(size, factor):
    s = structure("isa", size, factor=factor)
    r = analyse(s)
    wp, (top, left) = s.grid[1], s.offset
    h, w = size
    rows, cols = np.divmod(np.arange(h * w), w)  # real coordinates
    gh, gw = rows + top, cols + left  # padded-grid coordinates
    long_group = (gh % factor[0]) * factor[1] + gw % factor[1]  # (N,)
    window = (gh // factor[0]) * (wp // factor[1]) + gw // factor[1]  # (N,)
    for stats, label in ((r.alone[0], long_group), (r.alone[1], window)):
        assert stats.connected == int((label[:, None] == label[None, :]).sum())  # pairs within a group
        assert stats.paths_max == 1
    assert r.cumulative[0] == r.alone[0]


def test_isa_8x8_factor_2x2_fractions_by_hand():
    r = analyse(structure("isa", (8, 8), factor=(2, 2)))
    # long-range: 4 groups of 4x4 = 16 positions: 4 * 16^2 / 64^2 = 1/4; short-range: 16 windows of 4: 1/16
    assert [a.fraction for a in r.alone] == [0.25, 0.0625]


@pytest.mark.parametrize("size,factor", ISA_CASES)
def test_isa_layout_matches_block_padding(size, factor):
    qh, qw, top, bottom, left, right = isa_geometry(*size, factor)
    assert isa_layout(*size, factor) == ((qh * factor[0], qw * factor[1]), (top, left))


def test_isa_masked_padding_cuts_pairs_whose_intermediate_is_padded():
    s = structure("isa", (7, 9), factor=(4, 4), masked=True)
    r = analyse(s)
    assert list(r.cumulative) == _brute(s)
    assert r.stages_needed is None and r.cumulative[-1].paths_min == 0
    # Brute force by the definition: the unique intermediate k = window(i) ∩ long group(j) must be real.
    hp, wp = s.grid
    gh, gw = np.divmod(np.arange(hp * wp), wp)
    real = s.real
    lost = 0
    for i in np.flatnonzero(real):
        for j in np.flatnonzero(real):
            k = (gh[i] // 4 * 4 + gh[j] % 4) * wp + gw[i] // 4 * 4 + gw[j] % 4
            lost += not real[k]
    assert r.cumulative[-1].connected == 63 * 63 - lost
    assert lost > 0 and f"{lost} of {63 * 63} pairs" in s.notes[0]
    unmasked = analyse(structure("isa", (7, 9), factor=(4, 4)))
    assert unmasked.fraction == 1.0  # unmasked, padded intermediates still carry information


def test_isa_masked_without_padding_is_still_fully_connected():
    assert analyse(structure("isa", (8, 8), factor=(4, 2), masked=True)).fraction == 1.0


@pytest.mark.parametrize("recurrence", [1, 2, 3, 4])
def test_criss_cross_closed_form_matches_brute_force(recurrence):
    s = structure("criss_cross", (4, 5), recurrence=recurrence)
    assert list(analyse(s).cumulative) == _brute(s)


def test_criss_cross_r1_row_and_column_r2_every_pair():
    h, w = 6, 7
    r1 = analyse(structure("criss_cross", (h, w), recurrence=1))
    assert r1.cumulative[0].connected == h * w * (h + w - 1)  # each output: its row + column
    assert r1.stages_needed is None
    r2 = analyse(structure("criss_cross", (h, w), recurrence=2))
    assert r2.fraction == 1.0 and r2.stages_needed == 2
    # two passes: (h_i, w_j) and (h_j, w_i) for a pair sharing neither row nor column; H + W - 1 for i == j
    assert (r2.cumulative[-1].paths_min, r2.cumulative[-1].paths_max) == (2, h + w - 1)


def test_axial_and_dense():
    r = analyse(structure("axial", (5, 6)))
    assert [a.fraction for a in r.alone] == [1 / 5, 1 / 6]  # a row, then a column
    assert r.fraction == 1.0 and (r.cumulative[-1].paths_min, r.cumulative[-1].paths_max) == (1, 1)
    d = analyse(structure("dense", (5, 6)))
    assert d.fraction == 1.0 and d.stages_needed == 1


def test_large_maps_are_exact_and_cheap():
    for name, opts in (
        ("isa", {"factor": (16, 16)}),
        ("isa", {"factor": (3, 5)}),
        ("axial", {}),
        ("criss_cross", {"recurrence": 2}),
    ):
        r = analyse(structure(name, (256, 256), **opts))
        assert r.cumulative[-1].connected == 256**4, name
    r97 = analyse(structure("isa", (97, 97), factor=(8, 8)))  # padded to 104x104
    assert (r97.fraction, r97.cumulative[-1].paths_min, r97.cumulative[-1].paths_max) == (1.0, 1, 1)


def test_sparse_nonlocal_sampled_keys_plus_residual():
    h, w, k = 5, 6, 4
    r = analyse(structure("sparse_nonlocal", (h, w), k=k))
    n = h * w
    sampled = {(i * n) // k for i in range(k)}  # grid sampling
    # each query reads the k sampled positions, and itself through the residual unless sampled
    assert r.cumulative[0].connected == n * k + (n - len(sampled))
    assert r.residual and not r.fraction == 1.0


def test_non_local_sub_sample_drops_odd_edge():
    r = analyse(structure("non_local", (5, 6), sub_sample=True))
    # every output reads the 24 positions of the pooled 4x6 region; the odd last row (6 positions) is never a
    # key and reaches only its own output, through the residual
    assert r.cumulative[0].connected == 30 * 24 + 6


def test_reach_is_the_group_of_the_query():
    s = structure("isa", (8, 8), factor=(2, 2))
    long = reach(s, (3, 5), upto=1)
    assert set(zip(*np.nonzero(long), strict=True)) == {
        (h, w) for h in range(1, 8, 2) for w in range(1, 8, 2)
    }
    assert (reach(s, (3, 5)) == 1).all()
    cc = reach(structure("criss_cross", (4, 5), recurrence=1), (1, 2))
    assert cc[1, 2] == 2 and cc[1].sum() == 6 and cc[:, 2].sum() == 5 and cc.sum() == 4 + 5 - 1 + 1


def test_fast_paths_match_dense_on_random_partitions():
    rng = np.random.default_rng(0)
    real = rng.random(30) < 0.8
    for _ in range(20):
        stages = [Partition(str(p), rng.integers(0, 4, 30), rng.random(30) < 0.7) for p in range(3)]
        for k in (1, 2, 3):
            assert pair_stats(stages[:k], real, True) == dense_chain_stats(stages[:k], real, True)
    nb = Neighbours("n", rng.integers(0, 30, (30, 5)))
    assert pair_stats([nb], real, True) == dense_chain_stats([nb], real, True)
    assert pair_stats([Cross("c", 5, 6)] * 2, np.ones(30, bool), False) == dense_chain_stats(
        [Cross("c", 5, 6)] * 2, np.ones(30, bool), False
    )


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: structure("isa", (0, 4)), "size must be two positive integers"),
        (lambda: structure("isa", (4, 4), factor=(0, 2)), "factor must be two positive integers"),
        (lambda: structure("isa", (4, 4), recurrence=2), "no option"),
        (lambda: structure("nope", (4, 4)), "unknown block"),
        (lambda: structure("criss_cross", (4, 4), recurrence=0), "recurrence"),
        (lambda: reach(structure("dense", (4, 4)), (4, 0)), "query must lie"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
