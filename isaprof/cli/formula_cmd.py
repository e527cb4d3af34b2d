"""``isaprof formula TARGET --channels C ...``: a block's MACs (and bytes moved) as closed forms in H, W (B).

One symbolic run (isaprof/symbolic/trace.py): the expression, the conditions under which it holds, its
leading term and exponent in N = H W. ``--all`` derives every registered block and ISA's optimal factor
(``--out FILE`` writes the JSON, e.g. the report's ``derived.json``: ``{"channels", "mode", "blocks": [one
object per block and impl], "isa_optimum": {...}}``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from isaprof import targets as blocks
from isaprof import units
from isaprof.cli import _args
from isaprof.cli.profile_cmd import block_options
from isaprof.config import LAYOUTS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "formula",
        help="derive a block's MACs (and bytes moved) as a closed form in H and W from one symbolic run",
        description="Run the block once on a (B, C, H, W) input with symbolic H, W (fake tensors) and print "
        "its MACs as an expression in H, W, with the conditions under which it holds and its leading term.",
    )
    p.add_argument("name", nargs="?", metavar="TARGET", help=_args.TARGET_HELP)
    p.add_argument("--all", action="store_true", help="every registered block (its default options)")
    _args.add_widths(p, channels_default=64)
    _args.add_options(p)
    p.add_argument("--impl", choices=("naive", "sdpa"), default="naive")
    p.add_argument("--size", type=_args.size, default=(64, 64), metavar="HxW",
                   help="the size traced at (default 64x64): one the block accepts")  # fmt: skip
    p.add_argument("--also-size", type=_args.size, metavar="HxW",
                   help="where the MACs at --size hold only under divisibility or equality conditions, "
                   "derive again at this size and keep the result with fewer")  # fmt: skip
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument("--layout", choices=LAYOUTS, default="map",
                   help="the input: map (B, C, H, W), or tokens (B, N, C) with N = H*W")  # fmt: skip
    p.add_argument("--batch-symbol", action="store_true", help="B as a symbol too (else B = 1)")
    p.add_argument("--no-peak", dest="peak", action="store_false",
                   help="skip peak memory (by default also derived: a closed form where the storage "
                   "tracker's comparisons resolve, else the reason and the numeric peak)")  # fmt: skip
    p.add_argument("--jobs", type=_args.positive_int, default=1, metavar="N",
                   help="with --all: derive N blocks at once in separate processes (default 1)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--out", metavar="FILE", help="also write the JSON here")
    p.set_defaults(func=run)


def factory_for(name: str, args: argparse.Namespace, impl: str) -> Callable[[], Any]:
    """An ``nn.Module`` factory for a registered block (the symbolic derivation takes any factory)."""
    options = block_options(name, args)

    def build() -> Any:
        return blocks.build(name, args.channels, args.key_channels, args.value_channels, impl=impl, **options)

    return build


def derive_one(factory: Callable[[], Any], args: argparse.Namespace) -> tuple[dict[str, Any], Any, float]:
    """(JSON object, Derivation, seconds) of one target."""
    from isaprof.symbolic.peak import derive_all, derive_peak
    from isaprof.symbolic.trace import derive

    start = time.perf_counter()
    layout = getattr(args, "layout", "map")
    with_peak = args.peak and not args.batch_symbol  # the tracker's peak in H, W (batch 1), or why not

    def costs(size: tuple[int, int]) -> tuple[Any, Any]:
        """(Derivation, PeakDerivation or None) traced at ``size``: one symbolic run for all three."""
        if with_peak:
            return derive_all(factory, args.channels, size, mode=args.mode, layout=layout)
        d = derive(
            factory, args.channels, size, mode=args.mode, batch_symbol=args.batch_symbol, layout=layout
        )
        return d, None

    d, peak = costs(args.size)
    at = args.size
    again = getattr(args, "also_size", None)
    peak2 = None
    if again and _conditions(d.macs.valid_when):  # a narrow region at --size: try the other size
        d2, peak2 = costs(again)
        if len(_conditions(d2.macs.valid_when)) < len(_conditions(d.macs.valid_when)):
            d = d2
    obj = d.to_json()
    obj["traced_at"] = "x".join(map(str, d.traced_at))
    if peak is not None:
        narrow = peak.derived is not None and _conditions(peak.derived.valid_when)
        if again and narrow:
            if peak2 is None:
                peak2 = derive_peak(factory, args.channels, again, mode=args.mode, layout=layout)
            if peak2.derived is not None and len(_conditions(peak2.derived.valid_when)) < len(narrow):
                peak, at = peak2, again
        obj["peak_bytes"] = {**peak.to_json(), "traced_at": "x".join(map(str, at))}
    return obj, d, time.perf_counter() - start


def _conditions(valid_when: Any) -> list[Any]:
    """The conditions that are more than a lower bound on H, W or H W (divisibility, equalities)."""
    return [g for g in valid_when if not (g.is_Relational and g.rel_op == ">=" and g.rhs.is_Number)]


def run(args: argparse.Namespace) -> int:
    if args.all == bool(args.name):
        raise ValueError("give one block name or --all")
    if args.layout == "tokens" and (args.all or blocks.spec(args.name).standard_contract):
        what = "every registered block" if args.all else f"block {args.name!r}"
        raise ValueError(f"{what} takes a map (B, C, H, W); layout 'tokens' (B, N, C) is for modules "
                         "that take a sequence")  # fmt: skip
    if not args.all:
        factory = factory_for(args.name, args, args.impl)
        obj, d, secs = derive_one(factory, args)
        _write(args, obj)
        print(json.dumps(obj, indent=2) if args.json else text(args.name, d, secs, obj.get("peak_bytes")))
        return 0
    jobs = [(name, impl) for name in blocks.names() for impl in blocks.spec(name).impls]
    if args.jobs > 1:  # one block per process (spawned: a fresh torch each), results in the usual order
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(
            min(args.jobs, len(jobs)), mp_context=multiprocessing.get_context("spawn")
        ) as ex:
            done = list(ex.map(_one, [n for n, _ in jobs], [i for _, i in jobs], [args] * len(jobs)))
    else:
        done = [_one(name, impl, args) for name, impl in jobs]
    rows = []
    for row, message in done:
        rows.append(row)
        if "error" in row:
            print(message, file=sys.stderr)
        elif not args.json:
            print(message)
    out: dict[str, Any] = {"channels": args.channels, "mode": args.mode, "blocks": rows}
    if "isa" in blocks.names() and args.mode == "inference":
        out["isa_optimum"] = _isa_optimum(args)
    _write(args, out)
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


def _one(name: str, impl: str, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """(``derived.json`` row, text) of one block and impl; a ``NotSymbolic`` becomes an ``error`` row."""
    from isaprof.symbolic.trace import NotSymbolic

    try:
        obj, d, secs = derive_one(factory_for(name, args, impl), args)
    except NotSymbolic as e:
        return {"block": name, "impl": impl, "mode": args.mode, "error": str(e)}, f"{name} {impl}: {e}"
    row = {"block": name, "impl": impl, "mode": args.mode, "channels": args.channels,
           "seconds": round(secs, 2), **obj}  # fmt: skip
    return row, text(f"{name} [{impl}]", d, secs, obj.get("peak_bytes"))


def _isa_optimum(args: argparse.Namespace) -> dict[str, Any]:
    """``isa_optimum`` of ``derived.json`` (isaprof/symbolic/optima.py), or ``{"error": ...}``."""
    from isaprof.symbolic.optima import isa_optimum

    start = time.perf_counter()
    try:
        obj = isa_optimum(args.channels)
    except ValueError as e:
        print(f"isa optimum: {e}", file=sys.stderr)
        return {"error": str(e)}
    obj["seconds"] = round(time.perf_counter() - start, 2)
    if not args.json:
        print(f"isa: {obj['optimum']} minimises {obj['attention']}")
        for size, best in obj["at"].items():
            print(f"  at {size}: best factors {', '.join(best['factors'])} ({best['macs']:,} MACs)")
    return obj


def _write(args: argparse.Namespace, obj: Any) -> None:
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")


def text(title: str, d: Any, secs: float, peak: dict[str, Any] | None = None) -> str:
    """A readable account of a :class:`isaprof.symbolic.trace.Derivation` (conditions as
    :func:`isaprof.symbolic.canonical.readable` writes them: ``Mod(H, 8) = 0``)."""
    from isaprof.symbolic.canonical import readable

    lines = [f"{title}  (traced at {d.traced_at[0]}x{d.traced_at[1]}, {secs:.1f} s)"]
    for label, x in (("MACs", d.macs), ("bytes moved", d.bytes_moved)):
        if x is None:  # the cause is the derivation's note on it
            why = next((n.split(": ", 1)[1] for n in d.notes if n.startswith(f"{label}: ")), "not derived")
            lines.append(f"  {label}: - ({why})")
            continue
        lines.append(f"  {label} = {units.expression(str(x.expression))}")
        if x.leading is not None:
            where = " on square maps (H = W)" if x.square_maps else ""
            lines.append(f"    leading {x.leading}: N^{x.exponent}{where}, N = H*W")
        valid = " and ".join(readable(g) for g in x.valid_when) or "every size"
        lines.append(f"    valid when {valid}  ({x.dropped} guard(s) of torch's did not change it)")
        lines.append(f"    confirmed numerically at {', '.join('x'.join(map(str, p)) for p in x.checked)}")
    if peak is not None:
        shown = units.expression(peak["expression"] or "-")
        lines.append(f"  peak bytes = {shown}  (numeric at the traced size: {peak['numeric_at_traced']})")
        lines.append(f"    {units.expression(peak['reason'])}")
        if "[" in shown:
            lines.append(f"    ({units.IVERSON})")
    shown = d.bytes_moved is None  # its note already given as the reason
    lines += [f"  note: {n}" for n in d.notes if not (shown and n.startswith("bytes moved: "))]
    return "\n".join(lines)
