"""``isaprof bounds RESULTS_DIR [--gpus v100,a100-80gb,h100-sxm]``: latency lower bounds (bounds.csv)."""

from __future__ import annotations

import argparse
import time


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``bounds`` subcommand."""
    p = sub.add_parser(
        "bounds",
        help="latency lower bounds at the papers' sizes on catalogued GPUs and beside this CPU's latencies "
        "(DIR/bounds.csv)",
        description="Count every built-in block at the papers' sizes on fake tensors and bound its latency "
        "on each catalogued GPU of --gpus; bound each CPU latency of RESULTS_DIR/results.csv on this CPU's "
        "measured roofs; write RESULTS_DIR/bounds.csv. Bounds, not measurements.",
    )
    p.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="the results folder (reads results.csv, machine.json)"
    )
    p.add_argument(
        "--gpus",
        metavar="KEYS",
        help="reference/devices.toml keys, comma-separated (default: isaprof.studies.bounds.GPUS)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.bounds import GPUS, measure_bounds

    gpus = GPUS if args.gpus is None else [g.strip() for g in args.gpus.split(",") if g.strip()]
    t0 = time.perf_counter()
    path = measure_bounds(args.results_dir, gpus)
    print(f"{path} ({time.perf_counter() - t0:.1f} s)")
    return 0
