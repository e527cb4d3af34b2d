"""The allocation-event simulator shared by every block's replay (`Trace`), autograd's out-of-place
gradient sums and the regroup (view / permute / reshape) rule. Sizes in bytes."""

from __future__ import annotations

from collections.abc import Sequence

from isaprof.formulas import memory as fm
from isaprof.formulas.memory import contiguous_strides, view_copies


class Trace:
    """Allocation-event simulator: ``alloc(name, nbytes)`` / ``free(*names)``; ``peak`` in bytes.

    ``peak_at`` names the allocation at which the peak was first reached and ``live_at_peak`` what was
    live then (name -> bytes).
    """

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.refs: dict[str, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_at = ""
        self.live_at_peak: dict[str, int] = {}

    def alloc(self, name: str, nbytes: int) -> str:
        """Allocate ``nbytes`` under ``name`` (a fresh name); returns the name."""
        if name in self.live:
            raise ValueError(f"allocation {name!r} is already live")
        self.live[name], self.refs[name] = nbytes, 1
        self.current += nbytes
        if self.current > self.peak:
            self.peak, self.peak_at, self.live_at_peak = self.current, name, dict(self.live)
        return name

    def free(self, *names: str | None) -> None:
        """Drop one holder of each named allocation, freeing it when none is left (``None`` entries are
        ignored: "nothing was allocated", e.g. a view of untracked storage)."""
        for name in names:
            if name is None:
                continue
            self.refs[name] -= 1
            if self.refs[name] == 0:
                del self.refs[name]
                self.current -= self.live.pop(name)

    def share(self, name: str | None) -> str | None:
        """One more holder of ``name`` (a view kept by someone else); returns ``name``."""
        if name is not None:
            self.refs[name] += 1
        return name

    def maybe(self, name: str, nbytes: int, copies: bool) -> str | None:
        """``alloc`` if ``copies`` (an op that may return a view), else ``None``."""
        return self.alloc(name, nbytes) if copies else None


def grad_sum(t: Trace, name: str, parts: Sequence[str], nbytes: int) -> str:
    """Autograd summing the gradients ``parts`` (in arrival order) of one tensor, out of place:
    each arrival after the first allocates the sum and frees both operands. Returns the final name."""
    acc = parts[0]
    for part in parts[1:]:
        new = t.alloc(f"{name}_sum_{part}", nbytes)
        t.free(acc, part)
        acc = new
    return acc


def accumulate(t: Trace, acc: dict[str, str], parts: Sequence[tuple[str, str, int]]) -> None:
    """Autograd's gradient buffers after one backward node: each new gradient ``(key, name, nbytes)`` becomes
    the buffer ``acc[key]`` or is added to it out of place (the old buffer dies at once unless it is the
    caller-held ``"seed"``; the new parts that were summed die after the node's last sum)."""
    summed = []
    for key, name, nbytes in parts:
        if key not in acc:
            acc[key] = name
            continue
        new = t.alloc(name + "_sum", nbytes)
        t.free(None if acc[key] == "seed" else acc[key])
        acc[key] = new
        summed.append(name)
    t.free(*summed)


def regroup(
    t: Trace, name: str, src: str | None, nbytes: int, shapes: tuple, backward: bool = False
) -> str | None:
    """``src.view(shape).permute(perm).reshape(new)`` (``shapes`` = (src_shape, shape, perm, new)): a new
    allocation ``name`` if it copies, else one more holder of ``src``. ``backward``: the gradient's way
    back, a contiguous ``new``-shaped gradient viewed, permuted back and reshaped to ``src_shape``."""
    src_shape, shape, perm, new = shapes
    if not backward:
        strides = contiguous_strides(shape)
        copies = view_copies([shape[p] for p in perm], [strides[p] for p in perm], new)
    else:
        permuted = contiguous_strides([shape[p] for p in perm])
        strides = [0] * len(shape)
        for i, p in enumerate(perm):
            strides[p] = permuted[i]
        copies = view_copies(shape, strides, src_shape)
    return t.alloc(name, nbytes) if copies else t.share(src)


def regrouped_channels_last(shapes: tuple) -> bool:
    """Whether the input regrouped by ``shapes`` (as in `regroup`) is a channels-last view of its source (a
    stage whose projections then write NHWC: their (maps, N, C) views are contiguous)."""
    strides = fm.regroup_strides(shapes)
    return strides is not None and fm.is_channels_last(shapes[3], strides)
