"""measure.flops: exact FLOP counts, uncounted-op detection, the CPU sdpa formulas, fvcore agreement."""

import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel

from isaprof.measure.flops import count_flops, fvcore_count, is_matmul_like


def test_linear_conv_bmm_exact():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 16)
    conv = torch.nn.Conv2d(3, 4, kernel_size=3)
    x, img = torch.randn(3, 8), torch.randn(1, 3, 5, 5)
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    # Linear: 3 rows x 8 in x 16 out = 384 MACs.  Conv 3x3, no padding on 5x5 -> 3x3 outputs:
    # 9 positions x 4 out x 3 in x 9 taps = 972 MACs.  bmm: 2 x 3 x 4 x 5 = 120 MACs.
    res = count_flops(lambda: (lin(x), conv(img), torch.bmm(a, b)))
    assert res.by_op == {"addmm": 2 * 384, "convolution": 2 * 972, "bmm": 2 * 120}
    assert res.flops == 2 * (384 + 972 + 120)
    assert res.macs == 384 + 972 + 120
    assert res.uncounted == {}


def test_linear_backward_exact():
    lin = torch.nn.Linear(8, 16)
    x = torch.randn(3, 8, requires_grad=True)

    def step():
        out = lin(x)
        out.backward(torch.ones_like(out))

    # forward 384 MACs; backward grad_input (3x16 @ 16x8) 384 + grad_weight (16x3 @ 3x8) 384.
    assert count_flops(step).macs == 3 * 384


def test_matrix_vector_formulas():
    # torch 2.13 has no formula for aten.mv / addmv / dot / addbmm; ours: mv 4 x 5 = 20 MACs,
    # addmv the same 20, dot 5, addbmm 3 x (2 x 4) x (4 x 6) = 144.
    res = count_flops(
        lambda: (
            torch.mv(torch.randn(4, 5), torch.randn(5)),
            torch.addmv(torch.randn(4), torch.randn(4, 5), torch.randn(5)),
            torch.dot(torch.randn(5), torch.randn(5)),
            torch.addbmm(torch.randn(2, 6), torch.randn(3, 2, 4), torch.randn(3, 4, 6)),
        )
    )
    assert res.by_op == {"mv": 40, "addmv": 40, "dot": 10, "addbmm": 288}
    assert res.uncounted == {}


def test_is_matmul_like():
    for name in ("mm", "bmm", "addmm", "convolution_backward", "_scaled_dot_product_flash_attention_for_cpu"):
        assert is_matmul_like(name), name
    for name in ("add", "softmax", "_softmax", "relu", "view", "native_batch_norm", "mul"):
        assert not is_matmul_like(name), name


def _sdpa_step(q, k, v):
    def step():
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, D)
        out.backward(torch.ones_like(out))

    return step


def test_cpu_fused_sdpa_counted_forward_and_backward():
    b, h, n, m, d = 2, 3, 16, 20, 8
    q = torch.randn(b, h, n, d, requires_grad=True)
    k, v = torch.randn(b, h, m, d), torch.randn(b, h, m, d)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        res = count_flops(_sdpa_step(q, k, v))
    fwd = b * h * (n * m * d + n * m * d)  # q k^T + p v = 7680 MACs
    bwd = b * h * (3 * n * m * d + 2 * n * m * d)  # recompute, dP, dV, dQ, dK = 19200 MACs
    assert res.by_op == {
        "_scaled_dot_product_flash_attention_for_cpu": 2 * fwd,
        "_scaled_dot_product_flash_attention_for_cpu_backward": 2 * bwd,
    }
    assert res.uncounted == {}


def test_fake_tensors_count_like_real():
    b, h, n, d = 1, 2, 12, 4
    q = torch.randn(b, h, n, d, requires_grad=True)  # (B, H, N, D)
    real = count_flops(_sdpa_step(q, q.detach(), q.detach()))
    with FakeTensorMode(allow_non_fake_inputs=True):
        q = torch.empty(b, h, n, d, requires_grad=True)  # (B, H, N, D)
        k, v = torch.empty(b, h, n, d), torch.empty(b, h, n, d)
        fake = count_flops(_sdpa_step(q, k, v))
    assert fake == real


class _ConvBNMatmul(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, kernel_size=1)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x)).flatten(2)  # (B, 4, HW)
        return torch.matmul(y.transpose(1, 2), y)  # (B, HW, HW)


def test_fvcore_agrees_on_common_ops_and_adds_batchnorm():
    model, x = _ConvBNMatmul().eval(), torch.randn(2, 3, 5, 5)
    ours = count_flops(lambda: model(x))
    fv = fvcore_count(model, (x,))
    # conv 1x1: 2 x 25 positions x 4 out x 3 in = 600 MACs; matmul: 2 x 25 x 4 x 25 = 5000 MACs.
    assert fv.by_op["conv"] == ours.by_op["convolution"] // 2 == 600
    assert fv.by_op["matmul"] == ours.by_op["bmm"] // 2 == 5000
    # Known difference: fvcore counts BatchNorm (element-wise, not a MAC for us); FlopCounterMode does not.
    assert "batch_norm" in fv.counted_ops and "native_batch_norm" not in ours.by_op
    assert fv.macs == ours.macs + fv.by_op["batch_norm"]
    assert fv.unsupported == {}


def test_fvcore_sees_no_sdpa_formula():
    class Attn(torch.nn.Module):
        def forward(self, q):
            return F.scaled_dot_product_attention(q, q, q)

    fv = fvcore_count(Attn(), (torch.randn(1, 1, 6, 4),))
    assert fv.macs == 0
    assert any("scaled_dot_product" in op for op in fv.unsupported)
