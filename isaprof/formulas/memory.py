"""Peak bytes in closed form: a tiny allocation-event simulator and the event sequences shared by blocks.

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
    live then (name -> bytes): the closed form of the peak is the sum of those terms.
    """

    def __init__(self) -> None:
        self.live: dict[str, int] = {}
        self.current = 0
        self.peak = 0
        self.peak_at = ""
        self.live_at_peak: dict[str, int] = {}

    def alloc(self, name: str, nbytes: int) -> str:
        """Allocate ``nbytes`` under ``name`` (a fresh name); returns the name."""
        if name in self.live:
            raise ValueError(f"allocation {name!r} is already live")
        self.live[name] = nbytes
        self.current += nbytes
        if self.current > self.peak:
            self.peak, self.peak_at, self.live_at_peak = self.current, name, dict(self.live)
        return name

    def free(self, *names: str | None) -> None:
        """Free the named allocations (``None`` entries are ignored: "nothing was allocated")."""
        for name in names:
            if name is not None:
                self.current -= self.live.pop(name)

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


def view_copies(shape: Sequence[int], strides: Sequence[int], new_shape: Sequence[int]) -> bool:
    """Whether ``reshape(new_shape)`` of a tensor with ``shape`` / ``strides`` must copy.

    A port of ATen's ``computeStride`` (aten/src/ATen/TensorUtils.cpp): a view exists iff every chunk
    of old dims merged into new dims is itself contiguous. Empty tensors never copy.
    """
    numel = 1
    for s in shape:
        numel *= s
    if numel == 0 or list(shape) == list(new_shape):
        return False
    view_d = len(new_shape) - 1
    chunk_base_stride = strides[-1] if strides else 1
    tensor_numel, view_numel = 1, 1
    for d in range(len(shape) - 1, -1, -1):
        tensor_numel *= shape[d]
        if d == 0 or (shape[d - 1] != 1 and strides[d - 1] != tensor_numel * chunk_base_stride):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return True
            if d > 0:
                chunk_base_stride = strides[d - 1]
                tensor_numel, view_numel = 1, 1
    return view_d != -1


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
    for i, part in enumerate(parts[1:], 1):
        new = t.alloc(f"{name}_sum{i}", nbytes)
        t.free(acc, part)
        acc = new
    return acc
