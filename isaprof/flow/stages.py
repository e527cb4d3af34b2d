"""Stages as supports over a grid of positions, and exact path counting through a chain of them.

Convention: positions are the cells of the working grid (the padded map for ISA), flattened row-major,
``p = h * Wp + w``. A stage's support ``S[i, j] = 1`` when output position ``i`` of the stage reads input
position ``j`` (``j`` is one of the keys of query ``i``). The number of paths from input ``j`` to output
``i`` through stages ``S_1`` (applied first) ... ``S_n`` is ``(S_n @ ... @ S_1)[i, j]``: the count of
chains of intermediate positions, each a key of the next stage's query. Pointwise layers (1x1 convs,
BN, ReLU, channel mixing) connect a position only to itself and are left out.

Three kinds of stage, each with an exact pair-statistics routine that never builds an ``N x N`` matrix:

* :class:`Partition`: attention within the groups of a partition (dense: one group; axial: rows or
  columns; ISA: long-range or short-range groups). A chain of partitions is counted at group level
  (``paths(i, j)`` = a product of group contingency tables), so 256x256 maps are instant.
* :class:`Cross`: a criss-cross pass (same row or same column, H + W - 1 keys). ``S = R + C - I`` with
  ``R`` = same row, ``C`` = same column; powers stay in the algebra spanned by ``I, R, C, J``
  (``R^2 = W R``, ``C^2 = H C``, ``R C = J``), so ``S^n`` is four integers.
* :class:`Neighbours`: an explicit key list per query (sparse non-local). Alone it is counted row by row;
  in a chain, or mixed with other kinds, a dense boolean product is used for small grids only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DENSE_LIMIT = 2304  # grid positions (48x48) up to which the general dense-product fallback runs


@dataclass(frozen=True, eq=False)
class Partition:
    """Attention within groups: query ``i`` reads every key ``j`` with ``labels[j] == labels[i]``.

    ``labels``: (N,) int group id per grid position. ``keys``: (N,) bool, positions allowed as keys
    (``None`` = all; ISA ``masked=True`` excludes padded positions).
    """

    name: str
    labels: np.ndarray  # (N,)
    keys: np.ndarray | None = None  # (N,)


@dataclass(frozen=True, eq=False)
class Cross:
    """One criss-cross pass on an ``height x width`` grid: row and column of the query, itself once."""

    name: str
    height: int
    width: int


@dataclass(frozen=True, eq=False)
class Neighbours:
    """Explicit keys: query ``i`` reads ``index[i, :]`` (values in ``[0, N)``; repeats count once)."""

    name: str
    index: np.ndarray  # (N, K)


Stage = Partition | Cross | Neighbours


@dataclass(frozen=True)
class PairStats:
    """Statistics over all (output, input) pairs of real positions.

    ``fraction``: connected pairs / N_real^2 (identity pairs count as connected when ``identity``).
    ``paths_min`` / ``paths_max``: number of attention paths per pair (identity path not counted).
    """

    fraction: float
    connected: int
    pairs: int
    paths_min: int
    paths_max: int


def grid_size(stage: Stage) -> int:
    """Number of grid positions a stage acts on."""
    if isinstance(stage, Partition):
        return int(stage.labels.shape[0])
    if isinstance(stage, Cross):
        return stage.height * stage.width
    return int(stage.index.shape[0])


def pair_stats(stages: list[Stage], real: np.ndarray, identity: bool) -> PairStats:
    """Exact :class:`PairStats` of the chain ``stages`` (first applied first) over ``real`` (N,) bool."""
    if not stages:
        raise ValueError("a chain needs at least one stage")
    if all(isinstance(s, Partition) for s in stages):
        return _partition_chain(stages, real, identity)
    if all(isinstance(s, Cross) for s in stages) and bool(real.all()):
        return _cross_chain(stages, identity)
    if len(stages) == 1 and isinstance(stages[0], Neighbours):
        return _neighbours(stages[0], real, identity)
    return dense_chain_stats(stages, real, identity)


def pull(stages: list[Stage], query: int) -> np.ndarray:
    """Paths from every grid position to output ``query`` through the chain: (N,) int64, O(N) per stage."""
    n = grid_size(stages[-1])
    v = np.zeros(n, dtype=np.int64)  # (N,) weights over the current stage's outputs
    v[query] = 1
    for s in reversed(stages):
        v = _pull_one(s, v)
    return v


def _pull_one(s: Stage, v: np.ndarray) -> np.ndarray:
    """``v @ S``: weights over outputs -> path counts over inputs."""
    if isinstance(s, Partition):
        _, inv = np.unique(s.labels, return_inverse=True)
        out = np.bincount(inv, weights=v, minlength=inv.max() + 1)[inv].astype(np.int64)  # (N,)
        return out if s.keys is None else out * s.keys
    if isinstance(s, Cross):
        g = v.reshape(s.height, s.width)  # (H, W)
        out = g.sum(axis=1, keepdims=True) + g.sum(axis=0, keepdims=True) - g  # (H, W)
        return out.reshape(-1)
    out = np.zeros_like(v)
    for i in np.flatnonzero(v):
        out[np.unique(s.index[i])] += v[i]
    return out


def support(s: Stage) -> np.ndarray:
    """Dense (N, N) int64 support of one stage (small grids only)."""
    n = grid_size(s)
    if n > DENSE_LIMIT:
        raise ValueError(f"dense support needs a grid of at most {DENSE_LIMIT} positions, got {n}")
    if isinstance(s, Partition):
        m = s.labels[:, None] == s.labels[None, :]  # (N, N)
        if s.keys is not None:
            m &= s.keys[None, :]
    elif isinstance(s, Cross):
        h, w = np.divmod(np.arange(n), s.width)  # (N,), (N,)
        m = (h[:, None] == h[None, :]) | (w[:, None] == w[None, :])  # (N, N)
    else:
        m = np.zeros((n, n), dtype=bool)
        m[np.repeat(np.arange(n), s.index.shape[1]), s.index.reshape(-1)] = True
    return m.astype(np.int64)


def _stats(paths_real: np.ndarray, weight: np.ndarray, diag_zero: int, identity: bool, n: int) -> PairStats:
    """Aggregate a weighted table of path counts (each cell stands for ``weight`` real pairs)."""
    connected = int(weight[paths_real > 0].sum()) + (diag_zero if identity else 0)
    used = weight > 0
    return PairStats(
        fraction=connected / (n * n),
        connected=connected,
        pairs=n * n,
        paths_min=int(paths_real[used].min()),
        paths_max=int(paths_real[used].max()),
    )


def _partition_chain(stages: list[Partition], real: np.ndarray, identity: bool) -> PairStats:
    """paths(i, j) = keys_1[j] * (M_{n,n-1} ... M_{2,1})[g_n(i), g_1(j)], M = group contingency tables."""
    labels = [np.unique(s.labels, return_inverse=True)[1] for s in stages]  # each (N,) in [0, G_p)
    keys = [np.ones(real.shape, bool) if s.keys is None else s.keys for s in stages]
    sizes = [int(lab.max()) + 1 for lab in labels]
    if len(stages) == 1:
        return _single_partition(labels[0], keys[0], real, identity)
    prod = None  # (G_p, G_1) paths between groups; the identity for p = 1, never built
    for p in range(1, len(stages)):
        m = np.zeros((sizes[p], sizes[p - 1]), dtype=np.int64)  # (G_p, G_{p-1}) intermediates k
        np.add.at(m, (labels[p][keys[p]], labels[p - 1][keys[p]]), 1)  # k: key of stage p, output of p-1
        prod = m if prod is None else m @ prod  # (G_p, G_1)
    out_w = np.bincount(labels[-1][real], minlength=sizes[-1])  # (G_n,) real outputs per group
    in_ok = real & keys[0]
    in_w = np.bincount(labels[0][in_ok], minlength=sizes[0])  # (G_1,) real, reachable inputs
    weight = out_w[:, None] * in_w[None, :]  # (G_n, G_1)
    idx = np.flatnonzero(real)
    diag_paths = prod[labels[-1][idx], labels[0][idx]] * keys[0][idx]  # (N_real,)
    n = int(real.sum())
    stats = _stats(prod, weight, int((diag_paths == 0).sum()), identity, n)
    unreachable = int((real & ~keys[0]).sum())
    if unreachable:  # real inputs that are never keys: their pairs have zero paths
        return PairStats(stats.fraction, stats.connected, stats.pairs, 0, stats.paths_max)
    return stats


def _single_partition(labels: np.ndarray, keys: np.ndarray, real: np.ndarray, identity: bool) -> PairStats:
    """One partition: pair (i, j) has one path iff same group and j is a key."""
    size = int(labels.max()) + 1
    out_w = np.bincount(labels[real], minlength=size)  # (G,) real outputs per group
    in_w = np.bincount(labels[real & keys], minlength=size)  # (G,) real keys per group
    n = int(real.sum())
    by_path = int((out_w * in_w).sum())  # pairs with their one attention path
    connected = by_path + (int((real & ~keys).sum()) if identity else 0)  # a non-key still reads itself
    return PairStats(connected / (n * n), connected, n * n, int(by_path == n * n), int(by_path > 0))


def _cross_power(height: int, width: int, n_pass: int) -> tuple[int, int, int, int]:
    """(a, b, c, d) with ``S^n = a I + b R + c C + d J`` for ``S = R + C - I`` (exact ints)."""
    a, b, c, d = 1, 0, 0, 0
    for _ in range(n_pass):  # (a I + b R + c C + d J)(-I + R + C)
        a, b, c, d = (
            -a,
            a - b + b * width,
            a - c + c * height,
            -d + b + c + d * width + d * height,
        )
    return a, b, c, d


def _cross_chain(stages: list[Cross], identity: bool) -> PairStats:
    """Closed form over the four pair classes: same position, same row, same column, neither."""
    h, w = stages[0].height, stages[0].width
    a, b, c, d = _cross_power(h, w, len(stages))
    n = h * w
    classes = [  # (paths, number of pairs)
        (a + b + c + d, n),
        (b + d, n * (w - 1)),
        (c + d, n * (h - 1)),
        (d, n * (h - 1) * (w - 1)),
    ]
    used = [p for p, k in classes if k > 0]
    connected = sum(k for p, k in classes if p > 0)
    if identity and classes[0][0] == 0:
        connected += n
    return PairStats(connected / (n * n), connected, n * n, int(min(used)), int(max(used)))


def _neighbours(s: Neighbours, real: np.ndarray, identity: bool) -> PairStats:
    """One explicit-key stage: each real query's distinct real keys (plus itself with ``identity``)."""
    n = int(real.sum())
    keys = np.sort(s.index[real], axis=1)  # (N_real, K)
    keys_real = real[keys]  # (N_real, K)
    distinct = np.concatenate([np.ones((keys.shape[0], 1), bool), keys[:, 1:] != keys[:, :-1]], axis=1)
    per_query = (distinct & keys_real).sum(axis=1)  # (N_real,) distinct real keys
    selves = np.flatnonzero(real)[:, None]  # (N_real, 1)
    has_self = (keys == selves).any(axis=1)  # (N_real,)
    connected = int(per_query.sum()) + (int((~has_self).sum()) if identity else 0)
    return PairStats(connected / (n * n), connected, n * n, 0 if per_query.min() < n else 1, 1)


def dense_chain_stats(stages: list[Stage], real: np.ndarray, identity: bool) -> PairStats:
    """Exact :class:`PairStats` of any chain by the product of its dense (N, N) supports: the general
    method :func:`pair_stats` falls back to (and the reference its faster special cases agree with);
    O(N^3) time and O(N^2) memory, small grids only."""
    prod = support(stages[0])  # (N, N)
    for s in stages[1:]:
        prod = support(s) @ prod  # (N, N)
    sub = prod[np.ix_(real, real)]  # (N_real, N_real)
    n = int(real.sum())
    diag_zero = int((np.diag(sub) == 0).sum())
    return _stats(sub, np.ones_like(sub), diag_zero, identity, n)
