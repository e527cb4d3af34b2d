"""Structural connectivity: which input positions reach which output positions, from each block's grouping.

One handler per block name builds a :class:`Structure` (the working grid, the stages in the order the block
applies them, whether the block adds its input back). :func:`analyse` composes the stages exactly (see
:mod:`isaprof.flow.stages`) and reports, per stage prefix and per stage alone, the fraction of
(output, input) pairs of real positions that are connected, and the min / max number of attention paths per
pair. No module is built: a 256x256 map is instant for every block except ``sparse_nonlocal`` (O(N K)).

A block without a handler gets ``None`` from :func:`structure`: the caller reports "no structural model"
rather than passing it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from isaprof.flow.stages import Cross, Neighbours, PairStats, Partition, Stage, pair_stats, pull


@dataclass(frozen=True, eq=False)
class Structure:
    """A block's information-flow model on a ``size = (H, W)`` map.

    ``grid = (Hp, Wp)`` is the working grid (padded for ISA) and ``offset = (top, left)`` where the real map
    sits in it. ``residual``: the block adds its input (or an identity branch) to the attention output, so
    every output position also reads its own input position.
    """

    block: str
    size: tuple[int, int]
    grid: tuple[int, int]
    offset: tuple[int, int]
    stages: tuple[Stage, ...]
    residual: bool
    notes: tuple[str, ...] = ()

    @property
    def real(self) -> np.ndarray:
        """(Hp * Wp,) bool: True at grid positions of the real (unpadded) map."""
        (h, w), (hp, wp), (top, left) = self.size, self.grid, self.offset
        m = np.zeros((hp, wp), dtype=bool)
        m[top : top + h, left : left + w] = True
        return m.reshape(-1)


@dataclass(frozen=True)
class StructuralResult:
    """Exact connectivity of one block configuration (fractions over N^2 pairs of real positions).

    ``cumulative[k]``: after stages 1..k+1; ``alone[k]``: stage k+1 by itself (both include the identity
    pair when ``residual``). ``stages_needed``: smallest k with every pair connected, ``None`` if never.
    """

    block: str
    size: tuple[int, int]
    stage_names: tuple[str, ...]
    cumulative: tuple[PairStats, ...]
    alone: tuple[PairStats, ...]
    stages_needed: int | None
    residual: bool
    notes: tuple[str, ...]

    @property
    def fraction(self) -> float:
        """Fraction of pairs connected by the whole block."""
        return self.cumulative[-1].fraction

    @property
    def fully_connected(self) -> bool:
        return self.cumulative[-1].connected == self.cumulative[-1].pairs


Handler = Callable[[int, int, dict[str, Any]], Structure]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    """Register the structural model of block ``name``."""

    def deco(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return deco


def structure(name: str, size: tuple[int, int], **options: Any) -> Structure | None:
    """The :class:`Structure` of block ``name`` at ``size``; ``None`` when there is no structural model."""
    from isaprof.targets import spec

    h, w = _check_size(size)
    allowed = spec(name).options  # ValueError naming the known blocks if unknown
    unknown = [] if spec(name).open_options else sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; allowed: {listed}")
    fn = HANDLERS.get(name)
    return None if fn is None else fn(h, w, {**allowed, **options})


def analyse(s: Structure) -> StructuralResult:
    """Compose the stages of ``s`` exactly; see :class:`StructuralResult`."""
    real = s.real
    stages = list(s.stages)
    cumulative = tuple(pair_stats(stages[: k + 1], real, s.residual) for k in range(len(stages)))
    alone = tuple(pair_stats([st], real, s.residual) for st in stages)
    needed = next((k + 1 for k, st in enumerate(cumulative) if st.connected == st.pairs), None)
    names = tuple(st.name for st in stages)
    return StructuralResult(s.block, s.size, names, cumulative, alone, needed, s.residual, s.notes)


def reach(s: Structure, query: tuple[int, int], upto: int | None = None) -> np.ndarray:
    """(H, W) int64: number of attention paths from each input position to output ``query`` (real coords)
    through the first ``upto`` stages (all by default); +1 on the query itself when the block is residual
    and the whole block is taken."""
    (h, w), (hp, wp), (top, left) = s.size, s.grid, s.offset
    qh, qw = query
    if not (0 <= qh < h and 0 <= qw < w):
        raise ValueError(f"query must lie in the {h}x{w} map (0 <= h < {h}, 0 <= w < {w}), got {query}")
    n = len(s.stages) if upto is None else upto
    counts = pull(list(s.stages[:n]), (qh + top) * wp + qw + left).reshape(hp, wp)  # (Hp, Wp)
    counts = counts[top : top + h, left : left + w].copy()  # (H, W)
    if s.residual and n == len(s.stages):
        counts[qh, qw] += 1
    return counts


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    ok = isinstance(size, tuple | list) and len(size) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size):
        raise ValueError(f"size must be two positive integers (H, W), got {size!r}")
    return int(size[0]), int(size[1])


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index of every position of an h x w grid, row-major: (N,), (N,)."""
    return np.divmod(np.arange(h * w), w)


def _one_group(name: str, h: int, w: int) -> Partition:
    return Partition(name, np.zeros(h * w, dtype=np.int64))


@handler("dense")
def _dense(h: int, w: int, options: dict[str, Any]) -> Structure:
    return Structure("dense", (h, w), (h, w), (0, 0), (_one_group("dense", h, w),), residual=False)


@handler("non_local")
def _non_local(h: int, w: int, options: dict[str, Any]) -> Structure:
    if not options.get("sub_sample", False):
        stage = _one_group("dense", h, w)
        return Structure("non_local", (h, w), (h, w), (0, 0), (stage,), residual=True)
    rows, cols = _grid(h, w)
    keys = (rows < h // 2 * 2) & (cols < w // 2 * 2)  # (N,) inside the 2x2 max-pooled region
    note = "sub_sample: keys are 2x2 max-pooled; an odd last row/column is dropped by the pooling"
    stage = Partition("dense (pooled keys)", np.zeros(h * w, dtype=np.int64), keys)
    return Structure("non_local", (h, w), (h, w), (0, 0), (stage,), residual=True, notes=(note,))


@handler("linear")
def _linear(h: int, w: int, options: dict[str, Any]) -> Structure:
    note = "linear attention: every key in one kernelised stage (no softmax), x + gamma * attention"
    stage = _one_group("global", h, w)
    return Structure("linear", (h, w), (h, w), (0, 0), (stage,), residual=True, notes=(note,))


@handler("axial")
def _axial(h: int, w: int, options: dict[str, Any]) -> Structure:
    rows, cols = _grid(h, w)
    stages = (Partition("row", rows), Partition("column", cols))
    return Structure("axial", (h, w), (h, w), (0, 0), stages, residual=False)


@handler("channelized_axial")
def _channelized_axial(h: int, w: int, options: dict[str, Any]) -> Structure:
    everything = np.zeros(h * w, dtype=np.int64)
    stages = (Partition("column + gate", everything), Partition("row + gate", everything))
    notes = (
        "the channel gate of query row i is a mean over the whole weighted map (every row and column), so "
        "each stage alone already reaches every position through a C-wide gate; the attention itself "
        "reaches the query's column (stage 1) then row (stage 2)",
    )
    return Structure("channelized_axial", (h, w), (h, w), (0, 0), stages, residual=False, notes=notes)


@handler("criss_cross")
def _criss_cross(h: int, w: int, options: dict[str, Any]) -> Structure:
    r = options.get("recurrence", 2)
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"recurrence must be an integer >= 1, got {r!r}")
    stages = tuple(Cross(f"pass {k + 1}", h, w) for k in range(r))
    note = "each pass: row + column of the query (H + W - 1 keys), out = gamma * attention + x"
    return Structure("criss_cross", (h, w), (h, w), (0, 0), stages, residual=True, notes=(note,))


@handler("sparse_nonlocal")
def _sparse_nonlocal(h: int, w: int, options: dict[str, Any]) -> Structure:
    from isaprof.targets import (
        build,
    )  # the sampling rule lives with the block (a 2-channel shell, no forward)

    keys = np.asarray(
        build("sparse_nonlocal", channels=2, **options).positions(h * w), dtype=np.int64
    )  # (K,)
    stage = Neighbours(f"{keys.size} sampled keys", np.broadcast_to(keys, (h * w, keys.size)))  # (N, K)
    note = "every query reads the same sampled positions; any other position only through the residual"
    return Structure("sparse_nonlocal", (h, w), (h, w), (0, 0), (stage,), residual=True, notes=(note,))


def isa_layout(h: int, w: int, factor: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padded grid ``(Hp, Wp)`` (multiples of the factor) and offset ``(top, left)`` = ``(pad // 2)``."""
    ph, pw = _check_factor(factor)
    hp, wp = -(-h // ph) * ph, -(-w // pw) * pw
    return (hp, wp), ((hp - h) // 2, (wp - w) // 2)


@handler("isa")
def _isa(h: int, w: int, options: dict[str, Any]) -> Structure:
    ph, pw = _check_factor(options.get("factor", (8, 8)))
    masked = bool(options.get("masked", False))
    (hp, wp), offset = isa_layout(h, w, (ph, pw))
    rows, cols = _grid(hp, wp)
    qw = wp // pw
    long_labels = (rows % ph) * pw + cols % pw  # (Np,) group (h % P_h, w % P_w), Q_h x Q_w members
    short_labels = (rows // ph) * qw + cols // pw  # (Np,) window (h // P_h, w // P_w), P_h x P_w members
    s = Structure("isa", (h, w), (hp, wp), offset, (), residual=False)
    keys = s.real if masked else None
    stages = (Partition("long-range", long_labels, keys), Partition("short-range", short_labels, keys))
    notes = []
    if (hp, wp) != (h, w):
        if masked:
            st = pair_stats(list(stages), s.real, False)
            lost = st.pairs - st.connected
            notes.append(
                f"padded positions are masked keys: a path through a padded intermediate is cut; "
                f"{lost} of {st.pairs} pairs ({lost / st.pairs:.1%}) lose their only path"
            )
        else:
            notes.append(
                "padded positions take part as keys: after the long-range stage a padded position "
                "holds a mix of real values, so a path through it still carries information"
            )
    return Structure("isa", (h, w), (hp, wp), offset, stages, residual=False, notes=tuple(notes))


def _check_factor(factor: Any) -> tuple[int, int]:
    from isaprof.targets.blocks.isa import check_factor

    return check_factor(factor)


def support_matrix(s: Structure, stages: list[int]) -> np.ndarray:
    """(N_real, N_real) bool: output reads input through ``stages`` (indices into ``s.stages``, applied in
    that order), plus the identity pair when the block is residual. Dense: small maps only."""
    from isaprof.flow.stages import support

    real = s.real
    prod = support(s.stages[stages[0]])  # (Np, Np)
    for k in stages[1:]:
        prod = support(s.stages[k]) @ prod  # (Np, Np)
    out = prod[np.ix_(real, real)] > 0  # (N, N)
    if s.residual:
        out |= np.eye(out.shape[0], dtype=bool)
    return out
