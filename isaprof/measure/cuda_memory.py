"""Predict ``torch.cuda.max_memory_allocated()`` from the meta path: the storage tracker replayed through a
model of PyTorch's CUDA caching allocator.

The allocator's ``allocated_bytes`` statistic (what ``max_memory_allocated`` reports) counts the size of the
*blocks* it hands out, not the bytes requested. Rules modelled, each from PyTorch's sources (read, not
copied; file names relative to the PyTorch repository):

1. Rounding (c10/cuda/CUDACachingAllocator.cpp, ``round_size``, ``kMinBlockSize = 512``): every request is
   rounded up to a multiple of 512 bytes, at least 512; a 0-byte tensor allocates nothing. (The optional
   ``roundup_power2_divisions`` setting of ``PYTORCH_CUDA_ALLOC_CONF`` changes this; default off.)
2. Pools and segments (same file, ``get_pool``, ``get_allocation_size``): requests <= 1 MiB (``kSmallSize``)
   come from the small pool, carved from 2 MiB segments (``kSmallBuffer``); larger ones from the large pool,
   in 20 MiB segments (``kLargeBuffer``) for requests under 10 MiB (``kMinLargeAlloc``), else in a segment of
   the request rounded up to 2 MiB (``kRoundLarge``).
3. Best fit and splitting (same file, ``get_free_block``, ``should_split``): the smallest free block of the
   pool that fits is taken (ties: lowest address); it is split when the remainder is >= 512 B (small pool) or
   > 1 MiB (large pool). An unsplit block is counted *whole*: e.g. a fresh 11 MiB request gets a 12 MiB
   segment whose 1 MiB remainder is not split off, so the statistic grows by 12 MiB, not 11.
4. Freed blocks merge with free neighbours of the same segment (``free_block`` / ``try_merge_blocks``).
5. cuBLAS workspace (aten/src/ATen/cuda/CublasHandlePool.cpp, ``getChosenWorkspaceSize`` /
   ``getNewWorkspace``): on the first cuBLAS call of a (handle, stream) pair, a workspace of
   ``CUBLAS_WORKSPACE_CONFIG`` bytes is taken from the caching allocator and kept for the life of the process:
   by default 4096 KiB x 8 = 32 MiB on sm90 (Hopper), 4096 KiB x 2 + 16 KiB x 8 elsewhere. The cuBLASLt
   workspace is the same one unless ``TORCH_CUBLASLT_UNIFIED_WORKSPACE=0`` (torch >= 2.5). It shows in a
   measured delta only if the call is the process's first GEMM on that stream: pass ``cublas_workspace``.

Where the prediction cannot be exact (each NB is a known gap, not a tolerance):
* NB: a process that ran other work before has cached free blocks; which one a request reuses (and so
  whether it is split, rule 3) depends on that history. The model starts from an empty cache holding only
  the ``resident`` tensors (parameters, buffers, input) allocated in ``Module.to``'s order.
6. Scratch of fused ops (:mod:`isaprof.measure.scratch`): the bytes a rule gives beyond an op's outputs are
   one request through the allocator while the op runs, freed when it returns.

* NB: the meta path runs the CPU kernels. Scratch rules of CPU-only kernels (``..._for_cpu``: per-thread
  buffers) do not apply on CUDA and are listed in ``unmodelled`` instead; the CUDA SDPA kernels' scratch
  (flash's split-KV accumulators and backward ``dq`` accumulator) has rules for CUDA tensors, which this
  CPU replay does not see; cuDNN convolution workspaces (algorithm-dependent) are listed, not modelled (the
  CPU convolution rule, the native kernels' unfolding, does not apply on CUDA).
  ``_native_multi_head_attention`` is replayed with its CPU path (the (B h, N, N) scores), an upper bound
  where the CUDA kernel takes its sdpa branch.
* NB: ``expandable_segments`` and ``max_split_size_mb`` (non-default allocator settings) are not modelled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from isaprof.measure.memory import MemoryPeak, StorageTracker, round_up
from isaprof.measure.scratch import allocates_internally, op_name

K_MIN_BLOCK = 512  # kMinBlockSize
K_SMALL_SIZE = 1 << 20  # kSmallSize: largest small-pool request
K_SMALL_BUFFER = 2 << 20  # kSmallBuffer: small-pool segment
K_LARGE_BUFFER = 20 << 20  # kLargeBuffer: segment for 1..10 MiB requests
K_MIN_LARGE_ALLOC = 10 << 20  # kMinLargeAlloc
K_ROUND_LARGE = 2 << 20  # kRoundLarge
CUBLAS_WORKSPACE_SM90 = 4096 * 1024 * 8  # :4096:8
CUBLAS_WORKSPACE_DEFAULT = 4096 * 1024 * 2 + 16 * 1024 * 8  # :4096:2:16:8
# aten ops that call cuBLAS (and so create its workspace on first use)
CUBLAS_OPS = frozenset(
    f"aten.{n}"
    for n in ("mm", "bmm", "addmm", "baddbmm", "addbmm", "addmv", "mv", "dot", "_addmm_activation")
)


def round_size(nbytes: int) -> int:
    """The allocator's block size for a request of ``nbytes`` (rule 1): a multiple of 512, at least 512."""
    return max(K_MIN_BLOCK, round_up(nbytes, K_MIN_BLOCK))


def segment_size(size: int) -> int:
    """Bytes of the segment ``cudaMalloc``-ed for a rounded request ``size`` no cached block fits (rule 2)."""
    if size <= K_SMALL_SIZE:
        return K_SMALL_BUFFER
    if size < K_MIN_LARGE_ALLOC:
        return K_LARGE_BUFFER
    return round_up(size, K_ROUND_LARGE)


def cublas_workspace_bytes(capability: tuple[int, int] | None) -> int:
    """Default cuBLAS workspace (rule 5) for a device of compute ``capability`` (e.g. (9, 0))."""
    return CUBLAS_WORKSPACE_SM90 if capability == (9, 0) else CUBLAS_WORKSPACE_DEFAULT


@dataclass
class _Block:
    segment: int
    offset: int
    size: int
    small: bool
    allocated: bool = False


class CachingAllocatorSim:
    """A replay of the caching allocator's block bookkeeping (rules 1-4), one device, one stream.

    ``malloc(nbytes) -> (handle, counted bytes)``; ``free(handle)``. ``allocated`` is the statistic
    ``memory_allocated`` reports; ``peak`` its maximum (``max_memory_allocated``).
    """

    def __init__(self) -> None:
        self.blocks: list[_Block] = []  # every block, in (segment, offset) order within each segment
        self.segments = 0
        self.allocated = 0
        self.peak = 0

    def malloc(self, nbytes: int) -> tuple[_Block | None, int]:
        if nbytes == 0:
            return None, 0
        size = round_size(nbytes)
        small = size <= K_SMALL_SIZE
        fits = [b for b in self.blocks if not b.allocated and b.small == small and b.size >= size]
        if fits:
            block = min(fits, key=lambda b: (b.size, b.segment, b.offset))
        else:
            block = _Block(self.segments, 0, segment_size(size), small)
            self.segments += 1
            self.blocks.append(block)
        remaining = block.size - size
        if remaining >= K_MIN_BLOCK if small else remaining > K_SMALL_SIZE:
            rest = _Block(block.segment, block.offset + size, remaining, small)
            self.blocks.insert(self.blocks.index(block) + 1, rest)
            block.size = size
        block.allocated = True
        self.allocated += block.size
        self.peak = max(self.peak, self.allocated)
        return block, block.size

    def free(self, block: _Block | None) -> None:
        if block is None:
            return
        block.allocated = False
        self.allocated -= block.size
        i = self.blocks.index(block)
        after = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
        if after is not None and after.segment == block.segment and not after.allocated:
            block.size += after.size
            del self.blocks[i + 1]
        before = self.blocks[i - 1] if i > 0 else None
        if before is not None and before.segment == block.segment and not before.allocated:
            before.size += block.size
            del self.blocks[i]


def module_to_order(module: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers in the order ``module.to(device)`` allocates them (``Module._apply``:
    children first, then the module's own parameters, then its buffers)."""
    out: list[torch.Tensor] = []
    for child in module.children():
        out += module_to_order(child)
    out += [p for p in module._parameters.values() if p is not None]
    out += [b for b in module._buffers.values() if b is not None]
    return out


class CudaAllocatorModel(StorageTracker):
    """A :class:`StorageTracker` whose allocations go through :class:`CachingAllocatorSim`.

    ``resident``: tensors allocated before the call, in allocation order (see :func:`module_to_order`; they
    shape the cache, they are not counted); ``cublas_workspace``: bytes of the cuBLAS workspace created at the
    call's first GEMM (0: the process already has one). ``result().peak`` predicts
    ``max_memory_allocated() - memory_allocated()`` around the call.
    """

    def __init__(self, resident: Iterable[torch.Tensor] = (), cublas_workspace: int = 0) -> None:
        super().__init__(round_to=K_MIN_BLOCK)
        self.sim = CachingAllocatorSim()
        for t in resident:
            self.sim.malloc(t.untyped_storage().nbytes())
        self._base = self.sim.allocated
        self._blocks: dict[int, _Block | None] = {}
        self._workspace = cublas_workspace

    def _allocate(self, key: int, nbytes: int) -> int:
        block, size = self.sim.malloc(nbytes)
        self._blocks[key] = block
        return size

    def _free(self, key: int) -> None:
        super()._free(key)
        self.sim.free(self._blocks.pop(key, None))

    def _after_op(self, func: Any) -> None:
        if self._workspace and str(func._overloadpacket) in CUBLAS_OPS:
            _, size = self.sim.malloc(self._workspace)  # kept for the life of the process
            self.current += size
            self.allocated += size
            self.allocations += 1
            self._workspace = 0

    def _scratch_of(self, func: Any, args: tuple, kwargs: dict, out: Any, new: Any) -> Any:
        name = op_name(func)
        if name.endswith(("_for_cpu", "_for_cpu_backward")) and allocates_internally(name, args):
            self.unmodelled[name] += 1  # per-thread CPU buffers: no CUDA counterpart modelled
            return None
        if name in ("aten.convolution", "aten.convolution_backward") and allocates_internally(name, args):
            self.unmodelled[name] += 1  # cuDNN's workspace, not the CPU kernels' unfolding
            return None
        return super()._scratch_of(func, args, kwargs, out, new)

    def _hold(self, nbytes: Any) -> Any:
        block, size = self.sim.malloc(nbytes)  # one request while the op runs (rule 6)
        self.current += size
        self._scratch_now = size
        return block, size

    def _release(self, token: Any) -> None:
        block, size = token
        self.sim.free(block)
        self.current -= size
        self._scratch_now = 0

    def result(self) -> MemoryPeak:
        """The prediction so far (bytes above what was resident before the call)."""
        peak = self.sim.peak - self._base
        return MemoryPeak(
            peak, self.sim.allocated - self._base, self.allocated, self.allocations, K_MIN_BLOCK,
            self.tensor_peak, self.scratch, dict(sorted(self.scratch_ops.items())),
            dict(sorted(self.unmodelled.items())),
        )  # fmt: skip
