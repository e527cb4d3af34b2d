"""``isaprof verify``: does each block carry information between every pair of positions?

Per block: the structural fractions of connected (output, input) pairs after each stage, paths per pair,
stages needed, the empirical (Jacobian) fractions and whether both agree. Exit 1 where they disagree, where a
block has no structural model, or where a block advertised as fully connected is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from isaprof import units
from isaprof.cli._args import factor, positive_int, size
from isaprof.config import LAYOUTS
from isaprof.targets import names, spec

DEFAULT_SIZE = (8, 8)
FIGURE_SIZE = (16, 16)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``verify`` subcommand."""
    p = sub.add_parser(
        "verify",
        help="information flow: structural path counts and Jacobian support, per block",
        description="Check that every output position receives information from every input position: exact "
        "structural path counting (any size) and the support of the real module's Jacobian (small maps).",
    )
    p.add_argument("names", nargs="*", metavar="TARGET",
                   help="blocks to check (default: all registered); any module by import path "
                   "package.module:Attr is checked empirically only (Jacobian support)")  # fmt: skip
    p.add_argument("--size", type=size, help=f"map HxW (default {DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")
    p.add_argument("--factor", type=factor, help="ISA factor PHxPW (P_h x P_w); default: the block's own")
    p.add_argument(
        "--recurrence", type=positive_int, help="criss-cross recurrence R; default: the block's own"
    )
    p.add_argument("--masked", action="store_true", help="ISA: exclude padded positions as keys")
    p.add_argument("--channels", type=positive_int, metavar="C",
                   help="input channels of the Jacobian check (default 8)")  # fmt: skip
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a target's option, VALUE a Python literal (repeatable)")  # fmt: skip
    p.add_argument("--layout", choices=LAYOUTS, default="map",
                   help="the input: map (B, C, H, W), or tokens (B, N, C) with N = H*W")  # fmt: skip
    emp = p.add_mutually_exclusive_group()
    emp.add_argument(
        "--empirical",
        dest="empirical",
        action="store_true",
        default=None,
        help="run the Jacobian check at any size (slow above 16x16)",
    )
    emp.add_argument("--no-empirical", dest="empirical", action="store_false", help="structural check only")
    p.add_argument("--draws", type=positive_int, default=3, help="parameter draws per Jacobian (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON list instead of the table")
    p.add_argument(
        "--figure",
        metavar="PATH",
        help="write the reach picture (PNG, structural; --size, default 16x16, and --factor); "
        "the checks then run only for the blocks named",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the checks (and/or write the figure); returns the exit status."""
    if args.figure:
        from isaprof.flow.figures import reach_grid

        h, w = args.size or FIGURE_SIZE
        out = reach_grid(
            args.figure, size=(h, w), query=(h // 3, w // 2 - 1 if w > 1 else 0), factor=args.factor or (4, 4)
        )
        print(f"wrote {out}")
        if not args.names:
            return 0
    from isaprof.flow import CHANNELS, verify

    blocks = args.names or names()
    for name in blocks:
        _ = spec(name).options  # ValueError naming the known blocks, or why an import path does not import
    _check_options_apply(blocks, args)
    results = [
        verify(
            name,
            args.size or DEFAULT_SIZE,
            empirical=args.empirical,
            draws=args.draws,
            channels=args.channels or CHANNELS,
            layout=args.layout,
            **_options(name, args),
        )
        for name in blocks
    ]
    if args.json:
        print(json.dumps([_as_json(r) for r in results], indent=1))
    else:
        print(_table(results))
    return 0 if all(r.ok for r in results) else 1


def _options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options that block ``name`` takes."""
    from isaprof.cli.profile_cmd import parse_options

    given = {"factor": args.factor, "recurrence": args.recurrence, "masked": args.masked or None}
    s = spec(name)
    named = {k: v for k, v in given.items() if v is not None and k in s.options}
    extra = parse_options(args.option)
    unknown = [] if s.open_options else sorted(set(extra) - set(s.options))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in s.options.items()) or "none"
        raise ValueError(f"target {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    twice = sorted(set(named) & set(extra))
    if twice:
        raise ValueError(f"--{twice[0]} and --option {twice[0]}=... both give {twice[0]}: give it once")
    return {**named, **extra}


def _check_options_apply(blocks: list[str], args: argparse.Namespace) -> None:
    """``ValueError`` when ``--factor``/``--recurrence``/``--masked`` is given but no block checked takes it
    (it would be silently ignored)."""
    given = {"factor": args.factor, "recurrence": args.recurrence, "masked": args.masked or None}
    for opt, value in given.items():
        if value is not None and not any(opt in spec(n).options for n in blocks):
            having = [n for n in names() if opt in spec(n).options]
            raise ValueError(
                f"--{opt} applies only to blocks with a {opt} option ({', '.join(having)}); "
                f"none of {', '.join(blocks)} has one"
            )


def _as_json(r: Any) -> dict[str, Any]:
    d = dataclasses.asdict(r)
    d["options"] = dict(r.options)
    d["fully_connected"], d["ok"], d["empirical_only"] = r.fully_connected, r.ok, r.empirical_only
    return d


def _fractions(values: tuple[float, ...]) -> str:
    """Connected fractions per stage, three decimals: ``0.250 > 1.000``; ``-`` when none."""
    return " > ".join(units.fixed(v, 3) for v in values) or "-"


def _runs(empirical: tuple[tuple[str, float], ...]) -> str:
    if len(empirical) == 1:
        return units.fixed(empirical[0][1], 3)
    return "; ".join(f"{label} {units.fixed(v, 3)}" for label, v in empirical) or "-"


def _table(results: list[Any]) -> str:
    head = (
        "block",
        "size",
        "options",
        "structural (per stage)",
        "paths",
        "need",
        "empirical (per run)",
        "agree",
        "verdict",
    )
    rows = [head]
    for r in results:
        opts = ",".join(f"{k}={v}" for k, v in r.options) or "-"
        paths = "-" if r.paths_min is None else f"{r.paths_min}..{r.paths_max}"
        agree = {True: "yes", False: "NO", None: "-"}[r.agree]
        if r.agree is None and any("inconclusive" in n for n in r.notes):
            agree = "inconclusive"
        verdict = "ok" if r.ok else ("NOT fully connected" if r.modelled and r.agree is not False else "FAIL")
        if not r.advertised and r.ok:
            verdict = "ok (not advertised)"
        if r.empirical_only:  # no structural model to agree with: what the Jacobian showed, labelled so
            full = "fully connected" if (r.empirical_fraction or 0) == 1.0 else "NOT fully connected"
            verdict = f"empirical only: {full}" if r.ok else "FAIL (advertised, not shown)"
        rows.append(
            (
                r.block,
                f"{r.size[0]}x{r.size[1]}",
                opts,
                _fractions(r.fractions),
                paths,
                str(r.stages_needed or "never"),
                _runs(r.empirical),
                agree,
                verdict,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(wd) for c, wd in zip(row, widths, strict=True)).rstrip() for row in rows]
    notes = [f"  {r.block}: {n}" for r in results for n in r.notes]
    return "\n".join(lines + (["notes:", *notes] if notes else []))
