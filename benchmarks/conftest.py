"""Timing benchmarks of every block (pytest-benchmark). Not part of the unit tests: run ``make bench``.

Shapes are declared here as data. Each benchmark stores its configuration and its exact costs
(MACs, FLOPs, peak bytes from ``isaprof.profile(..., device="meta")``) in ``benchmark.extra_info``,
so a saved run is self-describing and ``benchmarks/ratios.py`` can group and compare runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor

import isaprof
from isaprof.measure import protocol
from isaprof.studies.baseline import Case, measure
from isaprof.targets import names, spec

# (H, W, C): a 32x32 and a 64x64 feature map (1/8 of 256 / 512 px crops, as in the ISA/CCNet
# ablations) at widths that keep the whole suite around a minute on 2 CPU cores.
SIZES = ((32, 32, 64), (64, 64, 128))
BATCH = 1
DTYPE = torch.float32
DEVICES = (
    pytest.param("cpu", id="cpu"),
    pytest.param(
        "cuda",
        id="cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
)


Workload = tuple[Callable[[], Tensor], Tensor]  # (the call to time, its input)


@dataclass(frozen=True)
class Shape:
    """One timed configuration: a block with its default options at one size."""

    block: str
    impl: str
    height: int
    width: int
    channels: int
    batch: int = BATCH

    @property
    def id(self) -> str:
        return f"{self.block}-{self.impl}-{self.height}x{self.width}-C{self.channels}"


def shapes() -> list[Shape]:
    """Every registered block x impl x size (block options at their defaults)."""
    return [Shape(b, impl, h, w, c) for b in names() for impl in spec(b).impls for h, w, c in SIZES]


def sync(device: str) -> None:
    """Wait for queued kernels so the timer measures the work, not the launch."""
    if device == "cuda":
        torch.cuda.synchronize()


@functools.cache
def costs(shape: Shape, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``isaprof.studies.baseline.measure`` on meta, once per shape and mode (the cpu and cuda runs share
    it)."""
    return measure(
        Case.of(shape.block, shape.impl, shape.height, shape.width, shape.channels, shape.batch), mode
    )


def extra_info(shape: Shape, device: str, mode: str, with_costs: bool = True) -> dict[str, Any]:
    """Configuration + exact costs of one benchmark (MAC, FLOP, byte; ``None`` if skipped or failed)."""
    metrics, info = costs(shape, mode) if with_costs else ({}, {})
    macs = metrics.get(f"macs.{mode}", {})
    peak = metrics.get(f"peak_bytes.{mode}", {})
    out: dict[str, Any] = {
        "block": shape.block,
        "impl": shape.impl,
        "batch": shape.batch,
        "channels": shape.channels,
        "height": shape.height,
        "width": shape.width,
        "dtype": str(DTYPE).removeprefix("torch."),
        "device": device,
        "mode": mode,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "macs": macs.get("measured"),
        "macs_analytic": macs.get("analytic"),
        "flops": 2 * macs["measured"] if macs.get("measured") is not None else None,
        "peak_bytes_meta": peak.get("measured"),
        "peak_bytes_analytic": peak.get("analytic"),
        **info,
    }
    errors = {m: v["error"] for m, v in metrics.items() if "error" in v}
    if errors:
        out["cost_error"] = "; ".join(f"{m}: {e}" for m, e in sorted(errors.items()))
    return out


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bench-no-costs",
        action="store_true",
        help="skip the meta-device profile behind extra_info's MACs / peak bytes (CI quick mode: "
        "`isaprof baseline check` covers the costs; channelized axial's profile at 64x64 alone takes ~1 min)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``shape`` over :func:`shapes` and ``device`` over :data:`DEVICES`."""
    if "shape" in metafunc.fixturenames:
        metafunc.parametrize("shape", [pytest.param(s, id=s.id) for s in shapes()])
    if "device" in metafunc.fixturenames:
        metafunc.parametrize("device", DEVICES)


@pytest.fixture
def workload(
    benchmark: Any, shape: Shape, device: str, request: pytest.FixtureRequest
) -> Callable[[str], Workload]:
    """``workload(mode) -> (fn, x)``: the call to time for ``mode`` and its input.

    ``fn`` is :func:`isaprof.measure.protocol.step` (``train`` resets gradients to ``None`` first, so
    every round does the same work) followed by a CUDA synchronisation; it is called once untimed
    before it is returned (warm-up). Also sets the benchmark's
    group (device, mode, size: ``ratios.py`` compares the blocks within a group) and ``extra_info``.
    """

    def make(mode: str) -> Workload:
        torch.manual_seed(0)
        model = isaprof.build(shape.block, shape.channels, impl=shape.impl).to(device=device, dtype=DTYPE)
        dims = (shape.batch, shape.channels, shape.height, shape.width)
        x = torch.randn(dims, device=device, dtype=DTYPE)  # (B, C, H, W)
        run = protocol.step(model, x, mode)  # the measurement protocol itself: eval/no_grad or train+backward
        benchmark.group = f"{device} {mode} {shape.height}x{shape.width} C{shape.channels}"
        with_costs = not request.config.getoption("--bench-no-costs")
        benchmark.extra_info.update(extra_info(shape, device, mode, with_costs))

        def timed() -> Tensor:
            out = run()  # (B, C, H, W)
            sync(device)
            return out

        timed()  # warm-up outside the timer: lazy kernel / allocator initialisation of the first call
        return timed, x

    return make
