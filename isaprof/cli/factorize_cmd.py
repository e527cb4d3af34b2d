"""``isaprof factorize --size HxW``: every ISA factor (P_h, P_w) of a size, its cost, and the best one."""

from __future__ import annotations

import argparse
import json
import sys

from isaprof import units
from isaprof.cli._args import positive_int, size


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``factorize`` subcommand."""
    from isaprof.studies.factorize import METRICS

    p = sub.add_parser(
        "factorize",
        help="list every ISA factor of a size with analytic and measured cost; name the best",
        description="Every padding-minimal ISA factor (P_h, P_w) of an H x W map "
        "(see isaprof.studies.factorize), "
        "with closed-form MACs and peak bytes, the same measured on meta, optionally cpu latency.",
    )
    p.add_argument("--size", type=size, required=True, help="map size HxW, e.g. 97x97")
    p.add_argument(
        "--channels", type=positive_int, default=512, help="input channels C (default: %(default)s)"
    )
    p.add_argument("--key-channels", type=positive_int, help="default: the block's (C/2)")
    p.add_argument("--value-channels", type=positive_int, help="default: the block's (C/2)")
    p.add_argument("--batch", type=positive_int, default=1)
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument("--impl", choices=("naive", "sdpa"), default="naive")
    p.add_argument("--metric", choices=METRICS, default="macs", help="what 'best' minimises (default: macs)")
    p.add_argument("--latency", action="store_true", help="also time every factor on cpu (slow)")
    p.add_argument("--analytic-only", action="store_true", help="closed form only, no meta profiling")
    p.add_argument("--full", action="store_true", help="every P_h <= H, P_w <= W, not only padding-minimal")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar while measuring")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the factor table (or JSON); returns the exit status."""
    from isaprof.studies.factorize import factorize

    rows = factorize(
        args.size,
        channels=args.channels,
        key_channels=args.key_channels,
        value_channels=args.value_channels,
        batch=args.batch,
        mode=args.mode,
        impl=args.impl,
        metric=args.metric,
        measure=not args.analytic_only,
        latency=args.latency,
        full=args.full,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    best = next((r.as_dict()["factor"] for r in rows if r.best), None)
    mbest = next((r.as_dict()["factor"] for r in rows if r.measured_best), None)
    if args.json:
        doc = {
            "size": "{}x{}".format(*args.size),
            "metric": args.metric,
            "best": best,
            "measured_best": mbest,
        }
        print(json.dumps({**doc, "factors": [r.as_dict() for r in rows]}, indent=1))
        return 0
    cols = [
        ("factor", "factor", None),
        ("groups", "groups", None),
        ("padded", "padded", None),
        ("macs", "macs", "MAC"),
        ("measured_macs", "measured_macs", "MAC"),
        ("peak_bytes", "peak_bytes", "byte"),
        ("measured_peak_bytes", "measured_peak_bytes", "byte"),
        ("latency_ms", "latency_ms", "ms"),
    ]
    marks = [("*" if r.best else "") + ("m" if r.measured_best else "") for r in rows]
    table = [
        [
            _cell(r.as_dict()[key], unit) + ("~" if key == "latency_ms" and r.latency_noisy else "")
            for _, key, unit in cols
        ]
        + [mark]
        for r, mark in zip(rows, marks, strict=True)
    ]
    header = [name for name, _, _ in cols] + ["best"]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(_footer(args, rows, best, mbest))
    return 0


def _footer(args: argparse.Namespace, rows: list, best: str | None, mbest: str | None) -> str:
    """What was listed, the best factor by the metric (analytic, measured) and what the marks mean."""
    parts = [f"analytic {best}"] if best else []
    if mbest:
        parts.append(f"measured {mbest}")
    elif args.analytic_only:
        parts.append("measured: not run (--analytic-only)")
    text = f"{len(rows)} factors of {args.size[0]}x{args.size[1]}; best by {args.metric}: {', '.join(parts)}"
    text += "  (* analytic best, m measured best)"
    noisy = sum(bool(r.latency_noisy) for r in rows)
    if noisy:
        text += (
            f"\nWARNING: {noisy} of {len(rows)} latencies are noisy (~: IQR > 10% of the median); "
            "a best by latency among them is not reliable"
        )
    return text


def _cell(value: object, unit: str | None) -> str:
    """A table cell: ``-`` for not measured, numbers scaled for reading (k/M/G MAC, KiB/MiB, ms)."""
    if value is None:
        return "-"
    if unit is None:
        return str(value)
    return units.quantity(value, unit).replace(" ", "")
