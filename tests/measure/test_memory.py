"""measure.memory: exact bytes of hand-computed sequences, views, real == fake, backward, big fake sizes."""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.measure import step, track_peak
from isaprof.measure.memory import round_up


def _sequence():
    a = torch.empty(100)  # 400 B -> live 400
    b = torch.empty(50)  # 200 B -> live 600 (the peak)
    del a  # live 200
    c = torch.empty(10)  # 40 B -> live 240
    b.view(5, 10).add_(1)  # a view and an in-place op: no allocation
    b[:5].mul_(2)
    return b, c


def test_hand_computed_sequence():
    res = track_peak(_sequence)
    assert (res.peak, res.end, res.allocated, res.allocations) == (600, 240, 640, 3)


def test_cuda_rounding():
    # Each allocation rounded up to 512 B: a, b -> 1024 peak; b, c -> 1024 at the end.
    res = track_peak(_sequence, round_to=512)
    assert (res.peak, res.end) == (1024, 1024)
    assert round_up(0, 512) == 0 and round_up(1, 512) == 512 and round_up(512, 512) == 512


def test_views_not_double_counted_and_preexisting_ignored():
    x = torch.empty(4, 8)  # allocated before: never counted

    def fn():
        t = x.t()  # view of x: nothing
        y = t.contiguous()  # a copy: 128 B
        return y, y.view(-1), y[1:], y.transpose(0, 1)

    res = track_peak(fn)
    assert (res.peak, res.allocations) == (128, 1)


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


def test_backward_counts_gradients():
    torch.manual_seed(0)
    model, x = _mlp(), torch.randn(3, 8)
    res = track_peak(step(model, x, "train"))
    # Alive at the end: output 3x4 (48 B) + grads W2 4x16 (256) + b2 (16) + W1 16x8 (512) + b1 (64)
    # + input grad 3x8 (96) = 992 B. Saved activations and the ones_like seed are freed by then.
    assert res.end == 48 + 256 + 16 + 512 + 64 + 96
    assert res.peak > res.end
    # A second call re-allocates its gradients (step sets old ones to None): same figures.
    assert track_peak(step(model, x, "train")) == res


def test_real_equals_fake():
    torch.manual_seed(0)
    real = {mode: track_peak(step(_mlp(), torch.randn(3, 8), mode)) for mode in ("inference", "train")}
    with torch.device("meta"):
        meta_model = _mlp()
    with FakeTensorMode(allow_non_fake_inputs=True):
        model = meta_model.to_empty(device="cpu")
        fake = {mode: track_peak(step(model, torch.empty(3, 8), mode)) for mode in ("inference", "train")}
    assert fake == real
    assert real["inference"].peak == 192 + 192  # h1 = addmm (3x16) and relu(h1) live together


def test_dense_attention_256x256_c512_on_fake_tensors():
    n, ck = 256 * 256, 256  # (H*W) positions, C=512 halved for keys/values
    with FakeTensorMode(allow_non_fake_inputs=True):
        q, k, v = (torch.empty(1, n, ck) for _ in range(3))  # (B, N, Ck)

        def attention():
            with torch.no_grad():
                sim = torch.softmax(q @ k.transpose(1, 2), dim=-1)  # (B, N, N): 16 GiB
                return sim @ v  # (B, N, Ck)

        res = track_peak(attention)
    assert res.peak == 2 * n * n * 4  # the affinity and its softmax: 32 GiB
    assert res.end == n * ck * 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_peak_matches_rounded_tracker():
    from isaprof.measure import cuda_peak

    def sequence(device):
        def fn():
            a = torch.empty(100, device=device)  # 400 B -> one 512 B block
            b = torch.empty(1000, device=device)  # 4000 B -> 4096 B
            del a
            return b, torch.empty(10, device=device)  # 40 B -> 512 B

        return fn

    assert cuda_peak(sequence("cuda")) == track_peak(sequence("cpu"), round_to=512).peak == 512 + 4096
