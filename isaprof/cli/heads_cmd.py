"""``isaprof heads RESULTS_DIR``: each block's share of its published head's FLOPs and peak memory."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``heads`` subcommand."""
    p = sub.add_parser(
        "heads",
        help="each block's share of its published head's FLOPs and peak memory (DIR/heads.csv)",
        description="Profile every published head of isaprof.studies.heads.HEAD_CONFIGS (the papers' sizes) "
        "per module on fake tensors (meta), in inference and train; write RESULTS_DIR/heads.csv: the head's "
        "value, its attention block's value and the share, per metric (macs, flops, peak_bytes).",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the results folder (heads.csv goes there)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.heads import measure_head_shares

    print(measure_head_shares(args.results_dir))
    return 0
