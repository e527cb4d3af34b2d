"""``isaprof table [TARGET ...] --size HxW --channels C``: the efficiency table of a paper, one row per
target: parameters, GFLOPs, peak memory, latency (real devices), each also as a ratio to dense attention.

Measuring happens here (``isaprof.profile`` per target and mode; torch imported inside :func:`run`);
the rows and their Markdown / CSV / LaTeX / JSON come from the torch-free :mod:`isaprof.studies.table`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from isaprof.cli import _args
from isaprof.config import DEVICES, DTYPES, Config
from isaprof.studies import table as tbl

# The papers' settings where they differ from nothing: ISA's down_factor (8, 8) (openseg isa_block.py),
# CCNet's recurrence R = 2. Equal to the registry's defaults today; stated so the table says which it used.
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {"isa": {"factor": (8, 8)}, "criss_cross": {"recurrence": 2}}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``table`` subcommand."""
    p = subparsers.add_parser(
        "table",
        help="the efficiency table: params, GFLOPs, peak memory, latency, each vs dense attention",
        description="One row per target (default: every built-in block with its paper's defaults): "
        "parameters, GFLOPs (= 2 x MACs), peak memory in MiB, latency with its IQR on a real device, and "
        "each cost as a ratio to dense attention on the same input. Markdown, CSV, LaTeX (booktabs) or JSON.",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="blocks (default: every built-in block)")
    p.add_argument("--size", type=_args.size, required=True, metavar="HxW", help="feature map H x W")
    _args.add_widths(p)
    p.add_argument("--batch", type=_args.positive_int, default=1)
    p.add_argument("--factor", type=_args.factor, metavar="PHxPW", help="ISA factor (default: 8x8)")
    p.add_argument("--recurrence", type=_args.positive_int, metavar="R", help="criss-cross R (default: 2)")
    p.add_argument("--mode", choices=tbl.MODES, default="inference")
    p.add_argument("--device", choices=DEVICES, default="meta", help="meta = fake tensors, no latency")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    # NB: checked in run, not by argparse choices, so an unknown format is the same one-line error as the rest
    p.add_argument("--format", default="markdown", help=f"one of: {', '.join(tbl.FORMATS)}")
    p.add_argument("--out", metavar="FILE", help="write the table here instead of stdout")
    p.add_argument(
        "--gpu", metavar="NAME", help="add a latency lower-bound column for this GPU (isaprof predict)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Measure every target, print or write the table; 0, or 1 when a target failed (its row says why)."""
    if args.format not in tbl.FORMATS:
        raise ValueError(f"unknown format {args.format!r}; allowed: {', '.join(tbl.FORMATS)}")
    from isaprof.roofline.bound import roofs_for  # no torch at import

    # an unknown GPU is one line before anything is measured
    roofs = roofs_for(args.gpu, args.dtype) if args.gpu else None
    import isaprof  # torch: only once the arguments are known to be good

    targets = list(dict.fromkeys(args.targets or isaprof.names()))
    options = {t: target_options(t, args) for t in targets}
    common = Config.from_args(args)  # size, widths, batch, device, dtype, mode
    measured = {t: measure(t, common, options[t], roofs) for t in targets}
    if tbl.BASELINE in measured:
        baseline = measured[tbl.BASELINE]
    else:  # dense on the same input, for the ratios only (no row)
        baseline = measure(tbl.BASELINE, common, {})
    latency = args.device != "meta"
    if latency:
        time_interleaved(measured, baseline, common["device"], args.mode)
    cols = tbl.columns(args.mode, latency=latency, bound=roofs is not None)
    rows = tbl.rows(
        [measured[t] for t in targets], baseline, args.mode, latency=latency, bound=roofs is not None
    )
    setting = {
        **common,  # the configuration flags this command has (Config.from_args)
        "size": list(args.size),
        "device_name": baseline.get("device_name") or "",
        "latency": latency,
        "gpu": args.gpu or "",
        "torch": baseline.get("torch") or "",
        "baseline": tbl.BASELINE,
    }
    text = tbl.render(rows, setting, args.format, cols)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    failed = [r["target"] for r in rows if r["status"] != "ok"]
    if failed:
        print(f"isaprof table: {len(failed)} target(s) failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def target_options(target: str, args: argparse.Namespace) -> dict[str, Any]:
    """The paper's options of ``target`` (:data:`PAPER_DEFAULTS`), ``--factor`` / ``--recurrence`` where
    the target takes them. ``ValueError`` for an unknown target (the registry's message)."""
    from isaprof import targets as blocks

    known = blocks.spec(target).options  # ValueError listing the known blocks
    opts = dict(PAPER_DEFAULTS.get(target, {}))
    for name in ("factor", "recurrence"):
        value = getattr(args, name, None)
        if value is not None and name in known:
            opts[name] = tuple(value) if isinstance(value, (list, tuple)) else value
    return opts


def measure(
    target: str, common: dict[str, Any], options: dict[str, Any], roofs: Any = None
) -> dict[str, Any]:
    """One measurement dict of :mod:`isaprof.studies.table` (each mode of ``common['mode']``) via
    ``isaprof.profile``, with ``bound_ms`` (:func:`isaprof.roofline.bound.predict` on ``roofs``, the
    table's first mode) when
    given.

    ``ValueError`` (bad input: the target refuses the configuration) propagates; any other failure
    (out of memory, a kernel error) becomes ``status`` ``oom`` / ``error`` with its one-line message.
    """
    import isaprof

    out: dict[str, Any] = {"target": target, "options": options, "status": "ok", "error": "", CONFIGS: {}}
    base = {k: v for k, v in common.items() if k != "mode"}
    try:
        for mode in tbl.modes_of(common["mode"]):
            rec = isaprof.profile(target, mode=mode, latency="none", **base, **options)
            out[CONFIGS][mode] = rec.config  # timed later, interleaved with dense (time_interleaved)
            config = rec.to_json()["config"]
            out.update(
                key_channels=config.get("key_channels"),
                value_channels=config.get("value_channels"),
                params=rec.params,
                device_name=rec.environment.get("device_name"),
                torch=rec.environment.get("torch"),
            )
            out[f"flops_{mode}"] = 2 * rec.macs  # FLOPs = 2 x MACs
            out[f"peak_bytes_{mode}"] = rec.peak_bytes
        if roofs is not None:
            from isaprof.roofline.bound import predict

            first = tbl.modes_of(common["mode"])[0]
            config = {k: v for k, v in base.items() if k != "device"}  # counted on meta
            out["bound_ms"] = predict(target, roofs, mode=first, **config, **options)["bound_ms"]
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - one target's failure is its row, the others still print
        from isaprof.profiling.profiler import is_oom

        out["status"] = "oom" if is_oom(e) else "error"
        out["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
    return out


CONFIGS = "configs"  # a measurement's {mode: Config} as profiled (not a table column)


def time_interleaved(
    measured: dict[str, dict[str, Any]], baseline: dict[str, Any], device: str, modes: str
) -> None:
    """Add each measurement's latency (median, IQR, samples, flags) per mode, each target timed interleaved
    with dense on the same input (:func:`isaprof.measure.latency.compare_latency`: A, B, A, B, ...), with
    the per-round ratio to dense (``latency_ratio_<mode>``, its IQR ``latency_ratio_iqr_<mode>``); dense
    itself from its pairing with the first other target, or alone. A target that fails while timed gets
    its row's status and message."""
    from isaprof.measure.latency import compare_latency, measure_latency
    from isaprof.profiling.profiler import is_oom, protocol_step

    for mode in tbl.modes_of(modes):
        base_cfg = baseline.get(CONFIGS, {}).get(mode)
        if base_cfg is None:
            continue
        for m in [baseline, *(m for m in measured.values() if m is not baseline)]:
            cfg = m.get(CONFIGS, {}).get(mode)
            if cfg is None or m.get("status") != "ok" or f"latency_ms_{mode}" in m:
                continue
            try:
                if m is baseline:
                    with protocol_step(cfg) as run:
                        _store(m, mode, measure_latency(run, "quick", device))
                    continue
                with protocol_step(base_cfg) as dense, protocol_step(cfg) as run:
                    cmp = compare_latency({tbl.BASELINE: dense, "target": run}, "quick", device)
                _store(m, mode, cmp.latencies["target"], cmp.ratios["target"])
            except ValueError:
                raise
            except Exception as e:  # noqa: BLE001 - its row says why; the others still print
                m["status"] = "oom" if is_oom(e) else "error"
                m["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def _store(m: dict[str, Any], mode: str, lat: Any, ratio: Any = None) -> None:
    m[f"latency_ms_{mode}"] = lat.median_ms
    m[f"latency_iqr_ms_{mode}"] = lat.iqr_ms
    m[f"latency_samples_{mode}"] = lat.samples
    m[f"latency_flags_{mode}"] = lat.flags()
    if ratio is not None:
        m[f"latency_ratio_{mode}"] = ratio.median
        m[f"latency_ratio_iqr_{mode}"] = ratio.iqr
