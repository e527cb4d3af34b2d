"""Closed forms through resizing, adaptive pooling, padding and cropping (isaprof/symbolic/trace.py)."""

from __future__ import annotations

import sys

import pytest
import sympy
import torch
import torch.nn.functional as F
from torch import nn

from isaprof.cli import main
from isaprof.symbolic.trace import H, NotSymbolic, W, ceiling_form, derive, holds, numeric_count
from tests import REPO

UNTRACED = [(9, 13), (12, 10), (17, 8)]  # odd and even; traced at 16x16


class Resize(nn.Module):
    """Stride-2 3x3 conv (C = 4), resized back to the input's size: MACs = 144 ceil(H/2) ceil(W/2)."""

    def __init__(self, mode: str = "bilinear", align_corners: bool | None = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 3, stride=2, padding=1, bias=False)
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return F.interpolate(y, size=x.shape[-2:], mode=self.mode, align_corners=self.align_corners)


class Upsample(nn.Module):
    """nn.Upsample(scale_factor=2) then a 1x1 conv (C = 4): MACs = 16 (2H)(2W) = 64 H W."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.up, self.conv = nn.Upsample(scale_factor=2, mode=mode), nn.Conv2d(4, 4, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.up(x))


class PadCrop(nn.Module):
    """Reflect-pad by 2, 5x5 conv (no padding: back to H x W), crop a one-pixel border: MACs 400 H W."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 5, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (2, 2, 2, 2), mode="reflect"))[:, :, 1:-1, 1:-1]


def _exact(d, factory, channels: int = 4) -> None:  # noqa: ANN001
    for size in UNTRACED:
        want = numeric_count(factory, channels, size, 1, "inference")
        assert int(d.macs.expression.subs({H: size[0], W: size[1]})) == want, size


@pytest.mark.parametrize(
    "mode,align_corners", [("bilinear", False), ("bilinear", True), ("nearest", None), ("bicubic", False)]
)
def test_interpolate_to_the_input_size_derives_exact_at_odd_and_even_sizes(mode: str, align_corners) -> None:  # noqa: ANN001
    def factory() -> nn.Module:
        return Resize(mode, align_corners)

    d = derive(factory, 4, (16, 16))
    assert d.macs.expression == 144 * sympy.ceiling(H / 2) * sympy.ceiling(W / 2)  # 9 C^2, stride 2
    assert d.macs.valid_when == () and d.bytes_moved is not None
    _exact(d, factory)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_scale_factor_two_is_not_a_constant(mode: str) -> None:
    d = derive(lambda: Upsample(mode), 4, (16, 16), bytes_moved=False)
    assert d.macs.expression == 64 * H * W and d.macs.valid_when == ()


def test_pyramid_pooling_and_reflect_padding_with_cropping() -> None:
    class PSP(nn.Module):  # AdaptiveAvgPool2d((1, 2, 3, 6)), 1x1 conv each, resized back, concatenated
        def __init__(self) -> None:
            super().__init__()
            pools = (nn.AdaptiveAvgPool2d(s) for s in (1, 2, 3, 6))
            self.stages = nn.ModuleList(nn.Sequential(p, nn.Conv2d(4, 4, 1)) for p in pools)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            up = [F.interpolate(s(x), size=x.shape[-2:], mode="bilinear") for s in self.stages]
            return torch.cat([x, *up], 1)

    d = derive(PSP, 4, (16, 16), bytes_moved=False)
    assert d.macs.expression == 16 * (1 + 4 + 9 + 36)  # the pooled maps only: 800, at every size
    _exact(d, PSP)
    d = derive(PadCrop, 4, (16, 16), bytes_moved=False)
    assert d.macs.expression == 400 * H * W  # 25 C^2 per output pixel of the H x W conv output
    _exact(d, PadCrop)


def test_window_attention_plugin_derives_in_ceilings_without_a_traceback() -> None:
    sys.path.insert(0, str(REPO / "examples" / "window_attention" / "src"))
    try:
        from window_attention import WindowAttention
    finally:
        sys.path.pop(0)

    def factory() -> nn.Module:
        return WindowAttention(16, window=4)

    d = derive(factory, 16, (16, 16), bytes_moved=False)
    # per window of 16 pixels: qkv + proj 16 * 64 MACs a pixel, attention 16 * 16 * 32 per window
    assert d.macs.expression == 24576 * sympy.ceiling(H / 4) * sympy.ceiling(W / 4)
    for size in UNTRACED:
        want = numeric_count(factory, 16, size, 1, "inference")
        assert int(d.macs.expression.subs({H: size[0], W: size[1]})) == want


def test_guards_that_cannot_be_evaluated_are_skipped_and_mod_padding_reads_as_ceilings() -> None:
    assert holds([sympy.Eq(sympy.Mod(H, sympy.floor(H / 7)), 0)], {H: 3}) is None  # Mod by zero at H = 3
    assert holds([H >= 7, sympy.Eq(sympy.Mod(H, 7), 0)], {H: 14}) is True
    padded = sympy.expand(3 * (H + sympy.Mod(6 * H, 7)) * (W + sympy.Mod(6 * W, 7)))
    assert ceiling_form(padded) == 147 * sympy.ceiling(H / 7) * sympy.ceiling(W / 7)


def test_refusal_names_the_op_without_the_prefix_twice() -> None:
    class Spectrum(nn.Module):  # an FFT: multiplies but has no FLOP formula
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.fft.rfft2(x).real

    with pytest.raises(NotSymbolic) as e:
        derive(Spectrum, 4, (16, 16), bytes_moved=False)
    assert str(e.value).startswith("op aten._fft_r2c ") and "aten.aten" not in str(e.value)


def test_cli_formula_on_an_import_path_that_resizes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["formula", "tests.symbolic.test_resize:Resize", "--channels", "4", "--size", "16x16"]) == 0
    out = capsys.readouterr().out
    assert "MACs = 144*ceiling(H/2)*ceiling(W/2)" in out and "no bytes-moved counter" not in out
