"""Assemble ``README.md`` of a report directory from saved results: figures, tables, one sentence each.

Reads ``RESULTS_DIR/results.csv`` (tidy rows), ``machine.json`` (matmul peak, environment), optional
``reproduction.csv`` (from ``isaprof reproduce``) and any ``*.toml`` sweep spec. Never runs a model.
A section whose data is missing is skipped with a note on the page, never an exception.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from isaprof import units
from isaprof.config import KEY_COLUMNS, SIZE_FIELDS, select
from isaprof.report import data, derived, efficiency, plots, readme, tables
from isaprof.report.bounds import bounds_section
from isaprof.report.gpu_latency import gpu_latency_section
from isaprof.report.heads import heads_section
from isaprof.report.networks import networks_section
from isaprof.report.training_memory import section as training_memory_section
from isaprof.results import reproduction
from isaprof.roofline import schema

HEATMAP_METRICS = (
    ("macs", "inference", "MACs", "GMAC", 1e9),
    ("peak_bytes", "inference", "peak memory (inference)", "MiB", 2**20),
    ("peak_bytes", "train", "peak memory (train)", "MiB", 2**20),
    ("latency_ms", "inference", "latency (inference)", "ms", 1.0),
)


def write_report(results_dir: str | Path, out_dir: str | Path, svg: bool = False) -> Path:
    """Write ``out_dir/README.md`` (+ PNG figures under ``out_dir/figures``, CSVs under ``out_dir/tables``).

    ``svg``: also write the scaling figures as SVG (vector, for papers; slower).
    """
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    df = data.read_results(results_dir / "results.csv")
    machine, roof_notes = data.roofs_for_latencies(schema.read_machine(results_dir / schema.MACHINE), df)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(results_dir / "results.csv", out_dir / "tables" / "results.csv")
    # one row per configuration: its key columns (the widths, path and dtype left out of this table)
    wide_index = select(
        KEY_COLUMNS, "key_channels", "value_channels", "path", "dtype", first=[*data.LINE, "device", "mode"]
    )
    wide = data.ok(df).pivot_table(index=wide_index, columns="metric", values="measured", aggfunc="first")
    wide.reset_index().to_csv(out_dir / "tables" / "measured_wide.csv", index=False)  # one row per config
    notes: list[str] = list(roof_notes)
    cx = tables.crossovers(df)  # read by the findings and by the crossover section
    parts = [
        "# isaprof report",
        f"From `{results_dir}` ({units.plural(len(df), 'tidy row')}, "
        f"{units.plural(df['block'].nunique(), 'block')}){_measured_when(df)}. "
        "FLOPs = 2 x MACs; memory in MiB (2^20 B); "
        "peak memory = live tensor storage allocated during the call (parameters and input excluded). "
        + provenance(df, machine),
        efficiency.section(
            results_dir, df, notes, crossovers=cx
        ),  # the efficiency table at the papers' sizes, first
        _scaling_section(df, out_dir, notes, svg),
        derived.section(results_dir, df, out_dir, notes),  # exact exponents beside the fitted ones
        _crossover_section(cx, out_dir),
        _factor_section(df, out_dir, notes),
        _reproduction_section(results_dir, out_dir, notes),
        training_memory_section(results_dir, out_dir, notes),
        heads_section(results_dir, out_dir, notes),
        networks_section(results_dir, out_dir, notes),
        _throughput_section(df, machine, out_dir, notes),
        bounds_section(results_dir, out_dir, notes),
        gpu_latency_section(results_dir, out_dir, notes),
        _cuda_section(results_dir, out_dir),
        _flow_section(results_dir, out_dir, notes),
        _failure_section(df, out_dir),
        _environment_section(df, machine, results_dir, out_dir),
    ]
    (out_dir / "tables" / "performance.md").write_text(readme.performance(df, machine))  # README's figures
    if notes:
        parts.append("## Skipped\n" + "\n".join(f"- {n}" for n in notes))
    page = out_dir / "README.md"
    page.write_text("\n\n".join(p for p in parts if p) + "\n")
    return page


def _measured_when(df: pd.DataFrame) -> str:
    """`` measured 2026-11-29 .. 2026-11-30`` (UTC dates of the rows), or empty: the page carries the data's
    dates, never the time it was written (a report of unchanged data is byte-identical)."""
    stamps = df["timestamp"].dropna().astype(str).str[:10]
    stamps = stamps[stamps.str.match(r"^\d{4}-\d\d-\d\d$")]
    if stamps.empty:
        return ""
    lo, hi = stamps.min(), stamps.max()
    return f", measured {lo}" + (f" .. {hi}" if hi != lo else "")


def provenance(df: pd.DataFrame, machine: dict) -> str:
    """One sentence naming the machine(s) the latencies come from: each device's CPU or GPU ``model name``
    (as ``/proc/cpuinfo`` or CUDA gives it), the machine id, the row count, how many rows are noisy or
    contended, and the roofs beside them."""
    found = data.latency_machines(df)
    if not found:
        return "No latency was measured: every figure here is exact (counts and bytes on fake tensors)."
    lat = df[(df["metric"] == "latency_ms") & df["measured"].notna()]
    parts = []
    for device, mach, name, n in found:
        ident = f"machine `{mach}`" if mach else "a machine whose id was not recorded"
        parts.append(f"{device}, **{name}** ({ident}; {units.plural(n, 'row')})")
    samples = lat["samples"].dropna()
    flags = lat["flags"].fillna("").astype(str)
    noisy, busy = int(flags.str.contains("noisy").sum()), int(flags.str.contains("contended").sum())
    text = "Where the latencies come from: " + "; ".join(parts) + ". "
    if samples.empty:
        text += "Their sample counts were not recorded (rows from before the 7-sample protocol). "
    else:
        text += (
            f"Each is the median over at least {int(samples.min())} timed samples with its IQR; "
            f"{noisy} of {len(lat)} {'is' if noisy == 1 else 'are'} noisy (IQR > 10% of the median), {busy} "
            f"{'was' if busy == 1 else 'were'} taken while the "
            "machine was contended (a matmul probe before and after differed by more than 20%). "
        )
    cpu = schema.device_roofs(machine, "cpu")
    if cpu is not None:
        text += (
            f"CPU roofs: {units.sig(float(cpu['matmul_gflops']), 4)} GFLOP/s fp32 matmul, "
            f"{units.sig(float(cpu['bandwidth_gbs']), 3)} GB/s STREAM, measured on "
            f"{cpu.get('device_name') or 'an unnamed CPU'}"
            + (f" ({str(cpu['measured_at'])[:10]})" if cpu.get("measured_at") else "")
            + "."
        )
        if cpu.get("contended"):
            text += (
                " **These roofs were measured while the machine was contended** (matmul probe changed by "
                f"{units.sig(100 * float(cpu.get('probe_change') or 0), 2)}%, the process got "
                f"{units.sig(100 * float(cpu.get('cpu_share') or 0), 2)}% of its threads' cores): they are "
                "low, and fractions of peak high; `make report` on an idle machine measures them again."
            )
    return text


def _img(out_dir: Path, path: Path, alt: str) -> str:
    return f"![{alt}]({path.relative_to(out_dir).as_posix()})"


def _scaling_section(df: pd.DataFrame, out_dir: Path, notes: list[str], svg: bool) -> str:
    lines = ["## Cost against resolution"]
    for metric, mode, label, unit, scale in tables.SCALING:
        every = data.metric_rows(df, metric, mode)
        if every.empty:
            notes.append(f"{label}: no measured rows, figure skipped.")
            continue
        # latency: one slice per device (timings of different devices do not share an axis)
        per_device = metric == "latency_ms"
        slices = (
            [every[every["device"] == d] for d in sorted(every["device"].unique())] if per_device else [every]
        )
        rows = pd.concat([data.main_slice(s) for s in slices])
        for (device, impl), sub in rows.groupby(["device", "impl"]):
            b, c = int(sub["batch"].iloc[0]), int(sub["channels"].iloc[0])
            if sub["N"].nunique() < 2:  # one size: no curve to read a scaling from
                hw = "{}x{}".format(int(sub["height"].iloc[0]), int(sub["width"].iloc[0]))
                lines.append(
                    f"{label[:1].upper()}{label[1:]}, {impl}"
                    + (f" on {device}" if per_device else "")
                    + f": measured at one size only ({hw}, B={b}, C={c}), so no figure against "
                    "resolution; its figures are in the throughput table below."
                )
                continue
            name = f"{metric}_{mode}_{impl}" + (f"_{device}.png" if per_device else ".png")
            where = f"{sub['dtype'].iloc[0]} on {sub['device'].iloc[0]}"
            backends = sorted(set(sub["backend"]) - {""})
            title = f"{label} vs resolution, {'/'.join([impl, *backends])}, B={b}, C={c}, {where}"
            path = plots.scaling(
                sub, out_dir / "figures" / name, title=title, unit=unit, scale=scale, svg=svg
            )
            lines.append(_img(out_dir, path, title))
        missing = sorted(set(df["block"]) - set(rows["block"]))
        if missing:
            notes.append(f"{label}: no rows for {', '.join(missing)}.")
    if len(lines) > 1:
        lines.append(
            f"Where two curves coincide (within {plots.OVERLAP:.0%} at every size both hold, two sizes or "
            f"more), the later one is drawn {100 * (plots.DODGE - 1):.0f}% to the right and its legend entry "
            "names the curve it hides behind; where they meet at some sizes only, the later marker is drawn "
            "smaller there, on top of the other."
        )
    exps = tables.exponents(df)
    exps.to_csv(out_dir / "tables" / "exponents.csv", index=False, float_format="%.6g")  # stable digits
    if not exps.empty:
        top = (
            exps.loc[exps["measured_exponent"].idxmax()] if exps["measured_exponent"].notna().any() else None
        )
        if top is not None:
            lines.append(
                "Dashed lines are the closed-form formulas; the steepest measured growth is "
                f"{top['block']}'s {top['metric']} at N^{top['measured_exponent']:.2f}, and a block whose "
                "exponent stays below 2 pulls away from dense attention as resolution grows."
            )
        lines.append(
            "Fitted exponents (slope of log metric against log N over the larger half of the sizes):"
        )
        lines.append(tables.markdown(exps, floatfmt=".2f"))
    return "\n\n".join(lines)


def _crossover_section(cx: pd.DataFrame, out_dir: Path) -> str:
    """The crossover table (``cx``: :func:`tables.crossovers` of the results) and its CSV."""
    cx.to_csv(out_dir / "tables" / "crossovers.csv", index=False)
    if cx.empty:
        return "## Crossover against dense\n\n_No dense baseline or no common sizes: nothing to compare._"
    wins = cx[cx["crossover"] != "never"]
    sentence = (
        f"{len(wins)} of {len(cx)} comparisons find the block cheaper than dense attention from some "
        "resolution on (cells: the smallest HxW from which it stays cheaper; 'always' = already at the "
        "smallest size swept, 'never' = not even at the largest)."
    )
    shown = cx.pivot_table(
        index=["metric", "mode", "block", "impl"],
        columns="baseline_impl",
        values="crossover_hw",
        aggfunc="first",
    )
    shown.columns = [f"vs dense [{c}]" for c in shown.columns]
    shown = shown.reset_index().fillna("")
    return "\n\n".join(["## Crossover against dense", sentence, tables.markdown(shown)])


def _factor_section(df: pd.DataFrame, out_dir: Path, notes: list[str]) -> str:
    lines = ["## ISA factorization (P_h, P_w)"]
    rows = []
    for metric, mode, label, unit, scale in HEATMAP_METRICS:
        grid = tables.factor_grid(df, metric, mode)
        if len(grid) < 2 or grid["measured"].isna().all():
            notes.append(f"ISA factor grid, {label}: fewer than 2 factors measured, heatmap skipped.")
            continue
        h, w = int(grid["height"].iloc[0]), int(grid["width"].iloc[0])
        where = f"{grid['impl'].iloc[0]}, C={int(grid['channels'].iloc[0])}, {grid['device'].iloc[0]}"
        title = f"ISA {label} over (P_h, P_w) at {h}x{w} [{where}]"
        path = plots.factor_heatmap(
            grid,
            out_dir / "figures" / f"isa_factors_{metric}_{mode}.png",
            title=title,
            unit=unit,
            scale=scale,
        )
        lines.append(_img(out_dir, path, title))
        opt = tables.grid_optima(grid)
        if not opt:
            notes.append(
                f"ISA factor grid, {label}: no formula value at these factors, optimum not compared."
            )
            continue
        rows.append(
            {
                "metric": label,
                "size": f"{h}x{w}",
                "analytic optimum": "x".join(map(str, opt["analytic_opt"]))
                + ("" if grid["analytic_from"].iloc[0] == metric else " (MACs formula)"),
                "measured optimum": "x".join(map(str, opt["measured_opt"]))
                + (f" ({opt['ties']} tied within 0.1%)" if opt["ties"] > 1 else ""),
                "cost ratio (at analytic opt / measured min)": opt["ratio"],
            }
        )
    if not rows:
        return ""
    lines.append(
        "A ratio of 1.00 means the formula's best factorization is also the measured best; above 1 it "
        "costs that much more than the best one found."
    )
    lines.append(tables.markdown(pd.DataFrame(rows)))
    return "\n\n".join(lines)


def _reproduction_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    path = results_dir / "reproduction.csv"
    if not path.is_file():
        notes.append(
            f"reproduction: no {path.name} in {results_dir} (`isaprof reproduce --out {results_dir}`)."
        )
        return ""
    rep = pd.read_csv(path, keep_default_na=False)
    if not {"id", "ratio"} <= set(rep.columns):
        raise ValueError(
            f"{path} lacks the columns id, ratio; rewrite it with `isaprof reproduce --out {results_dir}`"
        )
    shutil.copyfile(path, out_dir / "tables" / "reproduction.csv")
    cols = ["id", "metric", "unit", "published", "ours", "ours_as_source", "source_formula", "ratio"]
    cols = [c for c in [*cols, "provenance", "reason"] if c in rep]
    sentence = (
        reproduction.read(path).sentence()
        + " Ratio = ours in the source's convention / published; the reason column says why the others "
        "differ. `ours_as_source` adds the resident weights to our peak memory, as openseg's harness (max "
        "allocated minus the input) does; `source_formula` re-evaluates the source's own rough formula."
    )
    shown = rep[cols].rename(columns={"ours_as_source": "ours (source's convention)"})
    return "\n\n".join(["## Reproduction of published figures", sentence, tables.markdown(shown, ".4g")])


def _throughput_section(df: pd.DataFrame, machine: dict, out_dir: Path, notes: list[str]) -> str:
    tp = tables.throughput(df, machine)
    if tp.empty or tp["gflops"].isna().all():
        notes.append("throughput: no latency rows with a FLOP count, section skipped.")
        return ""
    tp.to_csv(out_dir / "tables" / "throughput.csv", index=False)
    lines = ["## Achieved throughput and the roofline"]
    if tp["peak_gflops"].isna().all():
        notes.append("throughput: machine.json has no matmul peak; fractions of peak left empty.")
    no_traffic = tp["intensity"].isna().all()
    if no_traffic:
        notes.append(
            "roofline: the results hold no bytes_moved rows, so no arithmetic intensity; the figure says so."
        )
    for device, sub in sorted(tp.groupby("device"), key=lambda kv: data.DEVICE_PREFERENCE.get(kv[0], 3)):
        peak = schema.matmul_peak_gflops(machine, device)
        bw = schema.bandwidth_gbs(machine, device)
        if bw is None:
            notes.append(f"roofline ({device}): machine.json has no bandwidth_gbs, memory roof not drawn.")
        name = "roofline.png" if device == "cpu" else f"roofline_{device}.png"
        modes = ", ".join(sorted(sub["mode"].unique()))
        path = plots.roofline(
            sub,
            out_dir / "figures" / name,
            title=f"Roofline on {device} ({sub['dtype'].iloc[0]}; {modes})",
            peak_gflops=peak,
            bandwidth_gbs=bw,
        )
        lines.append(_img(out_dir, path, f"roofline {device}"))
    lines.append(
        "x = counted FLOPs / bytes moved (each op reads its inputs and writes its outputs once: the traffic "
        "of an unfused execution, an upper bound on what fusion can remove), y = FLOPs / median latency. "
        "The roofs are this machine's own (`isaprof machine`): the fp32 matmul peak over several GEMM "
        "shapes and the STREAM bandwidth (arrays far larger than the last-level cache). A point's bound is "
        "min(peak, bandwidth x intensity); `of bound` is the share of it the block reaches. A working set "
        "that fits in the last-level cache can beat the memory roof: that roof is DRAM's."
    )
    best = tp.loc[tp["gflops"].idxmax()]
    lines.append(
        f"The best run reaches {best['gflops']:.1f} GFLOP/s ({best['block']} [{best['impl']}] at "
        f"{int(best['height'])}x{int(best['width'])})."
    )
    if not no_traffic:
        summary = (
            tp.dropna(subset=["roof_fraction"])
            .groupby(["block", "impl", "device", "mode"])
            .agg(
                bound_by=("bound_by", lambda s: "/".join(sorted(set(s)))),
                median_of_bound=("roof_fraction", "median"),
                best_of_bound=("roof_fraction", "max"),
                sizes=("height", "count"),
            )
            .reset_index()
        )
        above = tp[tp["roof_fraction"] > 1 + tp["spread"].fillna(0) / tp["latency_ms"]]
        lines.append("Each block's achieved fraction of its own roofline bound (over the sizes measured):")
        lines.append(tables.markdown(summary, floatfmt=".1%"))
        if not above.empty:
            lines.append(
                f"**{len(above)} run(s) beat their roofline bound beyond the latency IQR**: a bytes-moved "
                "count or a roof is wrong (" + ", ".join(sorted(set(above["block"]))) + ")."
            )
    if tp["interleaved"].notna().any():
        both = tp.dropna(subset=["interleaved"])
        lines.append(
            "`of matmul peak` divides by the roof measured apart from the latencies; `of sgemm (same run)` "
            "is measured interleaved instead: after the latency (timed alone), a second run alternates the "
            "block's samples with those of a square fp32 sgemm (1024^3), and the column is the median over "
            "rounds of (block FLOP/s) / (sgemm FLOP/s) with its IQR, so load on the machine moves both "
            "sides alike. Their median ratio here: "
            f"{units.sig(float((both['fraction'] / both['interleaved']).median()), 3)}."
        )
    shown = tp[
        ["block", "factor", "recurrence", "impl", "device", "mode", *SIZE_FIELDS, "flops", "latency_ms"]
        + ["gflops", "fraction", "interleaved", "intensity", "bound_by", "bound_gflops", "roof_fraction"]
    ]
    shown = shown.assign(
        flops=[tables.fmt(v, "flops") for v in shown["flops"]],
        latency_ms=[tables.fmt(v, "latency_ms") for v in shown["latency_ms"]],
        interleaved=[
            "" if units.missing(v) else f"{units.percent(v)} (IQR {units.percent(q)})"
            for v, q in zip(tp["interleaved"], tp["interleaved_iqr"], strict=True)
        ],
        fraction=[units.percent(v) for v in shown["fraction"]],
        roof_fraction=[units.percent(v) for v in shown["roof_fraction"]],
    ).rename(
        columns={
            "fraction": "of matmul peak",
            "interleaved": "of sgemm (same run)",
            "intensity": "FLOP/byte",
            "bound_gflops": "bound GFLOP/s",
            "roof_fraction": "of bound",
        }
    )
    lines.append(tables.markdown(shown))
    return "\n\n".join(lines)


def _cuda_section(results_dir: Path, out_dir: Path) -> str:
    """``make gpu-check``'s comparison (``RESULTS/cuda/comparison.csv``), or a plain statement that none
    was made."""
    title = "## CUDA: measured against predicted"
    path = results_dir / "cuda" / "comparison.csv"
    if not path.is_file():
        return (
            f"{title}\n\nNo CUDA measurement was made: every CUDA figure in this report is a prediction "
            f"(meta path, datasheet roofs). `make gpu-check` on a machine with a GPU writes "
            f"`{results_dir}/cuda/` and this section."
        )
    cmp = pd.read_csv(path)
    shutil.copyfile(path, out_dir / "tables" / "cuda_comparison.csv")
    dev_path = results_dir / "cuda" / "device.json"
    dev = json.loads(dev_path.read_text()) if dev_path.is_file() else {}
    where = dev.get("device_name", "an unnamed CUDA device")
    extra = f", torch {dev['torch']}, CUDA {dev.get('cuda')}" if "torch" in dev else ""
    err = pd.to_numeric(cmp["peak_error"], errors="coerce")
    within = int((err.abs() <= 0.02).sum())
    holds = cmp["bound_holds"].astype(str).str.lower() == "true"
    broken = cmp["bound_holds"].astype(str).str.lower() == "false"
    lines = [
        title,
        f"Measured on {where}{extra} by `make gpu-check` ({len(cmp)} configurations). Peak memory: the "
        f"`max_memory_allocated` delta of the call against the meta path's CUDA-allocator prediction "
        f"(`cuda_predicted`): within 2% in {within} of {int(err.notna().sum())}, largest error "
        f"{err.abs().max():.1%}. Latency against the `isaprof predict` lower bound on the catalogued GPU "
        f"({dev.get('catalogue_key') or 'not catalogued'}): at or above it in {int(holds.sum())}, below it "
        f"beyond the IQR in {int(broken.sum())} (a bug in the counter, the roofs or the catalogue)."
        if err.notna().any()
        else f"Measured on {where}{extra}; no prediction could be compared (see the error column).",
    ]
    shown = cmp.assign(
        size=cmp["height"].astype(str) + "x" + cmp["width"].astype(str),
        peak_measured=[tables.fmt(v, "peak_bytes") for v in cmp["peak_measured"]],
        peak_cuda_predicted=[tables.fmt(v, "peak_bytes") for v in cmp["peak_cuda_predicted"]],
    )
    cols = [*data.LABEL, "size", "dtype", "mode", "peak_measured", "peak_cuda_predicted", "peak_error"]
    cols += ["latency_ms", "bound_ms", "latency_over_bound", "error"]
    lines.append(tables.markdown(shown[[c for c in cols if c in shown]]))
    return "\n\n".join(lines)


def _failure_section(df: pd.DataFrame, out_dir: Path) -> str:
    bad = tables.failures(df)
    bad.to_csv(out_dir / "tables" / "failures.csv", index=False)
    if bad.empty:
        return "## Failed configurations\n\nNone: every configuration measured."
    counts = bad["status"].value_counts().to_dict()
    sentence = (
        "Configurations that did not measure ("
        + ", ".join(f"{v} {k}" for k, v in counts.items())
        + "); they are absent from the figures above, not zero."
    )
    return "\n\n".join(["## Failed configurations", sentence, tables.markdown(bad)])


def _environment_section(df: pd.DataFrame, machine: dict, results_dir: Path, out_dir: Path) -> str:
    env = schema.environment(machine)
    for col in ("torch", "device_name", "threads", "host"):
        vals = sorted(df[col].dropna().astype(str).unique())
        if vals and col not in env:
            env[col] = ", ".join(vals)
    stamps = df["timestamp"].dropna().astype(str)
    if not stamps.empty:
        env["measured"] = f"{stamps.min()} .. {stamps.max()}"
    for dev in ("cpu", "cuda"):
        peak = schema.matmul_peak_gflops(machine, dev)
        if peak:
            env[f"{dev} fp32 matmul peak"] = f"{peak:.1f} GFLOP/s"
    lines = [
        "## Environment",
        tables.markdown(pd.DataFrame({"key": list(env), "value": [str(v) for v in env.values()]})),
    ]
    specs = sorted(results_dir.glob("*.toml"))
    for spec in specs:
        lines.append(f"Sweep spec `{spec.name}`:\n\n```toml\n{spec.read_text().strip()}\n```")
    if not specs and "spec" in machine:
        lines.append("Sweep spec:\n\n```json\n" + json.dumps(machine["spec"], indent=1) + "\n```")
    return "\n\n".join(lines)


def _reach(row: dict) -> str:
    """``"1.9% (long-range) -> 100.0% (short-range)"``: the share of pairs reached after each stage."""
    fractions = row["fractions"]
    names = row.get("stage_names") or []
    if len(names) != len(fractions):
        return " -> ".join(units.percent(f) for f in fractions)
    return " -> ".join(f"{units.percent(f)} ({name})" for f, name in zip(fractions, names, strict=True))


def _flow_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """Connectivity: the reach picture (``isaprof verify --figure``) and ``verify.json``'s figures."""
    lines = ["## Information flow"]
    if (out_dir / "connectivity.png").is_file():
        lines.append(_img(out_dir, out_dir / "connectivity.png", "connectivity"))
    path = results_dir / "verify.json"
    if not path.is_file():
        notes.append("information flow: no verify.json in the results, table skipped.")
        return "\n\n".join(lines) if len(lines) > 1 else ""
    rows = json.loads(path.read_text())
    table = pd.DataFrame(
        {
            "block": [r["block"] for r in rows],
            "size": ["{}x{}".format(*r["size"]) for r in rows],
            "options": [", ".join(f"{k}={v}" for k, v in r["options"].items()) or "defaults" for r in rows],
            "pairs reached after each stage (structural)": [_reach(r) for r in rows],
            "paths per pair": [f"{r['paths_min']}..{r['paths_max']}" for r in rows],
            "stages needed": [r["stages_needed"] if r["stages_needed"] else "never" for r in rows],
            "Jacobian (whole block)": [r["empirical"][-1][1] if r["empirical"] else "" for r in rows],
            "agree": ["yes" if r["agree"] else ("-" if r["agree"] is None else "NO") for r in rows],
            "verdict": [("ok" if r["ok"] else "FAILS its claim") for r in rows],
        }
    )
    lines.append(
        "Which input positions reach which output positions, from each block's grouping (exact, any size) "
        "and from the support of the real module's Jacobian (random weights, several draws); a block "
        "advertised as fully connected must reach every pair, and both checks must agree. The structural "
        "column gives the share of (input, output) pairs connected after each stage, in order."
    )
    lines.append(tables.markdown(table))
    return "\n\n".join(lines)
