"""Peak memory of a callable: a storage-lifetime tracker (real CPU and fake tensors) and the CUDA allocator.

Convention (docs/ARCHITECTURE.md): peak bytes = max over the call of the bytes of live tensor storage
*allocated during the call*. Storage alive before the call (parameters, buffers, the input) is not
counted; the output, autograd's saved tensors and gradients allocated during the call are.

Why our own ``TorchDispatchMode`` rather than ``torch.distributed._tools.mem_tracker.MemTracker``:
MemTracker is built around modules and optimizer states (per-module, per-category snapshots, FSDP
hooks), its accounting of pre-existing storage differs between releases, and it was not designed
for fake tensors from ``to_empty``. The question here is one number, and a 100-line mode that
sees every aten op answers it predictably, identically for real CPU and fake tensors:

* an op output whose storage is not among the op's inputs' storages and not already tracked is a
  new allocation (views and in-place ops share a storage: counted once / not at all);
* a storage is freed when its last reference dies: a ``weakref.finalize`` on the storage's Python
  object (torch preserves one Python object per storage, real or fake) subtracts its bytes at that
  moment, so frees between ops are seen at O(1) cost (scanning every live storage before each op
  made a 10k-op block take minutes);
* the peak is sampled after each op's outputs exist.

Scratch of fused ops: memory a kernel allocates and frees inside one op (the (B h, N, N) scores of
``nn.MultiheadAttention``'s fast path, the CPU flash kernel's per-thread buffers) is invisible at the
dispatch level; :mod:`isaprof.measure.scratch` models it per op. At an op with a rule the tracker holds
``held - outputs`` bytes of scratch while the op runs and samples the peak with it, then frees it:
``peak`` includes it, ``tensor_peak`` is the tensors alone, ``scratch`` what was held at the peak. An op
known to allocate internally without a rule (or whose rule cannot tell) is listed in ``unmodelled``, never
silently zero. NB: buffers not taken from PyTorch's allocator (BLAS packing) are not counted.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from isaprof.measure.scratch import allocates_internally, held_bytes, op_name


def round_up(nbytes: int, multiple: int) -> int:
    """``nbytes`` rounded up to a multiple of ``multiple`` (0 stays 0: empty tensors allocate nothing)."""
    return -(-nbytes // multiple) * multiple


@dataclass(frozen=True)
class MemoryPeak:
    """Result of :func:`track_peak`. All values in bytes, above what was live before the call.

    ``peak``: max live allocated bytes; ``end``: live at the end (e.g. output, gradients);
    ``allocated``: sum of all allocations (total traffic); ``allocations``: their number.
    ``round_to``: allocation rounding used (1 = exact storage bytes, 512 = CUDA caching allocator).
    ``peak`` includes the modelled scratch of fused ops (:mod:`isaprof.measure.scratch`): ``scratch`` is
    the scratch held at the peak, ``tensor_peak`` the peak of tensor storage alone; ``scratch_ops``: ops
    whose scratch was modelled, ``unmodelled``: ops known to allocate internally without a rule
    (``"aten.op"`` -> calls).
    """

    peak: int
    end: int
    allocated: int
    allocations: int
    round_to: int
    tensor_peak: int = 0
    scratch: int = 0
    scratch_ops: Mapping[str, int] = field(default_factory=dict)
    unmodelled: Mapping[str, int] = field(default_factory=dict)


class StorageTracker(TorchDispatchMode):
    """Dispatch mode that tracks the live bytes of storages allocated while it is active.

    Enter it *inside* a ``FakeTensorMode`` to track fake tensors. ``round_to`` rounds every
    allocation up to a multiple (512 predicts the CUDA caching allocator). ``owner``, if given, names
    who allocates (called at each new allocation, e.g. the running module): ``peak_by_owner`` is then
    the live bytes per owner at the (first) peak, summing to ``peak``.
    """

    def __init__(self, round_to: int = 1, owner: Callable[[], str] | None = None) -> None:
        super().__init__()
        if round_to < 1:
            raise ValueError(f"round_to must be a positive number of bytes, got {round_to}")
        self.round_to = round_to
        self._live: dict[int, int] = {}  # storage cdata -> bytes, removed by the storage's finalizer
        self.current = 0
        self.peak = 0
        self.allocated = 0
        self.allocations = 0
        self.owner = owner
        self._owner_of: dict[int, str] = {}  # storage cdata -> owner (only with ``owner``)
        self.live_by_owner: dict[str, int] = {}
        self.peak_by_owner: dict[str, int] = {}
        self.tensor_peak = 0
        self.scratch = 0  # scratch held at the peak
        self._scratch_now = 0  # scratch held by the running op (while it is sampled)
        self.scratch_ops: Counter[str] = Counter()
        self.unmodelled: Counter[str] = Counter()

    def _size(self, storage: torch.UntypedStorage) -> int:
        return round_up(storage.nbytes(), self.round_to)

    def _free(self, key: int) -> None:
        size = self._live.pop(key, 0)
        self.current -= size
        if self.owner is not None and key in self._owner_of:
            self._charge(self._owner_of.pop(key), -size)

    def _charge(self, who: str, nbytes: int) -> None:
        self.live_by_owner[who] = self.live_by_owner.get(who, 0) + nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        before = {s._cdata for s in _storages((args, kwargs))}
        out = func(*args, **kwargs)
        new = 0  # bytes of the op's fresh storages (its outputs), as requested
        for s in _storages((out, args, kwargs)):
            key = s._cdata
            if key in self._live:  # resized in place (out= variants, resize_): update its size
                old, size = self._live[key], self._size(s)
                if size != old:
                    self._live[key] = size
                    self.current += size - old
                    self.allocated += max(size - old, 0)
                    if self.owner is not None:
                        self._charge(self._owner_of[key], size - old)
            elif key not in before:  # a fresh storage: a new allocation
                size = self._allocate(key, s.nbytes())
                new += s.nbytes()
                self._live[key] = size
                weakref.finalize(s, self._free, key)
                self.current += size
                self.allocated += size
                self.allocations += 1
                if self.owner is not None:
                    self._owner_of[key] = who = self.owner()
                    self._charge(who, size)
        self._after_op(func)
        scratch = self._scratch_of(func, args, kwargs, out, new)
        if scratch is None:
            self._sample(func)
            return out
        token = self._hold(scratch)  # live while the op runs: sampled with it, then freed
        self._sample(func)
        self._release(token)
        return out

    def _scratch_of(self, func: Any, args: tuple, kwargs: dict, out: Any, new: Any) -> Any:
        """Bytes of scratch the op held beside its ``new`` output bytes (None: none or not modelled)."""
        name = op_name(func)
        if not allocates_internally(name, args):
            return None
        held = held_bytes(func, args, kwargs, out)
        if held is None:
            self.unmodelled[name] += 1
            return None
        self.scratch_ops[name] += 1
        return torch.sym_max(held - new, 0)

    def _hold(self, nbytes: Any) -> Any:
        """Count ``nbytes`` of scratch as live (charged to the running owner); returns what to release."""
        size = round_up(nbytes, self.round_to)
        self.current += size
        self._scratch_now = size
        who = self.owner() if self.owner is not None else None
        if who is not None:
            self._charge(who, size)
        return size, who

    def _release(self, token: Any) -> None:
        size, who = token
        self.current -= size
        self._scratch_now = 0
        if who is not None:
            self._charge(who, -size)

    def _sample(self, func: Any) -> None:
        """After each op: update the peak (a subclass may record the moment instead of comparing)."""
        if self.current > self.peak:
            self.peak = self.current
            self.scratch = self._scratch_now
            if self.owner is not None:
                self.peak_by_owner = {k: v for k, v in self.live_by_owner.items() if v}
        tensors = self.current - self._scratch_now
        if tensors > self.tensor_peak:
            self.tensor_peak = tensors

    def _allocate(self, key: int, nbytes: int) -> int:
        """The bytes an allocation of ``nbytes`` counts for (a subclass may model an allocator)."""
        return round_up(nbytes, self.round_to)

    def _after_op(self, func: Any) -> None:
        """Called after each op's outputs are recorded (a subclass may add workspaces)."""

    def result(self) -> MemoryPeak:
        """The measurement so far."""
        return MemoryPeak(
            self.peak, self.current, self.allocated, self.allocations, self.round_to, self.tensor_peak,
            self.scratch, dict(sorted(self.scratch_ops.items())), dict(sorted(self.unmodelled.items())),
        )  # fmt: skip


def _storages(tree: Any) -> list[torch.UntypedStorage]:
    """Untyped storages of the tensors in a pytree (sparse/nested tensors without storage skipped)."""
    found = []
    for leaf in tree_leaves(tree):
        if isinstance(leaf, torch.Tensor):
            try:
                found.append(leaf.untyped_storage())
            except (RuntimeError, NotImplementedError):
                continue
    return found


def track_peak(fn: Callable[[], Any], round_to: int = 1) -> MemoryPeak:
    """Run ``fn()`` under a :class:`StorageTracker` and return its :class:`MemoryPeak` (bytes).

    Works for real CPU tensors and, called inside ``FakeTensorMode``, for fake tensors (same result
    for the same computation). ``end`` counts what is still referenced after ``fn`` returns,
    the returned value included (it is released only after the reading).
    """
    tracker = StorageTracker(round_to)
    with tracker:
        out = fn()
    result = tracker.result()
    del out
    return result


def cuda_peak(fn: Callable[[], Any], device: torch.device | str | None = None) -> int:
    """Peak bytes allocated by ``fn()`` on a CUDA device: ``max_memory_allocated() - memory_allocated()``.

    Includes kernel workspaces and allocator rounding (multiples of 512 bytes).
    """
    if not torch.cuda.is_available():
        raise ValueError(f"CUDA requested but torch reports no CUDA device (torch {torch.__version__})")
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    out = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak
