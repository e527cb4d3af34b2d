"""Formulas dense, non_local, isa, axial: parameters and MACs (forward; forward + backward) equal, as exact
integers, to sum(p.numel()) and FlopCounterMode / 2 on the real modules (run on fake CPU tensors: the
counts depend on shapes only, and fake runs take milliseconds), for both impls and sdpa backends.

Hand check of one value (dense, B=1, C=8, Ck=Cv=4, 2x3 map, N=6): convs 6*(8*4 + 8*4 + 4*8) = 576,
QK^T 6*6*4 = 144, AV 144 -> 864 MACs.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel

from isaprof.formulas import Config, cost
from isaprof.formulas import common as fc
from isaprof.formulas.isa import isa_geometry
from isaprof.measure.flops import count_flops
from isaprof.measure.protocol import step
from isaprof.targets import build
from tests.formulas import config

BACKENDS = {None: None, "math": SDPBackend.MATH, "flash": SDPBackend.FLASH_ATTENTION}
CASES = [
    ("dense", {}),
    ("non_local", {}),
    ("non_local", {"sub_sample": True}),
    ("isa", {"factor": (8, 8)}),
    ("isa", {"factor": (3, 5)}),
    ("isa", {"factor": (1, 1)}),
    ("isa", {"factor": (3, 5), "masked": True}),
    ("axial", {}),
]
IMPLS = [("naive", None), ("sdpa", None), ("sdpa", "math"), ("sdpa", "flash")]


def _measured_macs(name: str, opts: dict, cfg: Config, mode: str) -> tuple[int, int]:
    torch.manual_seed(0)
    m = build(name, cfg.channels, cfg.key_channels, cfg.value_channels, impl=cfg.impl, **opts)
    ctx = sdpa_kernel([BACKENDS[cfg.backend]]) if cfg.backend else contextlib.nullcontext()
    with FakeTensorMode(allow_non_fake_inputs=True), ctx:  # shapes only: fast at 33 x 65
        x = torch.randn(cfg.batch, cfg.channels, cfg.height, cfg.width)
        counted = count_flops(step(m, x, mode))
    assert counted.uncounted == {}, counted.uncounted  # nothing matmul-like silently counted as 0
    assert counted.flops % 2 == 0
    return counted.macs, sum(p.numel() for p in m.parameters())


GRID = [((7, 9), 4, 4, impl, backend) for impl, backend in IMPLS]  # every kernel
GRID += [(size, ck, cv, "naive", None) for size, ck, cv in [((7, 9), 4, 6), ((33, 65), 4, 4)]]
GRID += [(size, ck, cv, "sdpa", None) for size, ck, cv in [((7, 9), 4, 6), ((33, 65), 4, 4)]]  # math, flash


@pytest.mark.parametrize("name,opts", CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("size,ck,cv,impl,backend", GRID)
def test_macs_and_params_exact(name, opts, size, ck, cv, impl, backend) -> None:
    cfg = config(
        name,
        size,
        batch=2,
        channels=8,
        key_channels=ck,
        value_channels=cv,
        dtype="float32",
        impl=impl,
        backend=backend,
        options=tuple(opts.items()),
    )
    c = cost(cfg)
    for mode, analytic in (("inference", c.total_macs), ("train", c.total_train_macs)):
        macs, params = _measured_macs(name, opts, cfg, mode)
        assert (macs, params) == (analytic, c.params), mode


def test_hand_computed_dense() -> None:
    c = cost(config("dense", (2, 3), batch=1, channels=8, key_channels=4, value_channels=4))
    # N = 6 positions; query and key: two 1x1 convs each, 6 * (8*4 + 4*4) = 288
    expected = {"query_conv": 288, "key_conv": 288, "value_conv": 192, "out_conv": 192, "qk": 144, "av": 144}
    assert dict(c.macs) == expected
    assert c.total_macs == 1248 and c.flops == 2496
    # train: convs x3 (forward, grad_input, grad_weight); naive attention forward + 2 x forward
    assert c.total_train_macs == 3 * 960 + 3 * 288
    # params (no biases): query = key = 8*4 + BN 8 + 4*4 + BN 8 = 64; value 8*4; out 4*8 + BN 16
    assert c.params == 64 + 64 + 32 + 48
    assert c.elementwise["softmax"] == 5 * 36 and c.padded == (2, 3)


def test_fused_backward_follows_torch_convention() -> None:
    cfg = config("dense", (2, 3), batch=1, channels=8, key_channels=4, value_channels=4, impl="sdpa")
    math, fused = (cost(replace(cfg, backend=backend)) for backend in ("math", "flash"))
    assert math.train_macs["attention"] == 3 * 288  # forward + 4 bmm's of the backward
    assert fused.train_macs["attention"] == 288 + 3 * 144 + 2 * 144  # recompute QK^T, dP, dV, dQ, dK


def test_isa_geometry_and_padded_size() -> None:
    assert isa_geometry(33, 65, (8, 8)) == (5, 9, 3, 4, 3, 4)  # 40 x 72: 7 rows (3 + 4), 7 columns (3 + 4)
    assert isa_geometry(7, 9, (3, 5)) == (3, 2, 1, 1, 0, 1)
    assert isa_geometry(8, 8, (8, 8)) == (1, 1, 0, 0, 0, 0)
    assert isa_geometry(4, 4, (8, 8)) == (1, 1, 2, 2, 2, 2)  # a factor larger than the map pads
    cfg = config("isa", (33, 65), batch=1, channels=8, key_channels=4, value_channels=4)
    assert cost(replace(cfg, options=(("factor", (8, 8)),))).padded == (40, 72)


def test_isa_macs_match_the_paper_form() -> None:
    """Undivided map, attention: (HW)^2 (Ck+Cv) / (P_h P_w) + HW P_h P_w (Ck+Cv) (ISA paper Sec. 3.3)."""
    h, w, ph, pw, ck, cv = 16, 24, 4, 6, 4, 4
    cfg = config("isa", (h, w), batch=1, channels=8, key_channels=ck, value_channels=cv)
    c = cost(replace(cfg, options=(("factor", (ph, pw)),)))
    attention = sum(v for k, v in c.macs.items() if k.endswith(("qk", "av")))
    assert attention == (h * w) ** 2 * (ck + cv) // (ph * pw) + h * w * ph * pw * (ck + cv)
    assert cost(replace(cfg, options=(("factor", (4, 6)), ("masked", True)))).macs == c.macs


def test_bad_backend() -> None:
    with pytest.raises(ValueError, match=r"flash needs key_channels == value_channels"):
        fc.attention_kernel("sdpa", "flash", 4, 6)
    with pytest.raises(ValueError, match=r"unknown sdpa backend 'flashy'"):
        fc.attention_kernel("sdpa", "flashy", 4, 4)
    assert fc.attention_kernel("sdpa", "efficient", 4, 6) == "fused"  # CUDA kernels, counted like flash
    bad = (("factor", (0, 2)),)
    with pytest.raises(ValueError, match=r"factor must be two positive integers"):
        cost(config("isa", (8, 8), batch=1, channels=8, key_channels=4, value_channels=4, options=bad))
