"""Layout rules (which reshapes copy) and a tiny allocation-event simulator.

The peaks of both modes are closed-form peak sets (:mod:`isaprof.formulas.peak`,
:mod:`isaprof.formulas.train_sets`); they use the layout rules here. :class:`Trace` and each block's
``*_peak`` event functions are no longer what ``Cost.peak_bytes`` reports: they are kept as the independent
replay the peak sets are cross-checked against on many shapes (tests/test_formulas_peak_sets.py), and
``isa.mask_bytes`` sums what the replayed key masks hold.

Pure Python (no torch, nothing of isaprof outside ``isaprof.formulas``). A formula replays, as ``alloc`` /
``free`` events, the storages the real module allocates (read off its code and the aten ops it runs),
in order; the peak is the largest running sum. This mirrors ``isaprof.measure.memory.StorageTracker``:
every op output with a fresh storage is one allocation, views and in-place ops allocate nothing, a
storage is freed when its last reference dies (Python locals, autograd's saved tensors, gradient
buffers), and the peak is sampled after each op's outputs exist. All sizes in bytes.

Conventions of the sequences here (torch 2.x CPU, observed with a dispatch-mode logger):

* ``.contiguous()`` / ``reshape`` copy only when the strides do not allow a view (:func:`view_copies`,
  a port of ATen's ``computeStride``); a transposed (B, C, N) -> (B, N, C) view copies unless C or N is 1.
* BatchNorm in train saves ``save_mean`` / ``save_invstd`` (C each, in the accumulation dtype:
  :func:`acc_bytes`); in eval it allocates nothing besides its output. ReLU saves its output.
* The CPU flash kernel returns ``logsumexp`` (maps x N, accumulation dtype) next to its output.
* Autograd sums the gradients reaching one tensor out of place (``add``): a new buffer per sum.
"""

from __future__ import annotations

from collections.abc import Sequence

BOOL_BYTES = 1


def acc_bytes(dtype_bytes: int) -> int:
    """Bytes of the accumulation dtype (ATen ``toOpMathType``): float32 for 16-bit types, else the dtype."""
    return max(4, dtype_bytes)


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


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    """Row-major strides of ``shape`` (in elements)."""
    strides, acc = [], 1
    for size in reversed(shape):
        strides.append(acc)
        acc *= max(size, 1)
    return strides[::-1]


def view_strides(shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]) -> list[int] | None:
    """Strides of ``reshape(new_shape)`` as a view, or ``None`` when it must copy.

    A port of ATen's ``computeStride`` (aten/src/ATen/TensorUtils.cpp): a view exists iff every chunk
    of old dims merged into new dims is itself contiguous.
    """
    numel = 1
    for size in shape:
        numel *= size
    if numel == 0:
        return contiguous_strides(new_shape)
    new_strides = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base_stride = strides[-1] if strides else 1
    tensor_numel, view_numel = 1, 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                new_strides[view_d] = view_numel * chunk_base_stride
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if d > 0:
                chunk_base_stride = strides[d - 1]
                tensor_numel, view_numel = 1, 1
    return new_strides if view_d == -1 else None


def view_copies(shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]) -> bool:
    """Whether ``reshape(new_shape)`` of a tensor with ``shape`` / ``strides`` must copy."""
    return view_strides(shape, strides, new_shape) is None


def permute_reshape_copies(shape: Sequence[int], perm: Sequence[int], new_shape: Sequence[int]) -> bool:
    """Whether ``t.view(shape).permute(perm).reshape(new_shape)`` copies (``t`` contiguous)."""
    strides = contiguous_strides(shape)
    return view_copies([shape[p] for p in perm], [strides[p] for p in perm], new_shape)


def transpose_copies(rows: int, cols: int) -> bool:
    """Whether ``.contiguous()`` of the transpose of a contiguous (rows, cols) matrix copies."""
    return rows > 1 and cols > 1


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


def regroup_strides(shapes: tuple) -> list[int] | None:
    """Strides of the forward regroup of :func:`regroup` when it is a view; ``None`` when it copies."""
    _, shape, perm, new = shapes
    strides = contiguous_strides(shape)
    return view_strides([shape[p] for p in perm], [strides[p] for p in perm], new)


def regroup_back_copies(shapes: tuple) -> bool:
    """Whether the gradient of a :func:`regroup` (contiguous, ``new``-shaped) copies on its way back to
    ``src_shape`` (see ``regroup(..., backward=True)``)."""
    src_shape, shape, perm, _ = shapes
    permuted = contiguous_strides([shape[p] for p in perm])
    strides = [0] * len(shape)
    for i, p in enumerate(perm):
        strides[p] = permuted[i]
    return view_copies(shape, strides, src_shape)


def is_channels_last(sizes: Sequence[int], strides: Sequence[int]) -> bool:
    """Whether a 4-D (N, C, H, W) view is channels-last contiguous (``is_contiguous(channels_last)``;
    size-1 dims ignored) and not plainly contiguous. A conv on such an input writes its output NHWC, so
    ``flatten(2).transpose(1, 2)`` of that output needs no copy."""
    return _dense_in_order(sizes, strides, (1, 3, 2, 0)) and not _dense_in_order(sizes, strides, (3, 2, 1, 0))


def _dense_in_order(sizes: Sequence[int], strides: Sequence[int], order: Sequence[int]) -> bool:
    """Whether the dims, innermost first in ``order``, have packed strides (size-1 dims ignored)."""
    expected = 1
    for d in order:
        if sizes[d] != 1 and strides[d] != expected:
            return False
        expected *= sizes[d]
    return True


def permuted_is_contiguous(shape: Sequence[int], perm: Sequence[int]) -> bool:
    """Whether ``t.view(shape).permute(perm)`` of a contiguous ``t`` is contiguous (size-1 dims ignored),
    i.e. whether ``.contiguous()`` of it returns it without a copy."""
    strides = contiguous_strides(shape)
    new_shape, new_strides = [shape[p] for p in perm], [strides[p] for p in perm]
    want = contiguous_strides(new_shape)
    return all(s == w for size, s, w in zip(new_shape, new_strides, want, strict=True) if size > 1)
