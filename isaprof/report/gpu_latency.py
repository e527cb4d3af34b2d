"""The "GPU latency against published timings" section: each network's V100 latency bound beside the
inference time mmsegmentation's model zoo publishes for it.

Reads ``RESULTS_DIR/gpu_latency.csv`` (written by ``isaprof bounds RESULTS_DIR`` when ``v100`` is among its
GPUs; rows described in :mod:`isaprof.studies.bounds`); torch-free. A published time tests the bound: a
network measured faster than its bound is flagged as a bug of the bound, never absorbed by a constant.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from isaprof.report import data, tables

LATENCY_FILE = "gpu_latency.csv"
REQUIRED = {"network", "config", "test_mode", "published_ms", "class", "bound_ms", "status"}
TOP = 3  # op classes named per network


def _classes(group: pd.DataFrame, total: float) -> str:
    """``conv_direct 68% (dilated...)``: the op classes of one network's bound, largest first."""
    parts = group[group["class"] != "total"].sort_values("bound_ms", ascending=False).head(TOP)
    return ", ".join(
        f"{r['class']} {r['bound_ms']:.0f} ms ({r['bound_ms'] / total:.0%})" for _, r in parts.iterrows()
    )


def latency_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per published entry: network, test path, published ms, bound ms, L2-proof bound ms,
    published / bound, slack (ms), and the op classes that hold the bound (where the slack can sit)."""
    rows = []
    for (network, config), g in df.groupby(["network", "config"], sort=False):
        total = g[g["class"] == "total"].iloc[0]
        if total["status"] != "ok":
            rows.append({"network": network, "mmseg config": config, "test path": total["test_mode"],
                         "published ms": total["published_ms"], "bound ms": float("nan"),
                         "verdict": f"error: {total.get('error', '')}"})  # fmt: skip
            continue
        bound = float(total["bound_ms"])
        published = float(total["published_ms"])
        rows.append({
            "network": network,
            "mmseg config": config,
            "test path": "whole 1024x2048" if total["test_mode"] == "whole" else "slide 769x769 / 513",
            "published ms": published,
            "bound ms": bound,
            "L2-proof bound ms": float(total["l2_bound_ms"]),
            "published / bound": published / bound,
            "slack ms": published - bound,
            "op classes of the bound (where the slack sits)": _classes(g, bound),
            "verdict": "ok" if published >= bound else "**FASTER THAN BOUND**",
        })  # fmt: skip
    return pd.DataFrame(rows)


def depth_increments(table: pd.DataFrame) -> pd.DataFrame:
    """Per family and test path: (published r101 - r50) / (bound r101 - r50), over the 17 extra layer3
    bottleneck blocks of R101 (51 convolutions, dilated 3x3 and 1x1, with their BatchNorms, ReLUs, adds)."""
    ok = table.dropna(subset=["bound ms"])
    out = []
    for (path,), g in ok.assign(family=ok["network"].str.split("_r").str[0]).groupby(
        ["test path"], sort=False
    ):
        for family, f in g.groupby("family", sort=False):
            by = {n.split("_")[1]: r for n, r in zip(f["network"], f.to_dict("records"), strict=True)}
            if {"r50", "r101"} <= set(by):
                dp = by["r101"]["published ms"] - by["r50"]["published ms"]
                db = by["r101"]["bound ms"] - by["r50"]["bound ms"]
                out.append({"family": family, "test path": path, "published r101 - r50 ms": dp,
                            "bound r101 - r50 ms": db, "ratio": dp / db if db else float("nan")})  # fmt: skip
    return pd.DataFrame(out)


def gpu_latency_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """Markdown for the section ('' with a note when ``gpu_latency.csv`` is missing)."""
    df = data.side_table(results_dir, LATENCY_FILE, REQUIRED, "isaprof bounds", out_dir, notes)
    if df is None:
        return ""
    for c in ("published_ms", "bound_ms", "l2_bound_ms"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    table = latency_table(df)
    table.to_csv(out_dir / "tables" / "gpu_latency.csv", index=False)
    ok = table.dropna(subset=["bound ms"])
    lines = [
        "## GPU latency against published timings",
        "Each network's latency **lower bound** on the V100 (`isaprof predict NETWORK --size 1024x2048 --gpu "
        "v100`; datasheet roofs 15.7 TFLOP/s FP32, 900 GB/s) on mmseg's test path (the whole 1024x2048 "
        "Cityscapes image, or every 769x769 window in slide mode), beside the V100 FP32 batch-1 inference "
        "time of mmsegmentation's model zoo (`reference/published.toml`, `[[latency]]`: metafile and commit "
        "of each). The bound is sound by construction: each op class is bounded under the cheapest "
        "algorithm cuDNN may pick for it (direct convolutions at every MAC; Winograd F(4x4, 3x3) and an FFT "
        "floor where cuDNN documents them; see `predict`'s op classes), so a published time below its bound "
        "would be a bug. The published times also include what the bound leaves out: launch overheads, "
        "the host-to-device copy of the image and the label map's return (mmseg's tools/benchmark.py "
        "times the whole forward call). The L2-proof bound also drops the assumption that operands come "
        "from DRAM (2 x L2 less per op).",
    ]
    if ok.empty:
        notes.append("gpu latency: no network could be bounded (see gpu_latency.csv).")
        return "\n\n".join(lines)
    ratio = ok["published / bound"]
    margin = ok.loc[ratio.idxmin()]
    faster = ok[ok["verdict"] != "ok"]
    lines.append(
        f"{len(ok)} published times: published / bound from {ratio.min():.2f} to {ratio.max():.2f} "
        f"(median {ratio.median():.2f}); the smallest margin is {margin['network']} "
        f"({margin['test path']}): {margin['published ms']:.1f} ms published, {margin['bound ms']:.1f} ms "
        f"bound ({ratio.min() - 1:.0%} above it). Faster than the bound: "
        + (f"**{len(faster)}** ({', '.join(faster['network'])})." if len(faster) else "none.")
    )
    lines.append(tables.markdown(table, floatfmt=".4g"))
    inc = depth_increments(table)
    if not inc.empty:
        inc.to_csv(out_dir / "tables" / "gpu_latency_depth.csv", index=False)
        lines.append(
            "Where the slack sits, from the published times alone: R101 adds 17 bottleneck blocks to "
            "layer3 (dilated 3x3 and 1x1 convolutions, each with BatchNorm and ReLU, no Winograd or FFT "
            "eligible), so (published r101 - r50) / (bound r101 - r50) is how far above its bound that op "
            "mix runs, independent of the head:"
        )
        lines.append(tables.markdown(inc, floatfmt=".3g"))
        odd = inc[inc["ratio"] < 1]
        if len(odd):
            lines.append(
                "A ratio below 1 ("
                + ", ".join(f"{r['family']} {r['test path']}" for _, r in odd.iterrows())
                + ") is not a bound violation (each network is above its own bound) but says the two "
                "published times cannot come from one setup with the same head cost: mmseg's metafiles "
                "gather times measured on different dates and software versions."
            )
    return "\n\n".join(lines)
