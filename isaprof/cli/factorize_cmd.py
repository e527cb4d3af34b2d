"""``isaprof factorize --size HxW``: every ISA factor (P_h, P_w) of a size, its cost, and the best one."""

from __future__ import annotations

import argparse
import json

from isaprof.cli._args import positive_int, size


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``factorize`` subcommand."""
    from isaprof.factorize import METRICS

    p = sub.add_parser(
        "factorize",
        help="list every ISA factor of a size with analytic and measured cost; name the best",
        description="Every padding-minimal ISA factor (P_h, P_w) of an H x W map (see isaprof.factorize), "
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the factor table (or JSON); returns the exit status."""
    from isaprof.factorize import factorize

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
        "factor",
        "groups",
        "padded",
        "macs",
        "measured_macs",
        "peak_bytes",
        "measured_peak_bytes",
        "latency_ms",
    ]
    marks = [("*" if r.best else "") + ("m" if r.measured_best else "") for r in rows]
    table = [[_cell(r.as_dict()[c]) for c in cols] + [mark] for r, mark in zip(rows, marks, strict=True)]
    header = cols + ["best"]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True)))
    for row in table:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(f"{len(rows)} factors of {args.size[0]}x{args.size[1]}; best by {args.metric}: analytic {best}, "
          f"measured {mbest}  (* analytic best, m measured best)")  # fmt: skip
    return 0


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
