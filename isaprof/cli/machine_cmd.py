"""``isaprof machine [--json] [--remeasure]``: this host's roofs (matmul peak, memory bandwidth), cached."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``machine`` subcommand."""
    p = sub.add_parser(
        "machine",
        help="measure (or read from the host cache) this machine's matmul peak and memory bandwidth",
        description="The two roofs of a roofline for each available device: the fp32 matrix-multiply peak "
        "(maximum median rate over several GEMM shapes, the blocks' own among them) and the STREAM "
        "copy/triad bandwidth on arrays >= 4x the last-level cache, each with its IQR "
        "(torch.utils.benchmark, blocked "
        "autorange). Cached in $ISAPROF_CACHE or ~/.cache/isaprof/machine-<host>.json.",
    )
    p.add_argument("--json", action="store_true", help="print JSON (with every sample) instead of a table")
    p.add_argument("--remeasure", action="store_true", help="ignore the host cache and measure again")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the roofs; returns the exit status."""
    from isaprof.roofline.roofs import cache_path, machine_roofs

    roofs = machine_roofs(remeasure=args.remeasure)
    cached = _cached(cache_path(), roofs)
    if not cached:  # stderr: stdout stays valid JSON under --json
        print(f"isaprof machine: warning: could not write the host cache {cache_path()} (read-only?): "
              "these roofs were measured but not cached", file=sys.stderr)  # fmt: skip
    if args.json:
        print(json.dumps(roofs, indent=1))
        return 0
    for dev, r in roofs.items():
        print(
            f"{dev}: {r['device_name']} ({r['threads']} threads, host {r['host']}, "
            f"measured {r['measured_at']})"
        )
        print(
            f"  fp32 matmul peak  {r['matmul_gflops']:9.1f} GFLOP/s  IQR {r['matmul_gflops_iqr']:.1f}"
            f"  at {r['matmul_shape']}"
        )
        if "matmul_bf16_gflops" in r:
            print(f"  bf16 matmul peak  {r['matmul_bf16_gflops']:9.1f} GFLOP/s")
        print(
            f"  memory bandwidth  {r['bandwidth_gbs']:9.1f} GB/s     IQR {r['bandwidth_gbs_iqr']:.1f}"
            f"  (STREAM {r['bandwidth_kernel']}; "
            f"ridge at {r['matmul_gflops'] / r['bandwidth_gbs']:.1f} FLOP/byte)"
        )
        for s in r["samples"]:
            unit = "GFLOP/s" if s["unit"] == "FLOP" else "GB/s"
            print(
                f"    {s['kernel']:5s} {s['dtype']:8s} {s['shape']:32s} {s['rate']:9.1f} {unit}  {s['why']}"
            )
    if cached:
        print(f"(cached in {cache_path()}; --remeasure to measure again)")
    return 0


def _cached(path: Path, roofs: dict) -> bool:
    """Whether the host cache at ``path`` holds ``roofs`` (a read-only cache keeps the old figures)."""
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(roofs))
    except (OSError, ValueError):
        return False
