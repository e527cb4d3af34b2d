"""Mode "step": one training iteration in absolute bytes, checked against a hand-written loop on real CPU
tensors under the storage tracker, to the byte."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.measure.memory import track_peak
from isaprof.measure.training import (
    SoftmaxSavesInput,
    TrainingStep,
    bucket_sizes,
    largest_batch,
    loss_of,
    measure_step,
    mmseg_2020,
    resolve,
)


class Logits(nn.Module):
    """A small segmentation-like network returning (B, 5, H/2, W/2) logits."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Conv2d(8, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.stem(x))))[:, :, ::2, ::2]


class Losses(nn.Module):
    """Returns a dict of losses (``loss*`` keys summed) and a non-loss entry."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        y = self.conv(x)
        return {"loss_a": y.square().mean(), "loss_b": torch.softmax(y, 1).mean(), "acc": y.detach().sum()}


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def _hand(model: nn.Module, keep: bool, losses: bool) -> int:
    """A plain training loop (SGD momentum, foreach), its steady-state total: resident bytes + peak."""
    x, y = torch.randn(2, 3, 16, 16), torch.randint(0, 5, (2, 16, 16))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=True)

    def iteration() -> None:
        opt.zero_grad(set_to_none=not keep)
        if losses:
            out = model(x)
            loss = out["loss_a"] + out["loss_b"]
            del out
        else:
            logits = F.interpolate(model(x), size=(16, 16), mode="bilinear", align_corners=False)
            loss = F.cross_entropy(logits, y, ignore_index=255)
            del logits
        loss.backward()
        opt.step()

    iteration()
    opt.zero_grad(set_to_none=not keep)
    state = [v for s in opt.state.values() for v in s.values()]
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    resident = _bytes([*model.parameters(), *model.buffers(), *grads, *state, x, y])
    return resident + track_peak(iteration).tensor_peak


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("net", [Logits, Losses])
def test_total_equals_a_hand_written_loop_on_real_tensors(net: type[nn.Module], keep: bool) -> None:
    torch.manual_seed(0)
    expected = _hand(net(), keep, losses=net is Losses)
    real = measure_step(TrainingStep(net(), torch.randn(2, 3, 16, 16), resolve(keep_grads=keep)), cuda=False)
    assert real.total == expected
    with FakeTensorMode():
        fake = measure_step(TrainingStep(net(), torch.empty(2, 3, 16, 16), resolve(keep_grads=keep)))
    assert fake.total == expected  # fake tensors: the same bytes
    params = sum(p.numel() * 4 for p in net().parameters())
    assert real.resident["params"] == real.resident["optimizer_state"] == params  # one momentum buffer each
    assert real.resident["grads"] == (params if keep else 0)
    assert real.resident["batch"] == 2 * 3 * 16 * 16 * 4 + 2 * 16 * 16 * 8  # float input + int64 labels


def test_parts_and_settings() -> None:
    torch.manual_seed(0)
    m = measure_step(TrainingStep(Logits(), torch.randn(2, 3, 16, 16), resolve()), cuda=True)
    assert m.phase == "backward" and m.op.startswith("aten.")
    assert m.activations + m.transient == m.peak
    assert "forward:stem" in m.by_owner  # allocations charged to the module's children
    assert m.cuda_allocated is not None and m.cuda_reserved is not None
    assert m.cuda_allocated >= m.total and m.cuda_reserved >= m.cuda_allocated  # 512-byte blocks, segments
    adam = measure_step(TrainingStep(Logits(), torch.randn(2, 3, 16, 16), resolve(optimizer="adamw")))
    params = sum(p.numel() * 4 for p in Logits().parameters())
    assert adam.resident["optimizer_state"] == 2 * params + 6 * 4  # exp_avg, exp_avg_sq, a 0-d step (x6)
    none = measure_step(TrainingStep(Logits(), torch.randn(2, 3, 16, 16), resolve(optimizer="none")))
    assert none.resident["optimizer_state"] == 0


def test_softmax_saving_its_input_holds_the_logits() -> None:
    """torch < PR 65242: log_softmax's input (the resized logits, 2 x 5 x 16 x 16 x 4 = 10240 bytes) stays
    alive until its backward, beside its output (10240) and the loss (4): the peak moves there and grows;
    the gradient is unchanged."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    today = measure_step(TrainingStep(Logits(), x.clone(), resolve()), cuda=False)
    old = measure_step(TrainingStep(Logits(), x.clone(), resolve(softmax_saves_input=True)), cuda=False)
    assert old.by_owner["loss"] == 2 * 10240 + 4 and today.by_owner["loss"] == 4
    assert old.op == "aten._log_softmax_backward_data" and old.total > today.total
    z = torch.randn(3, 4, requires_grad=True)
    with SoftmaxSavesInput():
        (F.log_softmax(z, dim=1) * torch.arange(4.0)).sum().backward()
    expected = torch.autograd.grad((F.log_softmax(z, dim=1) * torch.arange(4.0)).sum(), z)[0]
    torch.testing.assert_close(z.grad, expected)


def test_ddp_buckets_and_recipe() -> None:
    params = [torch.empty(300_000), torch.empty(10), torch.empty(7_000_000)]  # reversed: 28 MB, 40 B, 1.2 MB
    assert bucket_sizes(params, 25.0) == [28_000_000, 1_200_040]
    assert bucket_sizes(params, 0) == []
    r = mmseg_2020()
    assert (r.optimizer, r.keep_grads, r.foreach, r.bucket_mib, r.softmax_saves_input) == (
        "sgd", True, False, 25.0, True,
    )  # fmt: skip
    assert resolve("mmseg-2020", keep_grads=False).keep_grads is False  # a given setting overrides
    with pytest.raises(ValueError, match="unknown recipe"):
        resolve("mmseg-2019")


def test_loss_contract() -> None:
    labels = torch.zeros(1, 4, 4, dtype=torch.int64)
    assert loss_of(nn.Module(), torch.tensor(3.0), labels) == 3.0
    assert loss_of(nn.Module(), {"loss_x": torch.tensor(1.0), "loss_y": torch.tensor(2.0)}, labels) == 3.0
    weighted = nn.Module()
    weighted.loss_weights = {"decode": 1.0, "aux": 0.4}
    logits = torch.zeros(1, 3, 2, 2)  # uniform: each cross-entropy is log(3)
    total = loss_of(weighted, {"decode": logits, "aux": logits}, labels)
    torch.testing.assert_close(total, torch.tensor(1.4 * torch.log(torch.tensor(3.0)).item()))
    with pytest.raises(ValueError, match="step mode"):
        loss_of(nn.Module(), "text", labels)


def test_largest_batch_search() -> None:
    def predict(b: int) -> int:
        return 1000 + 300 * b + 7 * b * b

    for capacity in (999, 1306, 1307, 5000, 123_456, 10**9):
        expected = max((b for b in range(1, 20_000) if predict(b) <= capacity), default=0)
        assert largest_batch(predict, capacity) == min(expected, 1 << 14)
