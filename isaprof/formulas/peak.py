"""Peak bytes as a *peak set*: the tensors live at the peak moment, named, in closed form.

Pure Python. A block's peak formula lists a few candidate :class:`Moment` s of its run, each the set of
tensors live then (name -> bytes, read off the code: what is allocated and not yet dead). Every other
moment of the run holds a subset of one of them, so the peak is the largest (:func:`peak_set`); the
formula's docstring says, per block and mode, which moment that is and why. Inference moments are listed
in each block's module; the train moments (everything autograd saves stays live into the backward) are
built from the shared pieces of :mod:`isaprof.formulas.train_sets`.

Where a moment holds tensors whose death the code is free to move without changing what is computed
(Python locals that could be ``del``-ed earlier), the formula marks them ``movable``: the peak is exact for
the code as it is, and a :class:`~isaprof.formulas.base.Tolerance` of those bytes covers an implementation
that frees them sooner (:func:`tolerance`). Sizes in bytes; the layout rules (which reshape copies) are in
:mod:`isaprof.formulas.memory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from isaprof.formulas.base import Tolerance

LOCALS = "stage locals"
LOCALS_REASON = (
    "the attention's inputs (value, query, key; non-local's theta, phi, g) are Python locals: the code may "
    "drop them right after the attention without changing any output, lowering a later peak by their bytes"
)


@dataclass(frozen=True)
class Moment:
    """One moment of a run: ``live`` (name -> bytes) is everything allocated during the call and alive then;
    ``movable`` names the entries of ``live`` an implementation may free before this moment."""

    name: str
    live: Mapping[str, int]
    movable: tuple[str, ...] = field(default_factory=tuple)

    @property
    def bytes(self) -> int:
        return sum(self.live.values())

    @property
    def movable_bytes(self) -> int:
        return sum(self.live[k] for k in self.movable if k in self.live)

    def plus(self, held: Mapping[str, int], movable: Iterable[str] = ()) -> Moment:
        """This moment with ``held`` (e.g. what the caller keeps alive around a stage) also live."""
        return Moment(self.name, {**held, **self.live}, (*self.movable, *movable))


def moment(name: str, movable: Iterable[str] = (), **live: int) -> Moment:
    """``Moment(name, live)``; keyword names use ``_`` for spaces (``scaled_logits=...``). Zero-byte
    entries (a view where a copy might have been) are dropped."""
    return Moment(name, {k.replace("_", " "): v for k, v in live.items() if v}, tuple(movable))


def peak_set(moments: Iterable[Moment]) -> Moment:
    """The largest moment (the first one on ties): the peak set."""
    best: Moment | None = None
    for m in moments:
        if best is None or m.bytes > best.bytes:
            best = m
    if best is None:
        raise ValueError("peak_set of no moments")
    return best


def tolerance(peak: Moment) -> Tolerance | None:
    """The named :data:`LOCALS` tolerance of a peak set holding movable locals, else ``None`` (exact)."""
    extra = peak.movable_bytes
    return Tolerance(extra, LOCALS, LOCALS_REASON) if extra else None


def tolerances(**by_mode: Tolerance | None) -> dict[str, Tolerance]:
    """``Cost.peak_tolerance`` from per-mode tolerances, the ``None`` ones (exact) left out."""
    return {mode: tol for mode, tol in by_mode.items() if tol is not None}
