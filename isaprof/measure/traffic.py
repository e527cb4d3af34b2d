"""Bytes moved: the memory traffic of every aten op a callable dispatches (real CPU and fake tensors).

Model (one line): each op reads each of its tensor inputs once and writes each of its tensor outputs once,
with no reuse across ops: the traffic of an unfused execution, an upper bound on what fusion can remove.

Bytes of a tensor = distinct elements x itemsize, distinct elements = the product of the sizes of the
dimensions whose stride is not 0 (for any tensor not broadcast by ``expand`` this is ``numel * itemsize``;
a (1, N) bias expanded to (B, N) is read as its N elements, not B N). A tensor passed twice to one op is
read once.

What moves nothing (counted 0 bytes, listed in :attr:`BytesMoved.free`):
* views (``op.is_view``: view, _unsafe_view, transpose, permute, expand, slice, select, squeeze, unsqueeze,
  as_strided, alias, detach, split, unbind, t, ...): metadata only;
* :data:`FREE_OPS`: allocations without initialisation (``empty*``, ``new_empty*``, ``resize_``),
  ``_unsafe_view`` (a view its schema does not mark) and metadata queries (``sym_size``, ``prim.device``).
In-place ops read and write their mutated argument (``add_``), except :data:`WRITE_ONLY_OPS`
(``zero_``, ``fill_``, ``copy_``, RNG fills) that overwrite it without reading it; ``out=`` arguments are
written, not read.

NB: kernel-internal traffic (BLAS re-reading tiles that do not fit in cache, flash attention re-reading K
and V per query block, im2col buffers) is invisible at the dispatch level and not counted: for such ops
the count is the compulsory traffic, a lower bound on what the kernel really moves.

Each call's FLOPs (``torch.utils.flop_counter``'s registry, the formulas ``count_flops`` uses, CPU fused
attention included) are recorded beside its bytes, so a roofline bound can be taken op by op
(:mod:`isaprof.roofline.bound`); a convolution call also records its geometry (:class:`ConvShape`), which
decides the algorithms a library may run it with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from isaprof.measure import flops as _flops  # noqa: F401  (registers the CPU sdpa FLOP formulas)

aten = torch.ops.aten
# The FLOP formulas of one op call: torch's registry plus isaprof's (CPU fused attention, mv, ...), the same
# mapping ``count_flops`` hands FlopCounterMode (its custom formulas take shapes: wrapped as it wraps them).
FLOP_FORMULAS = {
    **flop_counter.flop_registry,
    **{k: flop_counter.shape_wrapper(v) for k, v in _flops.FORMULAS.items()},
}

# Allocations without initialisation and metadata queries: no element is read or written.
FREE_OPS = frozenset(
    str(p)
    for p in (
        aten.empty,
        aten.empty_like,
        aten.empty_strided,
        aten.new_empty,
        aten.new_empty_strided,
        aten.resize_,
        aten.sym_size,
        aten.sym_stride,
        aten.sym_numel,
        aten.sym_storage_offset,
        aten.is_same_size,
        aten.lift_fresh,
        aten.set_,
        aten._unsafe_view,  # a view whose schema does not say so (output of reshape after a copy)
        torch.ops.prim.device,
        torch.ops.prim.layout,
    )
)
# In-place ops that overwrite their mutated argument without reading it.
WRITE_ONLY_OPS = frozenset(
    str(p)
    for p in (
        aten.zero_,
        aten.fill_,
        aten.copy_,
        aten.normal_,
        aten.uniform_,
        aten.random_,
        aten.bernoulli_,
        aten.exponential_,
    )
)


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements ``t`` addresses: sizes of non-broadcast dims x itemsize."""
    n = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if size == 0:
            return 0
        if stride != 0:
            n *= size  # no int(): a symbolic size stays symbolic (isaprof formula derives bytes moved)
    return n * t.element_size()


@dataclass(frozen=True)
class ConvShape:
    """Geometry of one 2-D convolution call (``aten.convolution``): batch, input channels, input map
    (``height`` x ``width``), output channels, output map, ``kernel`` / ``stride`` / ``padding`` /
    ``dilation`` as (h, w), ``groups`` and ``transposed``."""

    batch: int
    in_channels: int
    height: int
    width: int
    out_channels: int
    out_height: int
    out_width: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    transposed: bool


def conv_shape(args: tuple, out: Any) -> ConvShape | None:
    """The :class:`ConvShape` of an ``aten.convolution`` call (its positional schema: input, weight, bias,
    stride, padding, dilation, transposed, output_padding, groups), None unless 2-D with integer sizes."""
    try:
        x, w, _, stride, padding, dilation, transposed, _, groups = args[:9]
        if x.dim() != 4 or not isinstance(out, torch.Tensor):
            return None
        sizes = (*x.shape, *w.shape, *out.shape, *stride, *padding, *dilation, groups)
        if not all(isinstance(v, int) for v in sizes):  # symbolic: int() would specialise (guard) the symbol
            return None
        n, c, h, wd = (int(v) for v in x.shape)
        _, co, ho, wo = (int(v) for v in out.shape)
        return ConvShape(n, c, h, wd, co, ho, wo, (int(w.shape[2]), int(w.shape[3])),
                         (int(stride[0]), int(stride[1])), (int(padding[0]), int(padding[1])),
                         (int(dilation[0]), int(dilation[1])), int(groups), bool(transposed))  # fmt: skip
    except (TypeError, ValueError, IndexError, RuntimeError):  # symbolic sizes, other arities
        return None


@dataclass(frozen=True)
class OpCall:
    """One op call: ``op`` (``"aten.mm"``), bytes ``read`` and ``written``, ``flops`` (0 without formula);
    ``conv``: the geometry of a convolution call, else None."""

    op: str
    read: int
    written: int
    flops: int
    conv: ConvShape | None = None

    @property
    def bytes(self) -> int:
        return self.read + self.written


@dataclass(frozen=True)
class BytesMoved:
    """Result of :func:`count_bytes_moved`, in bytes (see the module docstring for the model).

    ``total`` = ``reads`` + ``writes``; ``by_op``: aten op packet (``"aten.mm"``) -> bytes read + written;
    ``calls``: every op call in order (op, read, written, FLOPs); ``free``: ops seen that move nothing
    (views, allocations, metadata) with their call counts.
    """

    total: int
    by_op: Mapping[str, int]
    reads: int
    writes: int
    calls: tuple[OpCall, ...] = field(default=(), repr=False)
    free: Mapping[str, int] = field(default_factory=dict)


def _key(t: torch.Tensor) -> tuple:
    """Identity of the elements a tensor addresses (same storage, offset, shape, strides, dtype)."""
    try:
        storage = t.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError):
        storage = id(t)
    # sizes as text: symbolic sizes (SymInt) are not hashable, and "3" == "3" as 3 == 3
    return (storage, str(t.storage_offset()), tuple(map(str, t.shape)), tuple(map(str, t.stride())), t.dtype)


def _tensors(value: Any) -> list[torch.Tensor]:
    return [x for x in tree_leaves(value) if isinstance(x, torch.Tensor)]


def _unique_bytes(tensors: list[torch.Tensor]) -> int:
    seen: dict[tuple, int] = {}
    for t in tensors:
        seen.setdefault(_key(t), tensor_bytes(t))
    return sum(seen.values())


def op_traffic(func: Any, args: tuple, kwargs: dict, out: Any) -> tuple[int, int]:
    """(bytes read, bytes written) of one call of aten overload ``func`` (see the module docstring)."""
    name = str(func._overloadpacket)
    if func.is_view or name in FREE_OPS:
        return 0, 0
    read: list[torch.Tensor] = []
    written: list[torch.Tensor] = _tensors(out)
    for i, arg in enumerate(func._schema.arguments):
        value = args[i] if i < len(args) and not arg.kwarg_only else kwargs.get(arg.name)
        tensors = _tensors(value)
        if not tensors:
            continue
        mutated = arg.alias_info is not None and arg.alias_info.is_write
        if mutated:
            written += tensors
        if not mutated or not (arg.kwarg_only or name in WRITE_ONLY_OPS):
            read += tensors
    return _unique_bytes(read), _unique_bytes(written)


class TrafficCounter(TorchDispatchMode):
    """Dispatch mode recording, for every op call, the bytes read and written and its FLOPs."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[OpCall] = []
        self.free: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func._overloadpacket)
        read, written = op_traffic(func, args, kwargs, out)
        if read == written == 0:
            self.free[name] += 1
            return out
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        flops = formula(*args, **kwargs, out_val=out) if formula is not None else 0  # int, or SymInt
        conv = conv_shape(args, out) if func._overloadpacket is aten.convolution else None
        self.calls.append(OpCall(name, read, written, flops, conv))
        return out

    def result(self) -> BytesMoved:
        """The count so far."""
        by_op: Counter[str] = Counter()
        for c in self.calls:
            by_op[c.op] += c.bytes
        reads = sum(c.read for c in self.calls)
        writes = sum(c.written for c in self.calls)
        return BytesMoved(reads + writes, dict(by_op), reads, writes, tuple(self.calls), dict(self.free))


def count_bytes_moved(fn: Callable[[], Any]) -> BytesMoved:
    """Bytes read and written by the aten ops of ``fn()`` (forward, and backward if ``fn`` runs one).

    Works on real and (inside ``FakeTensorMode``) fake tensors alike: the count depends on shapes only.
    """
    counter = TrafficCounter()
    with counter:
        fn()
    return counter.result()
