"""``isaprof predict NAME --gpu GPU ...``: a lower bound on a block's latency on a catalogued GPU (or this
CPU), from its counted FLOPs and bytes moved per op. A bound, not a measurement."""

from __future__ import annotations

import argparse
import json
from typing import Any

from isaprof import units
from isaprof.cli import _args, profile_cmd
from isaprof.config import BACKENDS, Config


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="lower bound on latency on a GPU (datasheet roofs) or this CPU: a bound, not a measurement",
        description="Sum over op calls of max(FLOPs / matrix peak, bytes moved / bandwidth), split by the "
        "limiting roof, with whether the predicted peak memory fits the device. A bound, not a measurement.",
    )
    p.add_argument("name", metavar="TARGET", help=_args.TARGET_HELP)
    p.add_argument("--gpu", required=True, metavar="NAME", help="a key of reference/devices.toml, or cpu")
    _args.add_schema_flags(
        p,
        Config,
        skip={"device"},
        backend=dict(choices=BACKENDS[:2], help="sdpa kernel counted (meta: math or flash)"),
    )
    p.add_argument(
        "--tf32", action="store_true", help="float32 matrix ops on TF32 tensor cores (default: FP32)"
    )
    p.add_argument("--json", action="store_true", help="print the bound as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from isaprof.roofline.bound import roofs_for

    options = profile_cmd.block_options(args.name, args)
    roofs = roofs_for(args.gpu, args.dtype, args.tf32)
    result = predict(args, options, roofs)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def predict(args: argparse.Namespace, options: dict[str, Any], roofs: Any) -> dict[str, Any]:
    """The bound's JSON object for the parsed arguments (:func:`isaprof.roofline.bound.predict` on
    ``roofs``)."""
    from isaprof.roofline.bound import predict as bound_of

    return bound_of(args.name, roofs, **Config.from_args(args), **options)


def table(r: dict[str, Any]) -> str:
    """A readable summary of :func:`predict`'s object."""
    fmt = units.quantity
    c = r["config"]
    fits = {True: "yes", False: "NO", None: "unknown"}[r["fits"]]
    lines = [
        f"LOWER BOUND (not a measurement) for {c['block']} B={c['batch']} C={c['channels']} "
        f"{c['height']}x{c['width']} {c['dtype']} {c['mode']} impl={c['impl']} on {r['device']}",
        f"roofs: {units.si(r['matrix_tflops'] * 1e12, 'FLOP/s', 3)} ({r['peak_used']}), "
        f"{units.si(r['bandwidth_gbs'] * 1e9, 'B/s', 3)}; "
        f"ridge {r['ridge_flop_per_byte']:.1f} FLOP/byte",
        f"work: {fmt(r['flops'], 'FLOP')}, {fmt(r['bytes_moved'], 'byte')} moved "
        f"(intensity {r['intensity_flop_per_byte']:.2f} FLOP/byte)",
        f"bound: {units.ms(r['bound_ms'])} = {units.ms(r['compute_ms'])} compute-bound + "
        f"{units.ms(r['memory_ms'])} memory-bound",
        f"peak memory {fmt(r['peak_bytes'], 'byte', empty='-')} of "
        f"{fmt(r['memory_bytes'], 'byte', empty='-')}: fits {fits}",
        f"{'op':<46} {'calls':>5} {'bound ms':>10} {'compute':>10} {'memory':>10}",
    ]
    for op, v in r["by_op"].items():
        times = " ".join(f"{units.sig(v[k]):>10}" for k in ("bound_ms", "compute_ms", "memory_ms"))
        lines.append(f"{op:<46} {v['calls']:>5} {times}")
    if r.get("by_class"):
        lines.append(f"op classes ({r['algorithms']} rules; L2-proof bound {units.ms(r['l2_bound_ms'])}): "
                     "each bounded under the cheapest algorithm its library may pick")  # fmt: skip
        lines.append(f"{'class':<14} {'calls':>5} {'bound ms':>10} {'FLOP':>10} {'as run':>10}  assumption")
        for cls, v in r["by_class"].items():
            flops = " ".join(f"{units.si(v[k], '', 3):>10}" for k in ("flops", "effective_flops"))
            lines.append(
                f"{cls:<14} {v['calls']:>5} {units.sig(v['bound_ms']):>10} {flops}  {v['assumption']}"
            )
    if r["uncounted_ops"]:
        lines.append(
            f"WARNING: matrix ops with no FLOP formula (bounded by bytes only): {r['uncounted_ops']}"
        )
    return "\n".join(lines)
