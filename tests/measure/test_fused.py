"""measure.flops: stock PyTorch's fused attention ops are counted exactly, and nothing is a silent zero.

Hand arithmetic (B = 2, L = 5 positions, E = 16 channels, 2 heads, feed-forward F = 32):
  q, k, v projections  3 B L E^2      = 3 * 2 * 5 * 256     = 7680
  q k^T and p v        2 B L L E      = 2 * 2 * 5 * 5 * 16  = 1600   (heads x head_dim = E)
  output projection    B L E^2        = 2 * 5 * 256         = 2560
  -> nn.MultiheadAttention: 11840 MACs
  feed-forward         2 B L E F      = 2 * 2 * 5 * 16 * 32 = 10240
  -> nn.TransformerEncoderLayer: 22080 MACs
Train (forward + backward, input requiring grad): every product's backward computes both operand
gradients, two products of the same size each: 3x the forward.
"""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof import targets as blocks
from isaprof.measure import count_flops, step, track_peak
from isaprof.measure.flops import FORMULAS, KNOWN_FREE, is_free

B, L, E, HEADS, F = 2, 5, 16, 2, 32
MHA_MACS = 3 * B * L * E * E + 2 * B * L * L * E + B * L * E * E  # 11840
LAYER_MACS = MHA_MACS + 2 * B * L * E * F  # 22080


class _SelfAttention(nn.Module):
    """nn.MultiheadAttention as a (B, L, E) -> (B, L, E) module: query = key = value."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(E, HEADS, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]


def _layer() -> nn.Module:
    return nn.TransformerEncoderLayer(E, HEADS, F, batch_first=True)


@pytest.mark.parametrize(
    ("make", "fused_op", "macs"),
    [
        (_SelfAttention, "_native_multi_head_attention", MHA_MACS),
        (_layer, "_transformer_encoder_layer_fwd", LAYER_MACS),
    ],
)
def test_fused_inference_path_counted_exactly(make, fused_op: str, macs: int) -> None:
    torch.manual_seed(0)
    module, x = make(), torch.randn(B, L, E)  # (B, L, E)
    res = count_flops(step(module, x, "inference"))  # eval + no_grad: torch takes the fused kernel
    assert res.by_op == {fused_op: 2 * macs}
    assert res.macs == macs
    assert res.uncounted == {}


@pytest.mark.parametrize(("make", "macs"), [(_SelfAttention, MHA_MACS), (_layer, LAYER_MACS)])
def test_train_unfused_path_counted_exactly(make, macs: int) -> None:
    torch.manual_seed(0)
    res = count_flops(step(make(), torch.randn(B, L, E), "train"))  # forward + backward through mm / bmm
    assert res.macs == 3 * macs
    assert res.uncounted == {}


def test_fused_path_agrees_with_unfused_forward() -> None:
    """The same module's forward with grad enabled (unfused: mm, bmm) counts what our fused formula says."""
    torch.manual_seed(0)
    module, x = _layer().eval(), torch.randn(B, L, E)
    fused = count_flops(step(module, x, "inference"))
    unfused = count_flops(lambda: module(x))  # grad enabled: the fast path is off
    assert "_transformer_encoder_layer_fwd" not in unfused.by_op
    assert fused.macs == unfused.macs == LAYER_MACS


def test_distinct_query_key_value_fused_op() -> None:
    # The fused op with query, key and value distinct tensors (the CPU kernel needs equal shapes):
    # three separate projections, same 11840 MACs; the module's unfused path agrees.
    attn = nn.MultiheadAttention(E, HEADS, batch_first=True).eval()
    q, k, v = torch.randn(B, L, E), torch.randn(B, L, E), torch.randn(B, L, E)
    weights = (attn.in_proj_weight, attn.in_proj_bias, attn.out_proj.weight, attn.out_proj.bias)
    with torch.no_grad():
        fused = count_flops(lambda: torch._native_multi_head_attention(q, k, v, E, HEADS, *weights))
    unfused = count_flops(lambda: attn(q, k, v))  # grad enabled: no fast path
    assert fused.by_op == {"_native_multi_head_attention": 2 * MHA_MACS}
    assert unfused.macs == MHA_MACS and "_native_multi_head_attention" not in unfused.by_op


def test_fused_ops_count_on_fake_tensors() -> None:
    with torch.device("meta"):
        module = _layer()
    with FakeTensorMode(allow_non_fake_inputs=True):
        module = module.to_empty(device="cpu")
        res = count_flops(step(module, torch.empty(B, L, E), "inference"))
    assert res.by_op == {"_transformer_encoder_layer_fwd": 2 * LAYER_MACS}


def test_formulas_do_not_touch_torch_global_registry() -> None:
    from torch.utils import flop_counter

    assert not set(FORMULAS) & set(flop_counter.flop_registry)


@torch.library.custom_op("isaprof_test::my_matmul", mutates_args=())
def _my_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a @ b


@_my_matmul.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty(a.shape[0], b.shape[1])


def test_unknown_matmul_like_op_is_reported() -> None:
    """A user's own kernel does matrix work the counter cannot see: it is listed with its calls."""
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    res = count_flops(lambda: (_my_matmul(a, b), _my_matmul(a, b), torch.softmax(a, -1), a.t() + 1))
    assert res.flops == 0
    assert res.uncounted == {"isaprof_test.my_matmul": 2}  # softmax, t, add: free, not listed


def test_free_list() -> None:
    aten = torch.ops.aten
    for op in (
        aten.add,
        aten.view,
        aten.transpose,
        aten._softmax,
        aten.native_layer_norm,
        aten.sum,
        aten.cat,
    ):
        assert is_free(op), op
    for op in (aten.mm, aten.bmm, aten.convolution, aten._native_multi_head_attention, aten.linalg_inv):
        assert not is_free(op), op
    assert not {"mm", "bmm", "addmm", "convolution", "convolution_backward"} & KNOWN_FREE


@pytest.mark.parametrize("name", blocks.names())
def test_no_builtin_block_leaves_anything_uncounted(name: str) -> None:
    """Every built-in block, impl and mode: all matrix work has a formula (nothing listed)."""
    options = {"factor": (2, 2)} if name == "isa" else {}
    for impl in blocks.spec(name).impls:
        for mode in ("inference", "train"):
            with FakeTensorMode(allow_non_fake_inputs=True):
                module = blocks.build(name, 16, impl=impl, **options)
                res = count_flops(step(module, torch.empty(1, 16, 6, 8), mode))  # (B, C, H, W), fake
            assert res.uncounted == {}, (impl, mode, res.uncounted)


@pytest.mark.parametrize(
    ("make", "peak", "tensors"), [(_SelfAttention, 3840, 640 + 200), (_layer, 3840, 640)]
)
def test_fused_inference_peak_includes_its_scratch(make, peak: int, tensors: int) -> None:
    """The fused ops allocate inside (measure.scratch); fp32, (B, L, E) = 2 * 5 * 16 * 4 = 640 B:
    peak at the (B, L, 3E) projection beside the packed q, k, v: 6 * 640 = 3840 B, above q, k, v +
    scores (B * 2 * L * L * 4 = 400) = 2320 and, with weights, q, k, v + scores + copy + output = 3600;
    the feed-forward (640 + 2 * 5 * 32 * 4 + 640 = 2560) stays below. The tensors alone: the output
    (+ the averaged weights, 200 B)."""
    torch.manual_seed(0)
    module, x = make(), torch.randn(B, L, E)
    res = track_peak(step(module, x, "inference"))
    assert (res.peak, res.tensor_peak) == (peak, tensors)
    assert not res.unmodelled and len(res.scratch_ops) == 1
