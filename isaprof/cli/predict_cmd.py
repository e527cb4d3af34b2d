"""``isaprof predict NAME --gpu GPU ...``: a lower bound on a block's latency on a catalogued GPU (or this
CPU), from its counted FLOPs and bytes moved per op. A bound, not a measurement."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from isaprof import blocks
from isaprof.cli import _args, profile_cmd

ITEMSIZE = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "predict",
        help="lower bound on latency on a GPU (datasheet roofs) or this CPU: a bound, not a measurement",
        description="Sum over op calls of max(FLOPs / matrix peak, bytes moved / bandwidth), split by the "
        "limiting roof, with whether the predicted peak memory fits the device. A bound, not a measurement.",
    )
    p.add_argument("name", help=f"block name: {', '.join(blocks.names())}")
    p.add_argument("--gpu", required=True, metavar="NAME", help="a key of reference/devices.toml, or cpu")
    p.add_argument("--size", type=_args.size, required=True, metavar="HxW", help="input height x width")
    p.add_argument("--channels", type=_args.positive_int, required=True, metavar="C")
    p.add_argument("--key-channels", type=_args.positive_int, metavar="CK", help="default: the block's")
    p.add_argument("--value-channels", type=_args.positive_int, metavar="CV", help="default: the block's")
    p.add_argument("--batch", type=_args.positive_int, default=1)
    p.add_argument("--factor", type=_args.factor, metavar="PHxPW", help="blocks with a factor option (isa)")
    p.add_argument(
        "--recurrence", type=_args.positive_int, metavar="R", help="blocks with a recurrence option"
    )
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="any block option, VALUE a Python literal (repeatable)")  # fmt: skip
    p.add_argument("--impl", choices=("naive", "sdpa"), default="naive")
    p.add_argument(
        "--backend", choices=profile_cmd.BACKENDS[:2], help="sdpa kernel counted (meta: math or flash)"
    )
    p.add_argument("--path", choices=profile_cmd.PATHS, default="reference")
    p.add_argument("--dtype", choices=profile_cmd.DTYPES, default="float32")
    p.add_argument("--mode", choices=("inference", "train"), default="inference")
    p.add_argument(
        "--tf32", action="store_true", help="float32 matrix ops on TF32 tensor cores (default: FP32)"
    )
    p.add_argument("--json", action="store_true", help="print the bound as JSON")
    p.set_defaults(func=run)


def cpu_roofs(dtype: str) -> Any:
    """This machine's roofs from ``isaprof.measure.roofs.machine_roofs()`` (fp32 matmul FLOP/s, bytes/s)."""
    from isaprof.predict import Roofs

    try:
        from isaprof.measure.roofs import machine_roofs  # type: ignore[import-not-found]
    except ImportError as e:
        raise ValueError(
            "--gpu cpu needs this machine's measured roofs (isaprof machine), not available here"
        ) from e
    if dtype != "float32":
        raise ValueError(f"--gpu cpu has a measured float32 matmul peak only, not {dtype}")
    got = machine_roofs()
    cpu = got.get("cpu", got) if isinstance(got, dict) else vars(got)
    try:
        flops, bandwidth = float(cpu["matmul_gflops"]) * 1e9, float(cpu["bandwidth_gbs"]) * 1e9
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"machine roofs lack matmul_gflops / bandwidth_gbs: {cpu!r}") from None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = None
    return Roofs("cpu (measured)", flops, bandwidth, "measured fp32 matmul peak (isaprof machine)", memory)


def gpu_roofs(name: str, dtype: str, tf32: bool) -> Any:
    """Roofs of catalogued GPU ``name`` for matrix ops in ``dtype`` (``ValueError`` if unknown / no peak)."""
    from isaprof import devices
    from isaprof.predict import Roofs

    d = devices.get(name)
    if tf32 and dtype != "float32":
        raise ValueError(f"--tf32 applies to float32 only, not {dtype}")
    flops, which = d.matrix_peak(dtype, tf32)
    return Roofs(d.key, flops, d.bandwidth, f"{which}, {d.source}", d.memory_bytes)


def run(args: argparse.Namespace) -> int:
    options = profile_cmd.block_options(args.name, args)
    profile_cmd.check_build(args, options)
    if args.gpu.strip().lower() == "cpu":
        if args.tf32:
            raise ValueError("--tf32 applies to GPUs only")
        roofs = cpu_roofs(args.dtype)
    else:
        roofs = gpu_roofs(args.gpu, args.dtype, args.tf32)
    result = predict(args, options, roofs)
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


def predict(args: argparse.Namespace, options: dict[str, Any], roofs: Any) -> dict[str, Any]:
    """The bound's JSON object for the parsed arguments (counts on fake tensors, then ``predict.bound``)."""
    from isaprof.predict import OpCost, bound
    from isaprof.run import profile

    rec = profile(
        args.name, size=args.size, channels=args.channels, key_channels=args.key_channels,
        value_channels=args.value_channels, batch=args.batch, device="meta", dtype=args.dtype, mode=args.mode,
        impl=args.impl, backend=args.backend, path=args.path, latency=None, **options,
    )  # fmt: skip
    b = bound((OpCost(c.op, c.flops, c.bytes) for c in rec.bytes_moved.calls), roofs)
    # resident: parameters and the input (buffers, a few per BatchNorm, left out); the call's own peak as the
    # CUDA allocator would count it (GPUs) or exact storage bytes (cpu)
    item = ITEMSIZE[args.dtype]
    resident = (rec.params + args.batch * args.channels * args.size[0] * args.size[1]) * item
    call_peak = rec.peak_bytes if roofs.device.startswith("cpu") else rec.peak_bytes_cuda_predicted
    out = b.to_json(peak_bytes=resident + call_peak)
    out["config"] = rec.config.columns(rec.padded)
    out["flop_counter_flops"] = rec.flop_count.flops  # FlopCounterMode's total, for cross-checking "flops"
    out["uncounted_ops"] = list(rec.flop_count.uncounted)
    return out


def table(r: dict[str, Any]) -> str:
    """A readable summary of :func:`predict`'s object."""
    fmt = profile_cmd.fmt
    c = r["config"]
    fits = {True: "yes", False: "NO", None: "unknown"}[r["fits"]]
    lines = [
        f"LOWER BOUND (not a measurement) for {c['block']} B={c['batch']} C={c['channels']} "
        f"{c['height']}x{c['width']} {c['dtype']} {c['mode']} impl={c['impl']} on {r['device']}",
        f"roofs: {r['matrix_tflops']:.1f} TFLOP/s ({r['peak_used']}), {r['bandwidth_gbs']:.0f} GB/s; "
        f"ridge {r['ridge_flop_per_byte']:.1f} FLOP/byte",
        f"work: {fmt(r['flops'], 'FLOP')}, {fmt(r['bytes_moved'], 'byte')} moved "
        f"(intensity {r['intensity_flop_per_byte']:.2f} FLOP/byte)",
        f"bound: {r['bound_ms']:.4f} ms = {r['compute_ms']:.4f} ms compute-bound + "
        f"{r['memory_ms']:.4f} ms memory-bound",
        f"peak memory {fmt(r['peak_bytes'], 'byte')} of {fmt(r['memory_bytes'], 'byte')}: fits {fits}",
        f"{'op':<46} {'calls':>5} {'bound ms':>10} {'compute':>10} {'memory':>10}",
    ]
    for op, v in r["by_op"].items():
        times = f"{v['bound_ms']:>10.4f} {v['compute_ms']:>10.4f} {v['memory_ms']:>10.4f}"
        lines.append(f"{op:<46} {v['calls']:>5} {times}")
    if r["uncounted_ops"]:
        lines.append(
            f"WARNING: matrix ops with no FLOP formula (bounded by bytes only): {r['uncounted_ops']}"
        )
    return "\n".join(lines)
