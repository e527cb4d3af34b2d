"""measure.modules: per-module MACs and peak bytes; the rows sum exactly to the independent totals."""

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof import targets as blocks
from isaprof.measure import count_flops, step, track_peak
from isaprof.measure.modules import breakdown, table


class _Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x).flatten(2)  # (B, 6, HW)
        return y @ y.transpose(1, 2)  # (B, 6, 6): the inner module's own bmm


class _Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.Conv2d(3, 4, 1, bias=False)
        self.inner = _Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.nn.functional.conv2d(x, self.pre.weight)  # the root's own conv, before calling a child
        return self.inner(self.pre(x) + z)


def test_hand_model_attribution_forward_and_backward() -> None:
    # B = 1, 5x5 = 25 positions. pre: 25 x 3 x 4 = 300 MACs; the root's inline conv also 300;
    # inner.conv: 25 x 4 x 6 = 600; inner's bmm (6, 25) x (25, 6) = 900.
    model, x = _Outer(), torch.randn(1, 3, 5, 5)
    rows = {r.module: r for r in breakdown(model, step(model, x, "inference")).rows}
    assert {n: r.self_macs for n, r in rows.items()} == {"": 300, "pre": 300, "inner": 900, "inner.conv": 600}
    assert {n: r.macs for n, r in rows.items()} == {"": 2100, "pre": 300, "inner": 1500, "inner.conv": 600}
    assert {n: r.params for n, r in rows.items()} == {"": 12 + 24, "pre": 12, "inner": 24, "inner.conv": 24}
    assert {n: r.depth for n, r in rows.items()} == {"": 0, "pre": 1, "inner": 1, "inner.conv": 2}
    # train: each backward is charged to the module whose forward made the node. Every product's
    # backward computes both gradients (2x its forward), except the root's inline conv and pre, whose
    # input gradient is needed (x requires grad) -> also 2x. So every row is 3x.
    rows = {r.module: r for r in breakdown(model, step(model, x.clone(), "train")).rows}
    expected = {"": 900, "pre": 900, "inner": 2700, "inner.conv": 1800}
    assert {n: r.self_macs for n, r in rows.items()} == expected


def test_peak_attribution_of_the_allocating_module() -> None:
    # inference, 5x5, fp32: pre's output (400 B) dies once added to z. At the peak (the bmm output) live:
    # the root's z and sum (2 x 400 B), inner.conv's output (1, 6, 25) = 600 B (flatten is a view of it)
    # and inner's bmm output (1, 6, 6) = 144 B: 1544 B.
    model, x = _Outer(), torch.randn(1, 3, 5, 5)
    b = breakdown(model, step(model, x, "inference"))
    peak = {r.module: r.peak_bytes for r in b.rows}
    assert b.peak_bytes == track_peak(step(model, x, "inference")).peak
    assert sum(peak.values()) == b.peak_bytes
    assert peak == {"": 800, "pre": 0, "inner": 144, "inner.conv": 600}


def _options(name: str) -> dict:
    return {"factor": (2, 2)} if name == "isa" else {}


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("name", blocks.names())
def test_sums_exact_for_every_builtin_block(name: str, mode: str) -> None:
    for impl in blocks.spec(name).impls:
        with FakeTensorMode(allow_non_fake_inputs=True):
            module = blocks.build(name, 16, impl=impl, **_options(name))
            x = torch.empty(2, 16, 6, 8)  # (B, C, H, W), fake
            b = breakdown(module, step(module, x, mode))
            macs = count_flops(step(module, x, mode)).macs
            peak = track_peak(step(module, x, mode)).peak
        assert b.macs == macs > 0
        assert b.peak_bytes == peak > 0
        assert sum(r.self_macs for r in b.rows) == macs, impl
        assert sum(r.peak_bytes for r in b.rows) == peak, impl
        root = b.rows[0]
        assert (root.module, root.depth, root.macs) == ("", 0, macs)
        assert root.params == sum(p.numel() for p in module.parameters())
        for r in b.rows:  # inclusive MACs: the module's own plus its direct children's
            children = [c for c in b.rows if c.depth == r.depth + 1 and c.module.startswith(r.module)]
            if r.module:
                children = [c for c in children if c.module.startswith(r.module + ".")]
            assert r.macs == r.self_macs + sum(c.macs for c in children), (impl, r.module)


def test_table_lists_every_row_and_the_total() -> None:
    model = _Outer()
    b = breakdown(model, step(model, torch.randn(1, 3, 5, 5), "inference"))
    text = table(b)
    assert "(root)" in text and "\n  inner " in text and "\n    inner.conv " in text
    assert text.splitlines()[-1].split()[:2] == ["total", "2,100"]
    assert "inner.conv" not in table(b, max_depth=1)
