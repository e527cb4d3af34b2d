"""FLOP counting: ``torch.utils.flop_counter.FlopCounterMode`` (primary) and fvcore (second opinion).

Convention: FLOPs = 2 x MACs for matrix products and convolutions; nothing else is counted
(softmax, BatchNorm, ReLU, element-wise work are not FLOPs here). Knows no block by name.

torch 2.13's counter lacks formulas for ops a user meets in stock PyTorch: the CPU fused attention
kernel (``aten._scaled_dot_product_flash_attention_for_cpu`` and its backward), the fused inference
paths of ``nn.MultiheadAttention`` (``aten._native_multi_head_attention``) and
``nn.TransformerEncoderLayer`` (``aten._transformer_encoder_layer_fwd``), the out-of-tree backend
attention (``_scaled_dot_product_fused_attention_overrideable``) and matrix-vector products.
:data:`FORMULAS` gives them, passed to the counter as ``FlopCounterMode(custom_mapping=...)`` (torch's
global registry is left untouched). NB: like torch, causal and other masks are not discounted.

No silent zeros: a recorder below the counter lists every op it saw that has no formula, is not on
the known-free list (views, copies, element-wise, reductions, norms, softmax, pooling, resampling,
indexing, random) and either takes a floating tensor of two or more dimensions or is matmul-like by
name: :attr:`FlopCount.uncounted` ``{"aten.op": calls}``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

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


def _sdpa_flop(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """q: (B, H, Sq, Dq), k: (B, H, Sk, Dq), v: (B, H, Sk, Dv) -> FLOPs of a fused attention forward."""
    b, h, s_q, d_q = query
    s_k, d_v = key[-2], value[-1]
    return 2 * _sdpa_macs(b, h, s_q, s_k, d_q, d_v, backward=False)


def _sdpa_backward_flop(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    """grad_out: (B, H, Sq, Dv) with q, k, v as the forward -> FLOPs of a fused attention backward."""
    b, h, s_q, d_q = query
    s_k, d_v = key[-2], value[-1]
    return 2 * _sdpa_macs(b, h, s_q, s_k, d_q, d_v, backward=True)


def _mha_macs(query, key, embed_dim: int) -> int:
    """MACs of packed multi-head attention: q (*, Lq, E), k and v (*, Lk, E), heads splitting E.

    q projection Lq E^2; k and v projections 2 Lk E^2; q k^T and p v over all heads 2 Lq Lk E
    (heads x head_dim = E); output projection Lq E^2. NB: the averaged attention weights
    (``need_weights``) and the mask are element-wise, not counted.
    """
    lead, l_q, l_k, e = math.prod(query[:-2]), query[-2], key[-2], embed_dim
    return lead * (l_q * e * e + 2 * l_k * e * e + 2 * l_q * l_k * e + l_q * e * e)


def _native_mha_flop(query, key, value, embed_dim, num_head, *args, out_shape=None, **kwargs) -> int:
    """``aten._native_multi_head_attention``: ``nn.MultiheadAttention``'s fused inference path."""
    return 2 * _mha_macs(query, key, embed_dim)


def _encoder_layer_flop(src, embed_dim, num_heads, *args, out_shape=None, **kwargs) -> int:
    """``aten._transformer_encoder_layer_fwd``: ``nn.TransformerEncoderLayer``'s fused inference path.

    src (*, L, E): self-attention (:func:`_mha_macs`) + feed-forward E -> F -> E, 2 L E F MACs, with
    F = ffn_weight_1.shape[0]. NB: layer norms, activation and residual adds are element-wise.
    """
    ffn_weight_1 = args[11]  # (F, E): qkv_w, qkv_b, proj_w, proj_b, gelu, norm_first, eps, 4 norms, ffn_w1
    lead, length = math.prod(src[:-2]), src[-2]
    return 2 * (_mha_macs(src, src, embed_dim) + lead * 2 * length * embed_dim * ffn_weight_1[0])


def _mv_flop(mat, vec, *args, out_shape=None, **kwargs) -> int:
    """mat (M, N) x vec (N,) -> M N MACs."""
    return 2 * mat[0] * mat[1]


def _addmv_flop(bias, mat, vec, *args, out_shape=None, **kwargs) -> int:
    """bias (M,) + mat (M, N) x vec (N,) -> M N MACs (NB: the bias add is element-wise)."""
    return _mv_flop(mat, vec)


def _dot_flop(a, b, *args, out_shape=None, **kwargs) -> int:
    """a (N,) . b (N,) -> N MACs."""
    return 2 * a[0]


def _addbmm_flop(bias, b1, b2, *args, out_shape=None, **kwargs) -> int:
    """bias (N, P) + sum over b of b1 (B, N, M) x b2 (B, M, P) -> B N M P MACs (the sum over B rides
    along the accumulation)."""
    b, n, m = b1
    return 2 * b * n * m * b2[-1]


def _formulas() -> dict[Any, Callable[..., int]]:
    pairs = {
        "_scaled_dot_product_flash_attention_for_cpu": _sdpa_flop,
        "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward_flop,
        "_scaled_dot_product_fused_attention_overrideable": _sdpa_flop,
        "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward_flop,
        "_native_multi_head_attention": _native_mha_flop,
        "_transformer_encoder_layer_fwd": _encoder_layer_flop,
        "mv": _mv_flop,
        "addmv": _addmv_flop,
        "dot": _dot_flop,
        "vdot": _dot_flop,
        "addbmm": _addbmm_flop,
    }
    return {getattr(aten, n): fn for n, fn in pairs.items() if hasattr(aten, n)}


# FLOP formulas (shapes in, FLOPs out) for ops torch's counter lacks; FlopCounterMode(custom_mapping=...).
FORMULAS: dict[Any, Callable[..., int]] = _formulas()

# Ops that do no matrix work, by aten name (besides every op tagged pointwise and every view).
KNOWN_FREE: frozenset[str] = frozenset(
    # creation, copies, random
    "clone copy_ _to_copy contiguous empty empty_like empty_strided new_empty new_empty_strided new_zeros "
    "new_ones new_full zeros zeros_like ones ones_like full full_like fill_ zero_ lift_fresh "
    "lift_fresh_copy _unsafe_view resize_ set_ arange scalar_tensor rand rand_like randn randn_like "
    "bernoulli bernoulli_ uniform_ normal_ native_dropout native_dropout_backward "
    # layout and indexing
    "cat stack split_with_sizes unbind index index_select index_put index_put_ _unsafe_index "
    "_unsafe_index_put index_add index_add_ index_copy index_copy_ gather scatter scatter_ scatter_add "
    "scatter_add_ scatter_reduce masked_fill masked_fill_ masked_scatter masked_select where roll flip "
    "repeat constant_pad_nd reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d "
    "replication_pad2d replication_pad3d reflection_pad2d_backward replication_pad2d_backward tril triu "
    "tril_ triu_ select_backward slice_backward select_scatter slice_scatter diagonal_backward "
    "diagonal_scatter as_strided_scatter unfold_backward embedding embedding_dense_backward im2col col2im "
    "pixel_shuffle pixel_unshuffle channel_shuffle sort topk argsort nonzero "
    # reductions
    "sum mean prod amax amin max min argmax argmin var var_mean std std_mean logsumexp cumsum cumprod "
    "norm linalg_vector_norm any all count_nonzero "
    # softmax
    "_softmax _log_softmax _softmax_backward_data _log_softmax_backward_data _safe_softmax "
    "_masked_softmax _masked_softmax_backward "
    # norms
    "native_batch_norm native_batch_norm_backward _native_batch_norm_legit "
    "_native_batch_norm_legit_no_training _native_batch_norm_legit_functional _batch_norm_with_update "
    "_batch_norm_no_update batch_norm_backward native_layer_norm native_layer_norm_backward "
    "native_group_norm native_group_norm_backward _fused_rms_norm _fused_rms_norm_backward "
    # activations whose backward is not tagged pointwise
    "leaky_relu_backward gelu_backward silu_backward hardswish_backward hardsigmoid_backward "
    "hardtanh_backward elu_backward softplus_backward mish_backward tanh_backward glu glu_backward "
    "_prelu_kernel _prelu_kernel_backward log_sigmoid_forward log_sigmoid_backward "
    # pooling and resampling
    "max_pool2d_with_indices max_pool2d_with_indices_backward avg_pool2d avg_pool2d_backward "
    "_adaptive_avg_pool2d _adaptive_avg_pool2d_backward adaptive_max_pool2d adaptive_max_pool2d_backward "
    "max_pool3d_with_indices max_pool3d_with_indices_backward avg_pool3d avg_pool3d_backward "
    "upsample_nearest2d upsample_nearest2d_backward _upsample_nearest_exact2d "
    "_upsample_nearest_exact2d_backward upsample_bilinear2d upsample_bilinear2d_backward "
    "upsample_bicubic2d upsample_bicubic2d_backward _upsample_bilinear2d_aa "
    "_upsample_bilinear2d_aa_backward grid_sampler_2d grid_sampler_2d_backward".split()
)


def is_free(packet: Any) -> bool:
    """Whether an op (an ``OpOverloadPacket``) does no matrix work: on :data:`KNOWN_FREE`, tagged
    ``pointwise`` by torch, or a view (any of its overloads)."""
    if packet.__name__ in KNOWN_FREE:
        return True
    for name in packet.overloads():
        overload = getattr(packet, name)
        if overload.is_view or torch.Tag.pointwise in overload.tags:
            return True
    return False


@dataclass(frozen=True)
class FlopCount:
    """FlopCounterMode result. ``flops`` total; ``macs`` = flops // 2; ``by_op``: aten op -> FLOPs;
    ``uncounted``: ``"namespace.op"`` -> calls, for ops that ran without a formula and may do matrix
    work (so were counted as 0; see :func:`count_flops`)."""

    flops: int
    by_op: Mapping[str, int]
    uncounted: Mapping[str, int] = field(default_factory=dict)
    macs: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "macs", self.flops // 2)


class UncountedRecorder(TorchDispatchMode):
    """Counts the calls of every dispatched op that has no formula in ``registry``, is not free
    (:func:`is_free`) and is matmul-like by name or takes a floating tensor of >= 2 dimensions."""

    def __init__(self, registry: Mapping[Any, Any]) -> None:
        super().__init__()
        self.registry = registry
        self.calls: Counter[str] = Counter()
        self._free: dict[Any, bool] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = getattr(func, "_overloadpacket", None)
        if packet is not None and packet not in self.registry and func.namespace != "prim":  # prim: metadata
            free = self._free.get(packet)
            if free is None:
                free = self._free[packet] = is_free(packet)
            if not free and (is_matmul_like(packet.__name__) or _has_float_matrix((args, kwargs))):
                self.calls[f"{func.namespace}.{packet.__name__}"] += 1
        return func(*args, **kwargs)


def _has_float_matrix(tree: Any) -> bool:
    return any(
        isinstance(t, torch.Tensor) and t.dim() >= 2 and (t.is_floating_point() or t.is_complex())
        for t in tree_leaves(tree)
    )


def is_matmul_like(op_name: str) -> bool:
    """Whether an aten op name (e.g. ``"bmm"``, ``"convolution_backward"``) is a matrix product/conv."""
    return bool(_MATMUL_LIKE.search(op_name))


def flop_counter_mode() -> flop_counter.FlopCounterMode:
    """A silent ``FlopCounterMode`` with :data:`FORMULAS` as its custom mapping."""
    return flop_counter.FlopCounterMode(display=False, custom_mapping=FORMULAS)


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Count the FLOPs of ``fn()`` (forward, or forward + backward if ``fn`` calls backward).

    The recorder sits *below* the counter, so it sees the ops the counter actually executed
    (after its own decompositions): an op without a formula that may do matrix work is
    reported in ``uncounted`` (see :class:`FlopCount`). Works on real and fake tensors.
    """
    counter = flop_counter_mode()
    recorder = UncountedRecorder(counter.flop_registry)
    with recorder, counter:
        fn()
    by_op = {str(op.__name__): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(int(counter.get_total_flops()), by_op, dict(sorted(recorder.calls.items())))


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
