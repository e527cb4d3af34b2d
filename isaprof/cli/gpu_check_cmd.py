"""``isaprof gpu-check [--out DIR] [--gpu KEY] [--no-tests] [--budget-s S]``: the real-GPU check.

Runs with a GPU machine's own Python as it is (``PYTHONPATH=. python3 -m isaprof gpu-check``): nothing
beyond the standard library and torch is imported (see :mod:`isaprof.studies.gpu_check`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``gpu-check`` subcommand."""
    p = sub.add_parser(
        "gpu-check",
        help="on a CUDA machine: gpu-marked tests, a small CUDA sweep, measured against the meta predictions",
        description="The gpu-marked tests, a small CUDA sweep (reference/sweeps/cuda.toml) into DIR, and for "
        "each measured configuration the allocator peak and median latency beside the meta path's predicted "
        "peak and latency bound (DIR/comparison.csv, DIR/comparison.json). Without CUDA the sweep and the "
        "comparison are skipped and nothing is written.",
    )
    p.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="output directory (default: reports/data/cuda)"
    )
    p.add_argument(
        "--gpu", metavar="KEY", help="reference/devices.toml key of this GPU (default: from its name)"
    )
    p.add_argument("--no-tests", action="store_true", help="skip the gpu-marked tests")
    p.add_argument(
        "--budget-s", type=float, default=240.0, help="seconds for the sweep, roofs included (default 240)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.gpu_check import ROOT, check

    out = args.out if args.out is not None else ROOT / "reports" / "data" / "cuda"
    return check(out, gpu=args.gpu, tests=not args.no_tests, budget_s=args.budget_s)
