"""Achieved rate of each block's reference and fast paths, as a fraction of this machine's sgemm peak.

    python benchmarks/fast_paths.py                       # all cases, writes results/fast_paths.csv
    python benchmarks/fast_paths.py --only isa --compile  # + torch.compile (compile time excluded)

Figure of merit: ``rate = F / t`` where F is the FLOP count of the *reference* form (FlopCounterMode on the
naive reference module, inference, FLOPs = 2 x MACs) and t the median latency of the variant
(:func:`isaprof.measure.latency.compare_latency`: every variant timed interleaved, at least 7 samples;
``vs_naive`` is the per-round ratio to naive with its IQR); ``fraction = rate / peak``, with ``peak`` the
fp32 matmul roof of :mod:`isaprof.roofline.roofs` (largest median rate over its GEMM shapes, the blocks' own
among them: a square 2048^3 product alone is beaten by the blocks' smaller, cache-resident GEMMs) measured
in the same run, right before each case's interleaved timing (the machine may be shared: ``fraction`` uses
the largest sample of the run, ``local_fraction`` the sample taken just before that timing, under the same
load). A rate above the peak by more than both IQRs is reported and the script exits 1: it is a bug in the
peak, not a fast block.
Every variant computes the same function (tests/targets/test_fast.py).
Variants: ``naive`` and ``sdpa`` (reference impls), ``fast`` (fast_inference), ``fast+compile``.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import isaprof.targets as blocks
from isaprof.measure.flops import flop_counter_mode
from isaprof.measure.latency import Comparison, compare_latency
from isaprof.roofline.roofs import matmul_samples
from isaprof.targets.fast import fast_inference


@dataclass(frozen=True)
class Case:
    """One configuration; ``why`` says where the shape comes from."""

    block: str
    channels: int
    height: int
    width: int
    key: int | None = None
    value: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    why: str = ""


ISA_GOAL = Case(
    "isa", 512, 128, 128, 256, 256, {"factor": (8, 8)}, "issue 7 goal: ISA paper's setting, >= 60%"
)
CASES: tuple[Case, ...] = (
    ISA_GOAL,
    Case("isa", 512, 64, 64, 256, 256, {"factor": (8, 8)}, "ISA at 1/8 of a 512x512 crop"),
    *(
        Case("dense", 512, s, s, 256, 256, {}, "dense vs sdpa as the affinity leaves cache")
        for s in (32, 64, 96)
    ),
    Case("axial", 512, 64, 64, 256, 256, {}, "two-stage, like ISA"),
    Case("non_local", 512, 64, 64, 256, 256, {}, "mmseg NLHead width"),
    Case("sparse_nonlocal", 512, 64, 64, 256, 256, {"k": 256}, "SSANet, k = N / 16"),
    Case("criss_cross", 512, 64, 64, None, None, {}, "CCNet R = 2, Ck = C / 8"),
    Case("linear", 512, 64, 64, None, None, {}, "Ck = C / 8"),
    Case("channelized_axial", 128, 32, 32, None, None, {}, "CAA (heavy elementwise): a small map"),
)


def matmul_peak(min_run_time: float = 0.25) -> tuple[float, float]:
    """(GFLOP/s, IQR) of the fp32 matmul roof now: the best median rate over the roofs' GEMM shapes."""
    top = max(matmul_samples("cpu", min_run_time=min_run_time), key=lambda s: s.rate)
    return top.rate, top.rate_iqr


def reference_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one inference forward (FlopCounterMode + isaprof's formulas: matmul-like ops, 2 per MAC)."""
    with flop_counter_mode() as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops()


def interleaved(mods: dict[str, torch.nn.Module], x: torch.Tensor, min_run_time: float) -> Comparison:
    """Every variant's ``fn(x)`` under no_grad, timed interleaved (isaprof's protocol: at least 7 samples,
    ``min_run_time`` seconds of samples per variant), with its ratio to ``naive`` per round."""

    def call(mod: torch.nn.Module) -> Callable[[], Any]:
        def run() -> Any:
            with torch.no_grad():
                return mod(x)

        return run

    return compare_latency({n: call(m) for n, m in mods.items()}, "quick", budget_s=min_run_time)


def variants(case: Case, compile: bool) -> dict[str, torch.nn.Module]:
    """The modules to time, all with the same weights (built from one seed)."""
    impls = blocks.spec(case.block).impls
    out: dict[str, torch.nn.Module] = {}
    for impl in ("naive", "sdpa"):
        if impl in impls:
            torch.manual_seed(0)
            out[impl] = blocks.build(
                case.block, case.channels, case.key, case.value, impl=impl, **case.options
            ).eval()
    out["fast"] = fast_inference(out["naive"])
    if compile:
        out["fast+compile"] = fast_inference(out["naive"], compile=True)
    return out


def run_case(case: Case, compile: bool, min_run_time: float) -> list[dict[str, Any]]:
    """Rows (one per variant) of one case; prints them as it goes."""
    torch.manual_seed(1)
    x = torch.randn(1, case.channels, case.height, case.width)
    mods = variants(case, compile)
    flops = reference_flops(mods["naive"], x)
    rows = []
    compile_s = 0.0
    if "fast+compile" in mods:
        t0 = time.perf_counter()
        with torch.no_grad():
            mods["fast+compile"](x)  # compile outside the timing
        compile_s = time.perf_counter() - t0
    peak, peak_iqr = matmul_peak()
    cmp = interleaved(mods, x, min_run_time)  # every variant in one interleaved run: same load on each
    for name in mods:
        lat, ratio = cmp.latencies[name], cmp.ratios[name]
        med, iqr = lat.median_ms, lat.iqr_ms
        rate = flops / (med / 1e3) / 1e9
        rate_iqr = rate * iqr / med  # first order: d(F/t) = F dt / t^2
        row = dict(
            block=case.block, channels=case.channels, key_channels=case.key or "",
            value_channels=case.value or "",
            height=case.height, width=case.width, options=repr(case.options), variant=name,
            ref_gflop=flops / 1e9, median_ms=med, iqr_ms=iqr, gflops=rate, gflops_iqr=rate_iqr,
            local_peak_gflops=peak, local_peak_iqr=peak_iqr,
            local_fraction=rate / peak,
            vs_naive=ratio.median, vs_naive_iqr=ratio.iqr, samples=lat.samples, flags=lat.flags(),
            compile_s=compile_s if name == "fast+compile" else 0.0,
        )  # fmt: skip
        rows.append(row)
        print(f"{case.block:18s} {case.height:4d}x{case.width:<4d} {name:13s} {med:10.1f} ms  "
              f"{rate:6.1f} GFLOP/s  {rate / peak:6.1%} of {peak:.0f} (local peak)", flush=True)  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="block names to run (default: all cases)")
    ap.add_argument("--compile", action="store_true", help="also time fast_inference(compile=True)")
    ap.add_argument("--min-run-time", type=float, default=3.0, help="seconds per timing (default 3)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("results/fast_paths.csv"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = [c for c in CASES if not args.only or c.block in args.only]
    rows = [r for c in cases for r in run_case(c, args.compile, args.min_run_time)]
    top = max(rows, key=lambda r: r["local_peak_gflops"])
    peak, peak_iqr = top["local_peak_gflops"], top["local_peak_iqr"]
    for r in rows:
        r["peak_gflops"], r["fraction"] = peak, r["gflops"] / peak
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"sgemm peak (largest sample of the run): {peak:.1f} GFLOP/s; wrote {args.out}")
    for r in rows:
        print(f"{r['block']:18s} {r['height']:4d}x{r['width']:<4d} {r['variant']:13s} {r['fraction']:6.1%}"
              f"  (local {r['local_fraction']:6.1%})")  # fmt: skip
    above = [r for r in rows if r["gflops"] - r["gflops_iqr"] > peak + peak_iqr]
    for r in above:
        print(f"ABOVE PEAK beyond noise: {r['block']} {r['height']}x{r['width']} {r['variant']} "
              f"{r['gflops']:.1f} +- {r['gflops_iqr']:.1f} > {peak:.1f} +- {peak_iqr:.1f}")  # fmt: skip
    if above:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
