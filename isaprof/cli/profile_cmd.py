"""``isaprof profile NAME --size HxW --channels C ...``: profile one configuration, print a table or JSON."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from typing import Any

from isaprof import targets as blocks
from isaprof import units
from isaprof.cli import _args
from isaprof.config import BACKENDS, DTYPES, LATENCY_PROTOCOLS, MODES, PATHS, normalize_device


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="profile one block configuration (MACs, peak bytes, params, latency) against its formula",
        description="Profile one block configuration and compare each measurement with its closed form.",
    )
    p.add_argument("name", metavar="TARGET", help=_args.TARGET_HELP)
    p.add_argument("--size", type=_args.size, required=True, metavar="HxW", help="input height x width")
    _args.add_widths(p)
    p.add_argument("--batch", type=_args.positive_int, default=1)
    _args.add_options(p)
    p.add_argument("--impl", choices=("naive", "sdpa"), default="naive")
    p.add_argument("--backend", choices=BACKENDS, help="sdpa kernel (default: per device)")
    p.add_argument(
        "--path", choices=PATHS, default="reference", help="reference block or its inference fast path"
    )
    p.add_argument("--device", type=_device, default="meta", metavar="DEVICE",
                   help="meta (fake tensors, default), cpu, cuda or cuda:N")  # fmt: skip
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--mode", choices=MODES, default="inference")
    p.add_argument("--latency", choices=(*LATENCY_PROTOCOLS, "none"), default="quick", help="cpu/cuda only")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.add_argument("--by-module", action="store_true",
                   help="MACs and peak bytes per submodule too ('by_module' in JSON)")  # fmt: skip
    p.add_argument(
        "--force", action="store_true", help="cpu/cuda: run even if the predicted peak memory does not fit"
    )
    p.set_defaults(func=run)


def _device(text: str) -> str:
    try:
        return normalize_device(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def block_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Block options from ``--factor``, ``--recurrence`` and ``--option``; ``ValueError`` if the block
    has no such option (the registry's ``spec(name).options`` decides)."""
    known = blocks.spec(name).options
    options: dict[str, Any] = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like KEY=VALUE, got {text!r}")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()  # a bare word: a string
    for opt in ("factor", "recurrence"):
        value = getattr(args, opt)
        if value is None:
            continue
        if opt not in known:
            having = [n for n in blocks.names() if opt in blocks.spec(n).options]
            raise ValueError(f"--{opt} applies only to blocks with a {opt} option ({', '.join(having)})")
        options[opt] = value
    unknown = sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    return options


def run(args: argparse.Namespace) -> int:
    from isaprof.profiling import guard
    from isaprof.profiling.profiler import profile

    # a bad option value is refused by the block's own constructor, on meta, inside profile (and the guard)
    options = block_options(args.name, args)
    kwargs = dict(**_args.config_kwargs(args), latency=args.latency, by_module=args.by_module, **options)
    if not args.force:
        guard.check_fits(args.name, **kwargs)  # MemoryRefused (a ValueError: exit 2) before allocating
    with guard.addressable(args.size):
        record = profile(args.name, **kwargs)
    print(json.dumps(record.to_json(), indent=2) if args.json else table(record))
    if args.by_module and not args.json:
        from isaprof.measure.modules import ModuleBreakdown
        from isaprof.measure.modules import table as module_table

        print(module_table(ModuleBreakdown(record.by_module, record.macs, record.peak_bytes)))
    if record.flop_count.uncounted:  # stderr: stdout stays valid JSON under --json
        print(f"warning: {uncounted_line(record.flop_count.uncounted)}", file=sys.stderr)
    return 0


def uncounted_line(uncounted: dict[str, int]) -> str:
    """One line naming the ops that ran without a FLOP formula, with their call counts."""
    ops = ", ".join(f"{op} x{n}" for op, n in uncounted.items())
    return f"ops with no FLOP formula, counted as 0 MACs: {ops}"


def table(record: Any) -> str:
    """A readable table of a :class:`isaprof.profiling.profiler.Record`."""
    rows = record.rows()
    c = rows[0]
    opts = "" if c["options"] == "{}" else f" options={c['options']}"
    padded = f" (computed on {c['padded_height']}x{c['padded_width']})" if c["padded_height"] else ""
    head = (
        f"{c['block']}  B={c['batch']} C={c['channels']} Ck={c['key_channels']} Cv={c['value_channels']}  "
        f"{c['height']}x{c['width']}{padded}{opts}\n"
        f"impl={c['impl']} backend={c['backend'] or '-'} path={c['path']} "
        f"{c['dtype']} {c['device']} {c['mode']}  "
        f"[{c['device_name']}, torch {c['torch']}, {c['threads']} threads]"
    )
    lines = [head, f"{'metric':<12} {'measured':>20} {'analytic':>20} {'diff':>9}"]
    for r in rows:
        m, a = r["measured"], r["analytic"]
        diff = f"{(a - m) / m:+.2%}" if m and a is not None else "-"
        if r["metric"] == "latency_ms":
            diff = f"IQR {r['spread']:.3f}"
        shown = (units.quantity(v, r["unit"], empty="-") for v in (m, a))
        lines.append(f"{r['metric']:<12} {next(shown):>20} {next(shown):>20} {diff:>9}")
    ph, pw, h, w = c["padded_height"], c["padded_width"], c["height"], c["width"]
    if ph and int(ph) * int(pw) > 2 * h * w:  # padding beyond rounding up to the factor
        lines.append(
            f"WARNING: computed on {ph}x{pw}, {int(ph) * int(pw) / (h * w):.0f} times the positions of "
            f"the {h}x{w} input (padded to the factor, which is larger than the map)"
        )
    if record.flop_count.uncounted:
        lines.append(f"WARNING: {uncounted_line(record.flop_count.uncounted)}")
    if record.latency is not None and record.latency.noisy:
        lines.append("WARNING: noisy latency (IQR > 10% of the median)")
    lines += [f"note: {n}" for n in record.notes]
    return "\n".join(lines)
