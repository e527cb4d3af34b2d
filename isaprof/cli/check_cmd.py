"""``isaprof check [--quick]``: every registered block over a grid on meta; list formula disagreements."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="compare measured and closed-form costs over a grid of configurations (exit 1 on disagreement)",
        description="Profile every registered block over a grid on meta (fake tensors) and print where the "
        "measured params/MACs differ from the closed form, or peak bytes by more than 10%.",
    )
    p.add_argument("--quick", action="store_true", help="a smaller grid")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.check import check, default_grid, skipped

    total = len(default_grid(args.quick))

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            print(f"\r{done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

    found = check(quick=args.quick, progress=progress)
    for d in found:
        print(d)
    print(f"{len(found)} disagreement(s) over {total} configurations")
    if skipped():
        print(f"skipped (no closed-form formula to check): {', '.join(skipped())}")
    return 1 if found else 0
