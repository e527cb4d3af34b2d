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
from isaprof.config import Config, RunSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "profile",
        help="profile one block configuration (MACs, peak bytes, params, latency) against its formula",
        description="Profile one block configuration and compare each measurement with its closed form.",
    )
    p.add_argument("name", metavar="TARGET", help=_args.TARGET_HELP)
    _args.add_schema_flags(p, Config)
    _args.add_schema_flags(p, RunSettings)
    add_output(p)
    p.add_argument(
        "--gpu",
        metavar="NAME",
        help="step mode: does it fit on this GPU (reference/devices.toml), and the largest batch that does",
    )
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.add_argument(
        "--force", action="store_true", help="cpu/cuda: run even if the predicted peak memory does not fit"
    )
    p.set_defaults(func=run)


def add_output(p: argparse.ArgumentParser) -> None:
    """``--output KEY``: the entry of a dict / tuple output that train mode back-propagates."""
    p.add_argument(
        "--output",
        metavar="KEY",
        help="a module returning a dict or tuple: the entry train mode back-propagates (a key or an "
        "index; default: the sum of its floating tensor outputs)",
    )


def parse_options(texts: list[str]) -> dict[str, Any]:
    """``--option KEY=VALUE`` words as a dict, each VALUE a Python literal (a bare word: a string);
    ``ValueError`` for a malformed word or a key given twice."""
    options: dict[str, Any] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option must look like KEY=VALUE, got {text!r}")
        if key.strip() in options:
            raise ValueError(f"--option {key.strip()} is given twice")
        try:
            options[key.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            options[key.strip()] = value.strip()  # a bare word: a string
    return options


def block_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Block options from ``--factor``, ``--recurrence`` and ``--option``; ``ValueError`` if the block
    has no such option (the registry's ``spec(name).options`` decides)."""
    target = blocks.spec(name)
    known = target.options  # ValueError if an import path does not import (which, and why)
    options = parse_options(args.option)
    for opt in ("factor", "recurrence"):
        value = getattr(args, opt, None)
        if value is None:
            continue
        if opt in options:
            raise ValueError(f"--{opt} and --option {opt}=... both give {opt}: give it once")
        if opt not in known and not target.open_options:
            having = [n for n in blocks.names() if opt in blocks.spec(n).options]
            raise ValueError(f"--{opt} applies only to blocks with a {opt} option ({', '.join(having)})")
        options[opt] = value
    unknown = [] if target.open_options else sorted(set(options) - set(known))
    if unknown:
        allowed = ", ".join(f"{k}={v!r}" for k, v in known.items()) or "none"
        raise ValueError(f"block {name!r} has no option(s) {', '.join(unknown)}; allowed: {allowed}")
    return options


def run(args: argparse.Namespace) -> int:
    from isaprof.profiling import guard
    from isaprof.profiling.profiler import profile

    # a bad option value is refused by the block's own constructor, on meta, inside profile (and the guard)
    options = block_options(args.name, args)
    # resolved once: the guard and the profile share it (one build on meta for the guard off meta, one
    # build on the device for the profile)
    config = blocks.configure(args.name, **Config.from_args(args), **options)
    if not args.force:
        guard.check_fits(config)  # MemoryRefused (a ValueError: exit 2) before allocating
    settings = RunSettings.from_args(args)
    if args.gpu is not None and config.mode != "step":
        raise ValueError("--gpu answers whether a training step fits: give --mode step")
    with guard.addressable(args.size):
        record = profile(config, **settings.kwargs(), output=args.output)
    for line in record.warnings:  # stderr (and the record's notes): stdout stays valid JSON under --json
        print(f"isaprof profile: warning: {line}", file=sys.stderr)
    verdict = fit(record, args.gpu, settings) if args.gpu is not None else None
    if args.json:
        print(json.dumps({**record.to_json(), **({"gpu": verdict} if verdict else {})}, indent=2))
    else:
        print(table(record))
        if verdict is not None:
            print(fit_lines(verdict))
    if args.by_module and not args.json:
        from isaprof.measure.modules import ModuleBreakdown
        from isaprof.measure.modules import table as module_table

        print(module_table(ModuleBreakdown(record.by_module, record.macs, record.peak_bytes)))
    if record.flop_count.uncounted:  # stderr: stdout stays valid JSON under --json
        print(f"warning: {uncounted_line(record.flop_count.uncounted)}", file=sys.stderr)
    return 0


def fit(record: Any, gpu: str, settings: RunSettings) -> dict[str, Any]:
    """Whether the step fits on ``gpu``: the predicted reserved bytes (the caching allocator's segments, what
    it takes from the device) against the card's memory, and the largest batch that fits (a search over
    batch sizes on meta, each predicted like this one)."""
    from isaprof.measure.training import largest_batch
    from isaprof.profiling.profiler import step_memory
    from isaprof.roofline import devices

    device = devices.get(gpu)
    capacity = int(device.memory_gb * 1e9)
    step = settings.step_settings()
    config = record.config

    def reserved(batch: int) -> int:
        if batch == config.batch and record.step_memory.cuda_reserved is not None:
            return record.step_memory.cuda_reserved
        keywords = {k: v for k, v in config.kwargs().items() if k != "block"}
        return step_memory(
            blocks.configure(config.block, **{**keywords, "batch": batch}), **step
        ).cuda_reserved

    need = reserved(config.batch)
    return {
        "name": device.name,
        "memory_bytes": capacity,
        "reserved_predicted": need,
        "fits": need <= capacity,
        "largest_batch": largest_batch(reserved, capacity),
    }


def fit_lines(verdict: dict[str, Any]) -> str:
    """``fits: yes/no`` and ``largest batch: N`` with the figures behind them."""
    need, cap = verdict["reserved_predicted"], verdict["memory_bytes"]
    return (
        f"fits: {'yes' if verdict['fits'] else 'no'} ({units.quantity(need, 'byte')} reserved predicted, "
        f"{verdict['name']} has {units.quantity(cap, 'byte')}; the CUDA context is not counted)\n"
        f"largest batch: {verdict['largest_batch']}"
    )


def uncounted_line(uncounted: dict[str, int]) -> str:
    """One line naming the ops that ran without a FLOP formula, with their call counts."""
    ops = ", ".join(f"{op} x{n}" for op, n in uncounted.items())
    return f"ops with no FLOP formula, counted as 0 MACs: {ops}"


def widths(record: Any) -> str:
    """``B=.. C=.. Ck=.. Cv=..`` as the module took them: ``C`` the input's real width (a module's
    ``in_channels`` wins over ``--channels``), ``Ck``/``Cv`` only where its constructor takes them."""
    cfg = record.config
    shape = record.input_shape
    c = (shape[2] if cfg.layout == "tokens" else shape[1]) if shape else cfg.channels
    s = blocks.spec(cfg.block)
    kv = "".join(
        f" {label}={getattr(cfg, name)}"
        for label, name in (("Ck", "key_channels"), ("Cv", "value_channels"))
        if s.takes(name)
    )
    return f"B={cfg.batch} C={c}{kv}"


def table(record: Any) -> str:
    """A readable table of a :class:`isaprof.profiling.profiler.Record`."""
    rows = record.rows()
    c = rows[0]
    opts = "" if c["options"] == "{}" else f" options={c['options']}"
    padded = f" (computed on {c['padded_height']}x{c['padded_width']})" if c["padded_height"] else ""
    head = (
        f"{c['block']}  {widths(record)}  {c['height']}x{c['width']}{padded}{opts}\n"
        f"impl={c['impl']} backend={c['backend'] or '-'} path={c['path']} "
        f"{c['dtype']} {c['device']} {c['mode']}{' tokens (B, N, C)' if c['layout'] == 'tokens' else ''}  "
        f"[{c['device_name']}, torch {c['torch']}, {c['threads']} threads]"
    )
    lines = [head, f"{'metric':<12} {'measured':>20} {'analytic':>20} {'diff':>9}"]
    for r in rows:
        m, a = r["measured"], r["analytic"]
        diff = f"{(a - m) / m:+.2%}" if m and a is not None else "-"
        if r["metric"] in ("latency_ms", "peak_fraction"):
            diff = f"IQR {units.quantity(r['spread'], r['unit'])}"
        shown = (units.quantity(v, r["unit"], empty="-") for v in (m, a))
        lines.append(f"{r['metric']:<12} {next(shown):>20} {next(shown):>20} {diff:>9}")
    peak = record.latency.peak_fraction if record.latency else None
    if peak is not None:
        from isaprof.measure.latency import PEAK_GEMM

        lines.append(
            f"peak_fraction: FLOP rate / the rate of a {PEAK_GEMM}^3 fp32 sgemm timed interleaved with it "
            f"({units.si(peak.gemm_gflops * 1e9, 'FLOP/s')} in this run)"
        )
    ph, pw, h, w = c["padded_height"], c["padded_width"], c["height"], c["width"]
    if ph and int(ph) * int(pw) > 2 * h * w:  # padding beyond rounding up to the factor
        lines.append(
            f"WARNING: computed on {ph}x{pw}, {int(ph) * int(pw) / (h * w):.0f} times the positions of "
            f"the {h}x{w} input (padded to the factor, which is larger than the map)"
        )
    if record.step_memory is not None:
        lines += step_lines(record.step_memory)
    if record.flop_count.uncounted:
        lines.append(f"WARNING: {uncounted_line(record.flop_count.uncounted)}")
    if record.latency is not None and record.latency.noisy:
        lines.append("WARNING: noisy latency (IQR > 10% of the median)")
    lines += [f"note: {n}" for n in record.notes]
    return "\n".join(lines)


def step_lines(m: Any) -> list[str]:
    """Mode "step"'s figures: the absolute peak, its parts and the CUDA allocator's predicted figures."""
    q = units.quantity
    resident = ", ".join(f"{k} {q(v, 'byte')}" for k, v in m.resident.items() if v)
    owners = ", ".join(f"{k} {q(v, 'byte')}" for k, v in m.by_owner.items())
    lines = [
        f"step peak (tensors, absolute): {q(m.total, 'byte')} in {m.phase} at {m.op}",
        f"  resident {q(m.resident_total, 'byte')}: {resident}",
        f"  above it: saved activations {q(m.activations, 'byte')}, transient {q(m.transient, 'byte')}"
        + (f" (scratch {q(m.scratch, 'byte')})" if m.scratch else ""),
        f"  by who allocated: {owners}",
    ]
    if m.cuda_allocated is not None:
        lines.append(
            f"CUDA predicted: max_memory_allocated {q(m.cuda_allocated, 'byte')}, "
            f"reserved {q(m.cuda_reserved, 'byte')}"
        )
    return lines
