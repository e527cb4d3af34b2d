"""``isaprof reproduce [--out DIR] [--device meta|cpu]``: measure the published figures' configurations."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``reproduce`` subcommand."""
    p = sub.add_parser(
        "reproduce",
        help="rebuild the configurations of published cost figures and compare (DIR/reproduction.csv)",
        description="For each figure of reference/published.toml build the same configuration, measure FLOPs "
        "and peak memory on fake tensors (meta); write DIR/reproduction.csv: published, ours, ratio, reason.",
    )
    p.add_argument(
        "--out", default="reports/data", metavar="DIR", help="output directory (default: reports/data)"
    )
    p.add_argument(
        "--device",
        choices=("meta", "cpu"),
        default="meta",
        help="meta: counts and memory only (seconds); cpu: also CPU latency of configurations <= 50 GFLOP",
    )
    p.add_argument(
        "--published", metavar="TOML", help="published-figures file (default: reference/published.toml)"
    )
    p.add_argument(
        "--no-training",
        action="store_true",
        help="skip the whole networks' training memory (DIR/training_memory.csv; seconds per network)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.reproduce import PUBLISHED, reproduce

    published = args.published or PUBLISHED
    path = reproduce(args.out, device=args.device, published=published, training=not args.no_training)
    print(summary(path))
    training = Path(args.out) / "training_memory.csv"
    if not args.no_training and training.is_file():
        print(training_summary(training))
    print(f"table: {path}")
    return 0


def summary(path: Path) -> str:
    """The reproduction table's one summary (:mod:`isaprof.results.reproduction`) and each miss with why."""
    from isaprof.results import reproduction

    return "\n".join(reproduction.read(path).lines())


def training_summary(path: Path) -> str:
    """Each published training-memory figure beside its prediction (MiB), the ratio and, past 5%, why."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    lines = [f"{len(rows)} published training-memory figures (MiB, predicted max_memory_allocated):"]
    for r in rows:
        why = "" if abs(float(r["ratio"]) - 1) <= 0.05 else f": {r['reason']}"
        lines.append(
            f"  {r['id']}: predicted {float(r['predicted']):.0f} vs published {r['published']} "
            f"(ratio {float(r['ratio']):.3f}){why}"
        )
    return "\n".join(lines)
