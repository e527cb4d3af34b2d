"""``isaprof check [--quick]``: every registered block over a grid on meta; list formula disagreements."""

from __future__ import annotations

import argparse
import sys

from isaprof import targets as blocks


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="compare measured and closed-form costs over a grid of configurations (exit 1 on disagreement)",
        description="Profile every registered block over a grid on meta (fake tensors) and print where the "
        "measured params/MACs differ from the closed form, or peak bytes by more than 10%.",
    )
    p.add_argument("--quick", action="store_true", help="a smaller grid")
    p.add_argument("--symbolic", action="store_true",
                   help="instead: hand formulas vs derived closed forms, as expressions")  # fmt: skip
    p.add_argument("--block", action="append", metavar="NAME", help="only this block (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.studies.check import checkable

    for name in args.block or ():
        if name not in blocks.names(everything=True):
            raise ValueError(f"unknown block {name!r} (--block); known blocks: {', '.join(blocks.names())}")
        if not args.symbolic and name not in checkable():
            raise ValueError(f"block {name!r} (--block) has no closed-form formula to check")
    if args.symbolic:
        return run_symbolic(args)
    from tqdm.auto import tqdm

    from isaprof.studies.check import check, default_grid, skipped

    grid = [c for c in default_grid(args.quick) if not args.block or c.block in args.block]
    total = len(grid)
    show = not args.no_progress and sys.stderr.isatty()
    with tqdm(total=total, desc="check (meta)", unit="cfg", disable=not show, file=sys.stderr) as bar:
        found = check(grid, progress=lambda done, _total: bar.update(done - bar.n))
    for d in found:
        print(d)
    print(f"{len(found)} disagreement(s) over {total} configurations")
    if skipped() and not args.block:
        print(f"skipped (no closed-form formula to check): {', '.join(skipped())}")
    return 1 if found else 0


def run_symbolic(args: argparse.Namespace) -> int:
    """``--symbolic``: exit 1 only when a hand formula differs from the derived expression."""
    from isaprof.studies.symbolic_check import check_symbolic

    found = check_symbolic(args.block)
    for c in found:
        print(c, flush=True)
    differs = [c for c in found if c.status == "differs"]
    underivable = sum(c.status == "underivable" for c in found)
    print(f"{len(differs)} hand formula(s) differ, {underivable} not derivable, of {len(found)} compared")
    return 1 if differs else 0
