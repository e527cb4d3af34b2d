"""``isaprof baseline check|update``: exact cost regression gate (see :mod:`isaprof.studies.baseline`).

``check`` exits 0 when every MAC / peak-byte count matches the baseline file, 1 on any change (printed
as block, config, metric, old -> new, ratio); ``update`` rewrites the file on purpose.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from isaprof.cli._args import positive_int
from isaprof.studies import baseline


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``baseline`` with its ``check`` and ``update`` actions to the subcommand parsers."""
    p = sub.add_parser(
        "baseline",
        help="check or update the exact MAC / peak-byte baseline (reference/baseline.json)",
        description="Exact cost regression gate: MACs and meta-path peak bytes of every block x impl x "
        "configuration, compared with a committed JSON file. Deterministic on any machine, no GPU.",
    )
    p.add_argument("action", choices=("check", "update"), help="check: exit 1 on any change; update: rewrite")
    p.add_argument("--file", default=str(baseline.DEFAULT_FILE), help="baseline JSON (default: %(default)s)")
    p.add_argument(
        "--block",
        action="append",
        metavar="NAME",
        help="only this block's configurations (repeatable); update then replaces only theirs",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=baseline.default_jobs(),
        help="worker processes (default: the usable cores, %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``check`` or ``update``; returns the exit status."""
    if args.action == "update":
        doc, seconds = _timed(baseline.update, args.file, args.block, args.jobs)
        print(f"wrote {len(doc['cases'])} configurations to {args.file} ({seconds:.1f} s)")
        return 0
    diff, seconds = _timed(baseline.check, args.file, args.block, args.jobs)
    print(baseline.format_diff(diff, args.file))
    print(f"({seconds:.1f} s)")
    return 0 if diff.ok else 1


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), seconds)``."""
    t0 = time.perf_counter()
    return fn(*args), time.perf_counter() - t0
