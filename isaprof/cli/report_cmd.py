"""``isaprof report RESULTS_DIR --out reports/``: redraw the Markdown report from saved results."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    p = sub.add_parser(
        "report",
        help="write reports/README.md (figures, tables) from a result directory",
        description="Read RESULTS_DIR/results.csv (tidy rows), machine.json and reproduction.csv and write "
        "OUT/README.md with figures under OUT/figures and tables under OUT/tables. Runs no model.",
    )
    p.add_argument(
        "results_dir", metavar="RESULTS_DIR", help="directory written by `isaprof sweep` (and reproduce)"
    )
    p.add_argument("--out", default="reports", metavar="DIR", help="report directory (default: reports)")
    p.add_argument("--svg", action="store_true", help="also write the scaling figures as SVG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.report import write_report

    if Path(args.results_dir).is_file():
        parent = Path(args.results_dir).parent
        raise ValueError(f"RESULTS_DIR must be a directory holding results.csv; give {parent}, not the file")
    page = write_report(args.results_dir, args.out, svg=args.svg)
    print(page)
    return 0
