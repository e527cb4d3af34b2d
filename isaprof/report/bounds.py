"""The "latency lower bounds" section: every block's roofline bound on catalogued GPUs at the papers'
sizes, and on this CPU beside the measured latency.

Reads ``RESULTS_DIR/bounds.csv`` (written by ``isaprof bounds RESULTS_DIR``); torch-free.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from isaprof.config import KEY_COLUMNS
from isaprof.report import data, tables

BOUNDS_FILE = "bounds.csv"
# a row: its scope, its configuration (each field's own column) and one metric's value
REQUIRED = {"scope", *KEY_COLUMNS, "metric", "value", "status"}


def _wide(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (scope, configuration, device): the metrics as columns (ok rows only)."""
    ok = df[df["status"] == "ok"]
    drop = ("metric", "value", "unit", "spread", "status", "error", "measured_on")
    keys = [c for c in df.columns if c not in drop]
    wide = ok.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    spread = ok[ok["metric"] == "latency_ms"].set_index(keys)["spread"].rename("latency_iqr_ms")
    if len(spread):
        wide = wide.merge(spread.reset_index(), on=keys, how="left")
    wide.columns.name = None
    return wide


def _label(r: pd.Series) -> str:
    """``isa [sdpa]`` (``factor=8x8`` etc. left to the options column)."""
    path = " fast" if r.get("path") == "fast" else ""
    return f"{r['block']} [{r['impl']}{path}]"


def gpu_table(df: pd.DataFrame, height: int, width: int) -> pd.DataFrame:
    """Rows: block [impl]; columns: ``<gpu> <dtype>``, cells ``bound ms (memory-bound share)``; ``n/a``
    where the GPU has no peak for the dtype."""
    sel = df[(df["scope"] == "papers") & (df["height"] == height) & (df["width"] == width)]
    wide = _wide(sel)
    cells: dict[str, dict[str, str]] = {}
    order: list[str] = []
    devices = list(dict.fromkeys(sel["device"]))
    dtypes = list(dict.fromkeys(sel["dtype"]))
    for _, r in wide.iterrows():
        label = _label(r)
        order.append(label)
        share = r["memory_ms"] / r["bound_ms"] if r["bound_ms"] else float("nan")
        cells.setdefault(label, {})[f"{r['device']} {r['dtype']}"] = f"{r['bound_ms']:.3g} ({share:.0%} mem)"
    out = []
    for label in dict.fromkeys(order):
        row = {"block [impl]": label}
        for dev in devices:
            for dt in dtypes:
                row[f"{dev} {dt}"] = cells[label].get(f"{dev} {dt}", "n/a")
        out.append(row)
    return pd.DataFrame(out)


def peaks_table(df: pd.DataFrame) -> pd.DataFrame:
    """The roofs each GPU bound used: matrix and convolution peaks per dtype, bandwidth, source."""
    sel = df[(df["scope"] == "papers") & (df["status"] == "ok") & (df["metric"] == "bound_ms")]
    sel = sel.drop_duplicates(["device", "dtype"])
    return pd.DataFrame(
        {
            "device": sel["device"],
            "dtype": sel["dtype"],
            "matmul TFLOP/s": pd.to_numeric(sel["matrix_tflops"]),
            "conv TFLOP/s": pd.to_numeric(sel["conv_tflops"]),
            "bandwidth GB/s": pd.to_numeric(sel["bandwidth_gbs"]),
            "peak used (source)": sel["peak_used"],
        }
    )


def cpu_table(df: pd.DataFrame) -> pd.DataFrame:
    """This CPU's bound beside the measured median latency (IQR), ``measured / bound`` and a verdict:
    ``FASTER THAN BOUND`` when median + IQR < bound."""
    wide = _wide(df[df["scope"] == "cpu"])
    if wide.empty or "bound_ms" not in wide:
        return pd.DataFrame()
    wide = wide.dropna(subset=["bound_ms", "latency_ms"])
    iqr = pd.to_numeric(wide.get("latency_iqr_ms"), errors="coerce").fillna(0.0)
    below = wide["latency_ms"] + iqr < wide["bound_ms"]
    out = pd.DataFrame(
        {
            "block [impl]": [_label(r) for _, r in wide.iterrows()],
            "options": wide["options"].replace("{}", ""),
            "C": wide["channels"],
            "size": wide["height"].astype(str) + "x" + wide["width"].astype(str),
            "bound ms": wide["bound_ms"],
            "memory-bound share": wide["memory_ms"] / wide["bound_ms"],
            "measured ms": wide["latency_ms"],
            "IQR ms": iqr,
            "measured / bound": wide["latency_ms"] / wide["bound_ms"],
            "verdict": ["**FASTER THAN BOUND**" if b else "ok" for b in below],
        }
    )
    n = wide["height"].astype(int) * wide["width"].astype(int)
    out = out.assign(_n=n.values).sort_values(["block [impl]", "C", "_n", "options"], kind="stable")
    return out.drop(columns="_n").reset_index(drop=True)


def bounds_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """Markdown for the section ('' with a note when ``bounds.csv`` is missing)."""
    df = data.side_table(results_dir, BOUNDS_FILE, REQUIRED, "isaprof bounds", out_dir, notes)
    if df is None:
        return ""
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["spread"] = pd.to_numeric(df["spread"], errors="coerce")
    lines = [
        "## Latency lower bounds (not measurements)",
        "Every figure in this section except the measured CPU latency is a **lower bound, not a "
        "measurement** (`isaprof predict`): for each op call of the unfused execution, max(FLOPs / the "
        "peak for that op and dtype, bytes moved / bandwidth), summed over the calls. It ignores launch "
        "overheads, caches, occupancy and clocks, so real kernels take longer; it says which roof limits a "
        "block and how far apart blocks can be at best. Inference, each block's paper "
        "options; `sdpa` is counted as one fused flash-attention kernel (its compulsory traffic only). "
        "Cells: bound in ms (share of it spent in memory-bound op calls; the rest is compute-bound).",
    ]
    papers = df[df["scope"] == "papers"]
    if papers.empty:
        notes.append("bounds: no GPU rows in bounds.csv.")
    for (b, c, h, w), _ in papers.groupby(["batch", "channels", "height", "width"]):
        table = gpu_table(df, int(h), int(w))
        table.to_csv(out_dir / "tables" / f"bounds_gpu_{h}x{w}.csv", index=False)
        lines.append(f"Lower bounds in ms at {b}x{c}x{h}x{w} (B x C x H x W):")
        lines.append(tables.markdown(table))
    if not papers.empty:
        lines.append(
            "Peaks used (datasheets, `reference/devices.toml`; dense tensor-core figures). In float32 "
            "PyTorch runs matrix products on FP32 CUDA cores but cuDNN convolutions on TF32 tensor cores "
            "by default, so convolutions are bounded by the TF32 peak; n/a: the GPU has no such peak."
        )
        lines.append(tables.markdown(peaks_table(df), floatfmt=".4g"))
    cpu = cpu_table(df)
    if cpu.empty:
        notes.append("bounds: no CPU latency rows to compare with a bound.")
        return "\n\n".join(lines)
    cpu.to_csv(out_dir / "tables" / "bounds_cpu.csv", index=False)
    first = df[(df["scope"] == "cpu") & (df["metric"] == "bound_ms") & (df["status"] == "ok")].iloc[0]
    faster = cpu[cpu["verdict"] != "ok"]
    ratio = cpu["measured / bound"]
    measured_on = sorted(set(df.loc[(df["scope"] == "cpu") & (df["metric"] == "latency_ms"), "measured_on"]))
    peak = float(first["matrix_tflops"]) * 1e3
    lines.append(
        f"On this CPU, the bound on its own measured roofs ({peak:.1f} GFLOP/s fp32 matmul peak, "
        f"{float(first['bandwidth_gbs']):.1f} GB/s STREAM bandwidth; from "
        f"{first['roofs_from']}) beside the median latency the sweep measured: measured / bound from "
        f"{ratio.min():.2f} to {ratio.max():.2f} (median {ratio.median():.2f}) over {len(cpu)} "
        "configurations. A block measured faster than its bound beyond the IQR is a bug in the bytes or "
        "FLOP counter or in the roofs (the memory roof is DRAM's: a working set that stays in the "
        "last-level cache can beat it) and is flagged: "
        + (
            f"**{len(faster)} flagged** ({', '.join(sorted(set(faster['block [impl]'])))})."
            if len(faster)
            else "none is."
        )
    )
    names = [m for m in measured_on if m]
    if names and not all(m in str(first["roofs_from"]) for m in names):
        lines.append(
            f"**Note:** the latencies were measured on {', '.join(names)}, the roofs on another CPU "
            f"({first['roofs_from']}): until one run measures both on the same machine (`make report` "
            "does), this comparison is indicative only."
        )
    lines.append(
        tables.markdown(
            cpu.assign(**{"memory-bound share": [f"{v:.0%}" for v in cpu["memory-bound share"]]}), ".4g"
        )
    )
    return "\n\n".join(lines)
