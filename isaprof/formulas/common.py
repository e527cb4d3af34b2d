"""Helpers shared by the cost formulas. Pure Python (ints in, ints out): no torch, nothing of isaprof
outside ``isaprof.formulas``.

Element-wise convention (``Cost.elementwise``, forward, operations; stated once here):

* softmax: ``SOFTMAX_OPS = 5`` per element (max, subtract, exp, sum, divide);
* scaling of a logit, masking of a logit, ReLU, residual add: 1 per element;
* BatchNorm: ``BN_OPS = 2`` per element (inference form: one multiply, one add with folded statistics);
* 2x2 max-pool: 3 comparisons per output element; padding, permutes, copies: 0 (data movement).

The attention logit ops are counted on the (N, M) matrix whatever the impl (the algorithm's work, as the
naive impl does it): a fused kernel does the same work inside one op.

MAC convention (torch.utils.flop_counter, counted per op, MACs = FLOPs / 2): a 1x1 conv over P positions
is P * Cin * Cout (bias not counted); its backward, when its input requires grad, is grad_input + grad_weight,
2 * P * Cin * Cout. A (N, Ck) x (Ck, M) matmul is N * M * Ck. Attention backward: the materialised
(naive, sdpa "math") form is the backward of its two bmm's, 2 * (QK + AV); a fused kernel (flash /
efficient, CPU ``_scaled_dot_product_flash_attention_for_cpu``) follows torch's ``sdpa_backward_flop``:
recompute QK^T, then dS, dV, dQ, dK = 3 * QK + 2 * AV.
"""

from __future__ import annotations

from collections.abc import Mapping

from isaprof.config import BACKENDS
from isaprof.formulas.base import Cost

SOFTMAX_OPS = 5
BN_OPS = 2
RELU_OPS = 1
POOL2X2_OPS = 3
SDPA_BACKENDS = (None, *BACKENDS)  # None: PyTorch's choice; efficient, cudnn: CUDA fused kernels


def conv1x1_params(cin: int, cout: int, *, bias: bool = True) -> int:
    """Parameters of a 1x1 conv: weights Cin * Cout, plus Cout biases."""
    return cin * cout + (cout if bias else 0)


def bn_params(channels: int) -> int:
    """Parameters (weight + bias) of a BatchNorm2d; running statistics are buffers, not counted."""
    return 2 * channels


def conv1x1_macs(positions: int, cin: int, cout: int) -> int:
    """Forward MACs of a 1x1 conv over ``positions`` = B * H * W output positions."""
    return positions * cin * cout


def attention_kernel(impl: str, backend: str | None, key_channels: int, value_channels: int) -> str:
    """Which attention computation runs on CPU: ``"materialised"`` (naive, or sdpa's math kernel: bmm's)
    or ``"fused"`` (sdpa's CPU flash kernel, chosen by torch when Ck == Cv and no backend is forced).

    ``ValueError`` for an unknown impl/backend, or ``"flash"`` with Ck != Cv (torch has no kernel then).
    NB: on CUDA torch's default choice also depends on dtype and GPU; pass the backend explicitly there.
    """
    if impl == "naive":
        return "materialised"
    if impl != "sdpa":
        raise ValueError(f"unknown impl {impl!r}; allowed: naive, sdpa")
    if backend not in SDPA_BACKENDS:
        raise ValueError(f"unknown sdpa backend {backend!r}; allowed: {SDPA_BACKENDS}")
    if backend == "flash" and key_channels != value_channels:
        raise ValueError(
            f"sdpa flash needs key_channels == value_channels, got {key_channels}, {value_channels}"
        )
    if backend in ("efficient", "cudnn"):
        return "fused"  # CUDA kernels; torch's flop formulas count them like flash
    if backend == "math" or key_channels != value_channels:
        return "materialised"
    return "fused"


def attention_macs(maps: int, n: int, m: int, key_channels: int, value_channels: int) -> tuple[int, int]:
    """Forward MACs (Q K^T, A V) of ``maps`` independent attentions of n queries over m keys."""
    return maps * n * m * key_channels, maps * n * m * value_channels


def attention_backward_macs(qk: int, av: int, kernel: str) -> int:
    """Backward MACs of an attention whose forward terms are ``qk``, ``av`` (see module docstring)."""
    return 2 * (qk + av) if kernel == "materialised" else 3 * qk + 2 * av


def softmax_ops(elements: int) -> int:
    """Element-wise ops of a softmax over ``elements`` logits (``SOFTMAX_OPS`` each)."""
    return SOFTMAX_OPS * elements


def qkv_gamma_params(channels: int, key_channels: int) -> int:
    """Parameters of query, key (C -> Ck) and value (C -> C) 1x1 convs with bias, plus the scalar gamma of
    a residual ``out = gamma * y + x`` (CCNet's criss-cross, the linear-attention block):
    2 (C Ck + Ck) + (C C + C) + 1."""
    return 2 * conv1x1_params(channels, key_channels) + conv1x1_params(channels, channels) + 1


def cost_train_3x(
    params: int,
    macs: Mapping[str, int],
    elementwise: Mapping[str, int],
    peak: Mapping[str, int],
    padded: tuple[int, int],
) -> Cost:
    """The :class:`Cost` of a block whose every matrix op has an input requiring grad in training, so that
    its backward costs twice its forward (grad of each operand): train MACs = 3 x forward MACs, by term."""
    return Cost(
        params=params,
        macs=dict(macs),
        train_macs={k: 3 * v for k, v in macs.items()},
        elementwise=dict(elementwise),
        peak_bytes=dict(peak),
        padded=padded,
    )
