"""Layout rules (which reshapes copy) and the storage conventions the peak sets follow.

The peaks of both modes are closed-form peak sets (:mod:`isaprof.formulas.peak`,
:mod:`isaprof.formulas.train_sets`): named live sets at a few candidate moments. They count storages as
``isaprof.measure.memory.StorageTracker`` does: every op output with a fresh storage is one allocation,
views and in-place ops allocate nothing, a storage is freed when its last reference dies (Python locals,
autograd's saved tensors, gradient buffers), and the peak is sampled after each op's outputs exist. The
allocation-event replay they were derived from lives on in tests/formulas/replays/, the reference they
are cross-checked against on many shapes. Pure Python (no torch, nothing of isaprof outside
``isaprof.formulas``). All sizes in bytes.

Conventions (torch 2.x CPU, observed with a dispatch-mode logger):

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


def regroup_strides(shapes: tuple) -> list[int] | None:
    """Strides of ``src.view(shape).permute(perm).reshape(new)`` (``shapes`` = (src_shape, shape, perm, new),
    ``src`` contiguous) when it is a view; ``None`` when it copies."""
    _, shape, perm, new = shapes
    strides = contiguous_strides(shape)
    return view_strides([shape[p] for p in perm], [strides[p] for p in perm], new)


def regroup_back_copies(shapes: tuple) -> bool:
    """Whether the gradient of a regrouping ``src.view(shape).permute(perm).reshape(new)`` (``shapes`` =
    (src_shape, shape, perm, new)), contiguous and ``new``-shaped, copies on its way back to ``src_shape``."""
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
