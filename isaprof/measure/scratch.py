"""Scratch memory of fused ops: the bytes a kernel takes from PyTorch's allocator and returns *inside* one
aten op, invisible at the dispatch level where :class:`isaprof.measure.memory.StorageTracker` sees only an
op's inputs and outputs.

A rule gives, for one aten op, the bytes its kernel **holds at its own peak, its new outputs included**,
as a function of the op's arguments (shapes, dtypes, flags), phase by phase as the kernel's code allocates
and frees. The tracker charges ``held - outputs`` as *scratch* at that op: live while the op runs, freed
when it returns. A registry like ``torch/utils/flop_counter.py``: ``@rule(aten.op, ...)`` on one short
function per op. A rule returns ``None`` where it cannot tell (an unsupported variant, or a size that
depends on the GPU); the op is then listed as unmodelled, like an op without a FLOP formula.

Sources (file names relative to the PyTorch repository; read, not copied), each rule checked against the
allocations ``torch.profiler.profile(profile_memory=True)`` records inside the op on CPU
(tests/measure/test_scratch.py):

* ``_native_multi_head_attention`` (aten/src/ATen/native/transformers/attention.cpp,
  ``native_multi_head_attention_cpu``): qkv projection (B, T, 3D); ``_transform_bias_rescale_qkv`` packs
  q, k, v into one (3, B, h, T, D/h) buffer, then the projection dies; ``bmm_nt`` builds the (B, h, T, T)
  scores, softmax in place (with a mask: out of place, a second (B, h, T, T)); ``bmm_nn`` writes into q's
  storage; the scores die unless returned; ``transform_0213`` copies (B, T, D) before the output
  projection; averaged weights are ``scores.sum(1)`` (B, T, T) next to the scores.
* ``_transformer_encoder_layer_fwd`` (aten/src/ATen/native/transformers/transformer.cpp,
  ``transformer_encoder_layer_forward``): the attention above (beside the first norm's output when
  ``norm_first``), residual add in place, layer norms (output plus fp32 mean / rstd of (B, T) each, freed at
  once), ``ffn``: (B, T, F) then (B, T, D), the residual kept alive until return.
* ``_scaled_dot_product_flash_attention_for_cpu`` and its backward
  (aten/src/ATen/native/cpu/FlashAttentionKernel.cpp, ``cpu_flash_attention``): **per-thread** buffers,
  ``at::get_num_threads()`` of them, so the rule reads ``torch.get_num_threads()`` when it runs. Forward:
  (qSplit kvSplit + 2 qSplit + qSplit Dv) elements per thread (scores block, row max, row sum, output
  block); qSplit = 256 / 64 / 32 for L >= 768 / >= 192 / else, kvSplit = 512, each capped at the sequence
  length. Backward: two (qSplit, kvSplit) blocks per thread (scores and their gradient), one (B, H, L, E)
  buffer and one qSplit row buffer. float32 / float64 only: for half types the kernel also packs blocks
  for oneDNN (not modelled: listed).
* ``_scaled_dot_product_flash_attention`` (CUDA; aten/src/ATen/native/transformers/cuda/flash_attn/
  flash_api.cpp, ``mha_fwd`` / ``set_params_splitkv``): split-KV accumulators ``(splits, B, H, L)`` and
  ``(splits, B, H, L, Dr)`` fp32 when ``num_splits_heuristic`` picks more than one split; that choice needs
  the GPU's SM count (``torch.cuda.get_device_properties``): without a GPU the rule answers only where the
  heuristic's first test (enough blocks to fill 0.8 of the SMs) holds for any current GPU, else unknown.
  The logsumexp (B, H, L) fp32 is an output: already counted.
* ``_scaled_dot_product_flash_attention_backward`` (same file, ``mha_bwd``): fp32 ``dq_accum`` (B, Lr, H,
  Dr) and ``softmax_d`` (B, H, Lr), Lr = L rounded up to 128, Dr = head dim rounded up to 32 (64 above 128).
* ``convolution`` on CPU (2-d, ungrouped, float32/64) where ATen takes its native kernels rather than
  oneDNN (``ConvParams::use_mkldnn`` in aten/src/ATen/native/Convolution.cpp, reproduced by
  :func:`onednn_convolution`: float32 with batch 1, no group, a kernel of at most 3x3 and at most 20480
  input elements, e.g.): ``slow_conv2d`` (ConvolutionMM2d.cpp) unfolds the batch into ``finput`` (B,
  C_in kh kw, H_out W_out), nothing for a 1x1 kernel with stride 1 and no padding; ``slow_conv_dilated2d``
  (NaiveDilatedConvolution.cpp) one sample's (C_in kh kw, H_out W_out) ``columns``.
* Listed without a rule (size not knowable from shapes, or not yet modelled): the efficient-attention
  kernels (their logsumexp, padded to 32 queries, is an output; the backward's ``delta`` and kernel-traits
  workspace are not modelled), cuDNN attention and cuDNN convolution workspaces (the frontend graph's
  ``get_workspace_size()`` / the algorithm search decide them, on the GPU), and CPU convolutions ATen hands
  to oneDNN (reorders of input, weight and output into blocked layouts, padded to the ISA's channel block,
  plus implementation-specific buffers such as a strided 1x1's copy: measured, they follow the
  implementation oneDNN dispatches at run time, not one formula in the shapes), grouped, transposed or
  non-2-d ones, and ``convolution_backward``.

NB: buffers a kernel does not take from PyTorch's allocator are outside this model and outside what CUDA's
``max_memory_allocated`` reports: BLAS / oneDNN packing, OpenMP stacks; the cuBLAS workspace is modelled by
:mod:`isaprof.measure.cuda_memory`. Nested tensors are not modelled (the rules return ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten

ScratchRule = Callable[..., "int | None"]
RULES: dict[str, ScratchRule] = {}  # "aten.op" -> rule

# aten ops known to allocate inside the op (with or without a rule): those without one, or whose rule
# cannot tell, are listed (never a silent zero). ``convolution`` only where it runs on CPU or CUDA.
KNOWN_ALLOCATING = frozenset(
    f"aten.{n}"
    for n in (
        "_native_multi_head_attention",
        "_transformer_encoder_layer_fwd",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention_for_cpu_backward",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_backward",
        "_flash_attention_forward",
        "_flash_attention_backward",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_efficient_attention_backward",
        "_efficient_attention_forward",
        "_efficient_attention_backward",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_cudnn_attention_backward",
        "convolution",
        "convolution_backward",
        "cudnn_convolution",
        "cudnn_convolution_transpose",
    )
)

# a GPU's SM count bounds for the flash split-KV heuristic when no GPU is present (sm80..sm100 parts)
MAX_SMS = 160


def rule(*ops: Any) -> Callable[[ScratchRule], ScratchRule]:
    """Register ``fn`` as the scratch rule of each aten op (packet) in ``ops``."""

    def register(fn: ScratchRule) -> ScratchRule:
        for op in ops:
            RULES[f"aten.{op.__name__}"] = fn
        return fn

    return register


def op_name(func: Any) -> str:
    """``"namespace.op"`` of an ``OpOverload`` (e.g. ``"aten._native_multi_head_attention"``)."""
    return f"{func.namespace}.{func._overloadpacket.__name__}"


def allocates_internally(name: str, args: tuple[Any, ...]) -> bool:
    """Whether the op ``name`` is known to allocate inside itself with these arguments (convolution: on a
    CPU or CUDA tensor, not on ``meta``)."""
    if name not in KNOWN_ALLOCATING:
        return False
    if name in ("aten.convolution", "aten.convolution_backward"):
        return any(isinstance(a, torch.Tensor) and a.device.type in ("cpu", "cuda") for a in args[:3])
    return True


def held_bytes(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> int | None:
    """Bytes the op's kernel holds at its peak, its outputs included (see the module docstring), or
    ``None`` when no rule applies."""
    fn = RULES.get(op_name(func))
    if fn is None:
        return None
    return fn(**_named(func, args, kwargs), out=out)


def _named(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The op's arguments by their schema names, defaults filled in (an output named ``out`` is renamed
    ``out_``: ``out`` is what the op returned)."""
    named = {}
    for i, a in enumerate(func._schema.arguments):
        if i < len(args) and not a.kwarg_only:
            value = args[i]
        else:
            value = kwargs.get(a.name, a.default_value if a.has_default_value() else None)
        named["out_" if a.name == "out" else a.name] = value
    return named


def _bytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _outputs(out: Any) -> int:
    return sum(
        _bytes(t) for t in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(t, torch.Tensor)
    )


def _max(*values: Any) -> Any:
    """Maximum of ints or SymInts (``torch.sym_max``: no guard on symbolic sizes)."""
    best = values[0]
    for v in values[1:]:
        best = torch.sym_max(best, v)
    return best


def _acc_size(dtype: torch.dtype) -> int:
    """Bytes of the accumulation type (``at::opmath_type``): float for half types, else the type itself."""
    return 4 if dtype in (torch.float16, torch.bfloat16) else dtype.itemsize


def _mha_held(query: torch.Tensor, embed_dim: int, num_head: int, mask: Any, need_weights: bool,
              average: bool) -> Any:  # fmt: skip
    """Bytes held by ``native_multi_head_attention_cpu`` at its peak, its outputs included (phases in the
    module docstring): query (B, T, D), scores (B, h, T, T)."""
    b, t, _ = query.shape
    e = query.element_size()
    btd = b * t * embed_dim * e
    scores = b * num_head * t * t * e
    projection = 6 * btd  # (B, T, 3D) projection beside the packed (3, B, h, T, D/h) q, k, v
    at_scores = 3 * btd + scores * (2 if mask is not None else 1)  # masked softmax is out of place
    if mask is not None and mask.dtype != torch.bool:
        at_scores += mask.numel()  # converted to a bool mask
    if not need_weights:
        return _max(projection, at_scores, 5 * btd)  # then q k v + (B, T, D) copy + output
    tail = 3 * btd + scores + 2 * btd  # scores kept: copy + output beside them
    if average:  # scores.sum(1): (B, T, T) beside the scores, the copy freed
        tail = _max(tail, 3 * btd + scores + btd + b * t * t * e)
    return _max(projection, at_scores, tail)


@rule(aten._native_multi_head_attention)
def _native_mha(query, embed_dim, num_head, mask, need_weights, average_attn_weights, out, **_) -> Any:
    if query.is_nested or query.device.type != "cpu":
        return None  # the CUDA kernel may take its sdpa branch: not modelled
    return _mha_held(query, embed_dim, num_head, mask, need_weights, average_attn_weights)


@rule(aten._transformer_encoder_layer_fwd)
def _encoder_layer(src, embed_dim, num_heads, norm_first, ffn_weight_1, mask, out, **_) -> Any:
    if src.is_nested or src.device.type != "cpu":
        return None
    b, t, _ = src.shape
    e = src.element_size()
    btd = b * t * embed_dim * e
    btf = b * t * ffn_weight_1.shape[0] * e
    stats = 2 * b * t * _acc_size(src.dtype)  # layer norm's mean and rstd, freed at once
    nf = 1 if norm_first else 0
    attention = nf * btd + _mha_held(src, embed_dim, num_heads, mask, False, True)
    ffn = (2 + nf) * btd + btf  # residual (+ normed input), (B, T, F), (B, T, D)
    last_norm = 0 if norm_first else 3 * btd + stats  # residual, input and output of the second norm
    return _max(attention, ffn, last_norm, (1 + nf) * btd + stats)


def _at_least(n: Any, t: int) -> Any:
    """1 where the integer ``n >= t``, else 0, as ``Min(1, Max(0, n - t + 1))``: no branch, so on symbolic
    sizes the result holds on both sides of ``t`` (no guard)."""
    return torch.sym_min(1, torch.sym_max(0, n - (t - 1)))


def _flash_cpu_splits(q_len: Any, kv_len: Any) -> tuple[Any, Any]:
    """(qSplit, kvSplit) of ``cpu_flash_attention``: 256 / 64 / 32 queries for L >= 768 / >= 192 / else,
    512 keys; each capped at the sequence length. Written with min/max (32 + 32 [L >= 192] + 192 [L >= 768])
    rather than a branch, so a derived peak holds at every L."""
    q_split = 32 + 32 * _at_least(q_len, 192) + 192 * _at_least(q_len, 768)
    return torch.sym_min(q_split, q_len), torch.sym_min(512, kv_len)


def onednn_convolution(
    input: torch.Tensor, weight: torch.Tensor, stride: Any, dilation: Any, groups: int
) -> bool:
    """Whether ATen runs a CPU convolution with oneDNN: ``ConvParams::use_mkldnn``
    (aten/src/ATen/native/Convolution.cpp) for float32: strided, dilated, batch >= 16, a kernel other than
    1x1 or more than one thread; and grouped, a kernel larger than 3x3 on both sides, batch > 1 or more
    than 20480 input elements (below, "native is faster")."""
    if input.dtype != torch.float32 or not (
        torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    ):
        return False
    kh, kw = weight.shape[-2], weight.shape[-1]
    strided, dilated = any(s != 1 for s in stride), any(d != 1 for d in dilation)
    batch = input.shape[0]
    some = strided or dilated or batch >= 16 or (kh, kw) != (1, 1) or torch.get_num_threads() > 1
    return bool(some and (groups > 1 or (kh > 3 and kw > 3) or batch > 1 or input.numel() > 20480))


@rule(aten.convolution)
def _convolution(input, weight, stride, padding, dilation, transposed, groups, out, **_) -> Any:
    """CPU, 2-d, ungrouped, not transposed, float32/64, where ATen takes its native (THNN) kernels:
    ``slow_conv2d`` (aten/src/ATen/native/ConvolutionMM2d.cpp) unfolds the whole batch into ``finput``
    (B, C_in kh kw, H_out W_out) before the GEMM, except a 1x1 kernel with stride 1 and no padding (the
    input is its own unfolding: nothing); ``slow_conv_dilated2d`` (NaiveDilatedConvolution.cpp) unfolds one
    sample at a time into one reused (C_in kh kw, H_out W_out) ``columns`` buffer. Where ATen picks oneDNN
    (:func:`onednn_convolution`), the reorders into blocked layouts depend on the implementation oneDNN
    dispatches at run time (unknown: None, listed); on CUDA, cuDNN's workspace is chosen by its algorithm
    search (None)."""
    if input.device.type != "cpu" or input.dim() != 4 or transposed or groups != 1:
        return None
    if input.dtype not in (torch.float32, torch.float64) or onednn_convolution(
        input, weight, stride, dilation, groups
    ):
        return None
    kh, kw = weight.shape[-2], weight.shape[-1]
    columns = input.shape[1] * kh * kw * out.shape[-2] * out.shape[-1] * input.element_size()
    if any(d != 1 for d in dilation):
        return _outputs(out) + columns
    if (kh, kw) == (1, 1) and all(s == 1 for s in stride) and all(p == 0 for p in padding):
        return _outputs(out)
    return _outputs(out) + input.shape[0] * columns


@rule(aten._scaled_dot_product_flash_attention_for_cpu)
def _flash_cpu(
    query, key, value, dropout_p=0.0, is_causal=False, *, attn_mask=None, scale=None, out=None
) -> Any:
    """query (B, H, L, E), value (B, H, S, Ev) -> out (B, H, L, Ev), logsumexp (B, H, L) fp32; per thread:
    scores block, row max, row sum and output block. Half types: packing buffers not modelled (None)."""
    if query.dtype not in (torch.float32, torch.float64):
        return None
    q_split, kv_split = _flash_cpu_splits(query.shape[-2], key.shape[-2])
    per_thread = (q_split * kv_split + 2 * q_split + q_split * value.shape[-1]) * query.element_size()
    return _outputs(out) + torch.get_num_threads() * per_thread


@rule(aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _flash_cpu_backward(query, key, out, **_) -> Any:
    """Beside grad q, k, v: one (B, H, L, E) buffer, per thread the scores and score-gradient blocks
    (qSplit, kvSplit), and one qSplit row buffer. Half types: packing buffers not modelled (None)."""
    if query.dtype not in (torch.float32, torch.float64):
        return None
    q_split, kv_split = _flash_cpu_splits(query.shape[-2], key.shape[-2])
    e = query.element_size()
    per_thread = 2 * q_split * kv_split * e
    return _outputs(out) + query.numel() * e + torch.get_num_threads() * per_thread + q_split * e


def _num_splits(blocks: int, sms: int, n_blocks: int, max_splits: int = 128) -> int:
    """``num_splits_heuristic`` of flash_api.cpp: the fewest splits within 85 % of the best wave
    efficiency; 1 when ``blocks`` fill 0.8 of the SMs."""
    if blocks >= 0.8 * sms:
        return 1
    max_splits = min(max_splits, sms, n_blocks)
    eligible = [s == 1 or -(-n_blocks // s) != -(-n_blocks // (s - 1)) for s in range(1, max_splits + 1)]
    eff = [(blocks * s / sms) / math.ceil(blocks * s / sms) if ok else 0.0
           for s, ok in zip(range(1, max_splits + 1), eligible, strict=True)]  # fmt: skip
    best = max(eff)
    return next(
        s
        for s, ok in zip(range(1, max_splits + 1), eligible, strict=True)
        if ok and eff[s - 1] >= 0.85 * best
    )


def _sm_count(device: torch.device) -> int | None:
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


@rule(aten._scaled_dot_product_flash_attention)
def _flash_cuda(query, key, dropout_p, out, **_) -> Any:
    """query (B, H, L, E): split-KV accumulators when the heuristic splits (no dropout only)."""
    b, h, q_len, d = (int(s) for s in query.shape)
    k_len = int(key.shape[-2])
    if dropout_p > 0:
        return _outputs(out)
    d8 = -(-d // 8) * 8
    d_rounded = -(-d8 // (32 if d8 <= 128 else 64)) * (32 if d8 <= 128 else 64)
    block_n = 256 if d8 <= 64 else (128 if d8 <= 128 else 64)
    blocks, n_blocks = b * h * -(-q_len // 64), -(-k_len // block_n)
    sms = _sm_count(query.device)
    if sms is None:
        if blocks >= 0.8 * 2 * MAX_SMS:
            return _outputs(out)  # enough blocks for any current GPU: one split, no accumulators
        return None
    splits = _num_splits(blocks, 2 * sms, n_blocks)
    accum = splits * b * h * q_len * (1 + d_rounded) * 4 if splits > 1 else 0
    return _outputs(out) + accum


@rule(aten._scaled_dot_product_flash_attention_backward)
def _flash_cuda_backward(query, out, **_) -> Any:
    """query (B, H, L, E): fp32 dq accumulator (B, Lr, H, Dr) and softmax_d (B, H, Lr)."""
    b, h, q_len, d = query.shape
    d8 = -(-d // 8) * 8
    d_rounded = -(-d8 // (32 if d8 <= 128 else 64)) * (32 if d8 <= 128 else 64)
    q_rounded = -(-q_len // 128) * 128
    return _outputs(out) + 4 * b * h * q_rounded * (d_rounded + 1)
