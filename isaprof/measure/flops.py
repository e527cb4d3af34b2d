"""FLOP counting: ``torch.utils.flop_counter.FlopCounterMode`` (primary) and fvcore (second opinion).

Convention: FLOPs = 2 x MACs for matrix products and convolutions; nothing else is counted
(softmax, BatchNorm, ReLU, element-wise work are not FLOPs here). Knows no block by name.

torch 2.13's counter has no formula for the CPU fused attention kernel
(``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), so ``sdpa`` on CPU or fake
CPU tensors would count 0. :func:`register_cpu_sdpa_formulas` adds them, following torch's own
``sdpa_flop_count`` / ``sdpa_backward_flop_count`` (NB: like torch, causal masking is not
discounted). To make sure nothing else is silently undercounted, a recorder mode runs alongside
the counter and reports every matmul-like op it saw that has no formula.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# aten op names that multiply matrices (or convolve); any of these without a formula is reported.
_MATMUL_LIKE = re.compile(
    r"^(mm|bmm|addmm|addbmm|baddbmm|matmul|linear|einsum|tensordot|mv|addmv|dot|vdot|_int_mm|_scaled_mm"
    r"|_weight_int\w*_mm|_addmm_activation)$"
    r"|conv|attention"
)


def _sdpa_macs(b: int, h: int, s_q: int, s_k: int, d_q: int, d_v: int, backward: bool) -> int:
    """MACs of attention over (b, h) heads: forward q k^T and p v; backward as torch's formula."""
    scores = s_q * s_k * d_q  # q k^T: (s_q, d_q) x (d_q, s_k)
    out = s_q * s_k * d_v  # p v: (s_q, s_k) x (s_k, d_v)
    if not backward:
        return b * h * (scores + out)
    # recompute q k^T; dP = dO v^T; dV = P^T dO; dQ = dS k; dK = dS^T q  (torch sdpa_backward_flop_count)
    return b * h * (3 * scores + 2 * out)


def _cpu_flash_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """q: (B, H, Sq, Dq), k: (B, H, Sk, Dq), v: (B, H, Sk, Dv) -> FLOPs of the fused CPU attention."""
    b, h, s_q, d_q = query
    s_k, d_v = key[-2], value[-1]
    return 2 * _sdpa_macs(b, h, s_q, s_k, d_q, d_v, backward=False)


def _cpu_flash_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    """grad_out: (B, H, Sq, Dv) with q, k, v as the forward -> FLOPs of the fused CPU backward."""
    b, h, s_q, d_q = query
    s_k, d_v = key[-2], value[-1]
    return 2 * _sdpa_macs(b, h, s_q, s_k, d_q, d_v, backward=True)


def register_cpu_sdpa_formulas() -> None:
    """Register FLOP formulas for the CPU fused attention ops if torch lacks them (idempotent)."""
    pairs = {
        "_scaled_dot_product_flash_attention_for_cpu": _cpu_flash_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _cpu_flash_backward_flop,
    }
    for name, fn in pairs.items():
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op)(fn)


register_cpu_sdpa_formulas()


@dataclass(frozen=True)
class FlopCount:
    """FlopCounterMode result. ``flops`` total; ``macs`` = flops // 2; ``by_op``: aten op -> FLOPs;
    ``uncounted``: matmul-like aten ops that ran but have no formula (so were counted as 0)."""

    flops: int
    by_op: Mapping[str, int]
    uncounted: tuple[str, ...] = ()
    macs: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "macs", self.flops // 2)


class _OpRecorder(TorchDispatchMode):
    """Records the overload packet name of every aten op dispatched while active."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()
        self.packets: dict[str, Any] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._overloadpacket.__name__
        self.seen[name] += 1
        self.packets[name] = func._overloadpacket
        return func(*args, **(kwargs or {}))


def is_matmul_like(op_name: str) -> bool:
    """Whether an aten op name (e.g. ``"bmm"``, ``"convolution_backward"``) is a matrix product/conv."""
    return bool(_MATMUL_LIKE.search(op_name))


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Count the FLOPs of ``fn()`` (forward, or forward + backward if ``fn`` calls backward).

    The recorder sits *below* the counter, so it sees the ops the counter actually executed
    (after its own decompositions): an op it sees that is matmul-like and lacks a formula is
    reported in ``uncounted``. Works on real and fake tensors.
    """
    counter = flop_counter.FlopCounterMode(display=False)
    recorder = _OpRecorder()
    with recorder, counter:
        fn()
    by_op = {str(op.__name__): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    uncounted = tuple(
        sorted(
            name
            for name, packet in recorder.packets.items()
            if is_matmul_like(name) and packet not in flop_counter.flop_registry
        )
    )
    return FlopCount(int(counter.get_total_flops()), by_op, uncounted)


@dataclass(frozen=True)
class FvcoreCount:
    """fvcore ``FlopCountAnalysis`` result. NB: fvcore's "flops" are MACs (one per multiply-add).

    ``macs`` total; ``by_op``: fvcore op name (``"conv"``, ``"matmul"``, ``"batch_norm"``, ...) -> MACs;
    ``unsupported``: jit op name -> number of calls fvcore had no handle for (counted as 0).
    NB: fvcore also counts ops that are not MACs by our convention (batch_norm, upsample, adaptive
    pooling, norms: one "flop" per element or so); compare on common ops only.
    """

    macs: int
    by_op: Mapping[str, int]
    unsupported: Mapping[str, int]

    @property
    def counted_ops(self) -> tuple[str, ...]:
        """fvcore op names that contributed a non-zero count."""
        return tuple(sorted(k for k, v in self.by_op.items() if v))


def fvcore_count(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> FvcoreCount:
    """Count MACs of ``module(*inputs)`` (forward only) with fvcore's ``FlopCountAnalysis``.

    fvcore traces with ``torch.jit.trace``: real tensors only, keep shapes small.
    """
    if any(t.device.type == "meta" or _is_fake(t) for t in inputs):
        raise ValueError("fvcore traces with torch.jit: pass real tensors, not meta or fake ones")
    with warnings.catch_warnings():  # torch.jit.trace/script deprecation notices, not ours to act on
        warnings.simplefilter("ignore", DeprecationWarning)
        from fvcore.nn import FlopCountAnalysis

        analysis = FlopCountAnalysis(module, inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = {str(k): int(v) for k, v in analysis.by_operator().items()}
        unsupported = {str(k): int(v) for k, v in analysis.unsupported_ops().items()}
        total = int(analysis.total())
    return FvcoreCount(total, by_op, unsupported)


def _is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)
