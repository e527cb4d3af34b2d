"""``isaprof networks RESULTS_DIR``: whole networks at the published test sizes (params, FLOPs, peak)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``networks`` subcommand."""
    p = sub.add_parser(
        "networks",
        help="whole networks at the published test sizes: params, FLOPs, peak memory, head share "
        "(DIR/networks.csv)",
        description="Profile every r50 and r101 network target in inference on fake tensors (meta), per "
        "module, at Cityscapes 1024x2048 (19 classes) and ADE20K 512x512 (150 classes), whole image; write "
        "RESULTS_DIR/networks.csv: params, MACs, FLOPs (2 x MACs), peak bytes and the decode head's share "
        "of the MACs, one row per network and setting.",
    )
    p.add_argument("results_dir", metavar="RESULTS_DIR", help="the results folder (networks.csv goes there)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.networks import measure_networks

    print(measure_networks(args.results_dir))
    return 0
