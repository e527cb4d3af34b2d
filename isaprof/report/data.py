"""Load saved results (tidy CSV, machine JSON) and pick the slices the report draws.

Reads files only: this module never builds or runs a model. Column names and units follow the tidy row
schema of ``docs/ARCHITECTURE.md``; values stay raw (MACs, FLOPs, bytes, ms) until :mod:`.tables` formats them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = (
    "block batch channels key_channels value_channels height width padded_height padded_width "
    "factor recurrence options impl backend dtype device mode "
    "metric measured analytic unit spread status error "
    "torch device_name threads host timestamp"
).split()

# A configuration without its device, metric and environment: what a FLOP count and a latency share.
CONFIG = [
    "block",
    "batch",
    "channels",
    "key_channels",
    "value_channels",
    "height",
    "width",
    "factor",
    "recurrence",
    "options",
    "impl",
    "dtype",
    "mode",
]
# One line of a scaling figure: everything but the resolution (and ISA's factor, see `series`).
SERIES = ["block", "impl", "backend", "batch", "channels", "key_channels", "value_channels", "dtype", "device"]
DEVICE_PREFERENCE = {"cuda": 0, "cpu": 1, "meta": 2}


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a tidy results CSV; add ``N = height * width`` (positions) and fill absent columns.

    ``ValueError`` if the file is missing or lacks the columns the report needs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results table at {path} (expected the tidy CSV written by `isaprof sweep`)")
    df = pd.read_csv(path, keep_default_na=True, dtype={"factor": str, "options": str, "error": str})
    needed = {"block", "height", "width", "metric", "measured", "mode", "status"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)}; expected the tidy schema: {' '.join(COLUMNS)}")
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    for col in ("factor", "options", "backend", "error", "device", "impl", "dtype"):
        df[col] = df[col].fillna("").astype(str)
    for col in ("measured", "analytic", "spread"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["recurrence"] = pd.to_numeric(df["recurrence"], errors="coerce")
    df["N"] = df["height"].astype(int) * df["width"].astype(int)
    return df


def read_machine(path: str | Path) -> dict[str, Any]:
    """The sweep's ``machine.json`` (per-device matmul peak in GFLOP/s, environment); ``{}`` if absent."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open() as f:
        return json.load(f)


def matmul_peak_gflops(machine: dict[str, Any], device: str) -> float | None:
    """The measured fp32 matmul peak of ``device`` in GFLOP/s, or ``None`` if the sweep did not record it."""
    entry = machine.get(device)
    if isinstance(entry, dict) and entry.get("matmul_peak_gflops"):
        return float(entry["matmul_peak_gflops"])
    return None


def ok(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that measured something (``status == ok``)."""
    return df[df["status"] == "ok"]


def metric_rows(df: pd.DataFrame, metric: str, mode: str | None = None) -> pd.DataFrame:
    """OK rows of one metric (and mode), ``flops`` derived as 2 x ``macs`` when only MACs were stored."""
    sel = ok(df)
    rows = sel[sel["metric"] == metric]
    if metric == "flops" and rows.empty:
        rows = sel[sel["metric"] == "macs"].copy()
        rows["measured"] = 2 * rows["measured"]
        rows["analytic"] = 2 * rows["analytic"]
        rows["metric"], rows["unit"] = "flops", "FLOP"
    if mode is not None:
        rows = rows[rows["mode"] == mode]
    return rows


def main_slice(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows of the most common (batch, channels, dtype) and the preferred device (cuda > cpu > meta).

    A sweep may hold several widths; the figures compare blocks at one of them.
    """
    if rows.empty:
        return rows
    device = min(rows["device"].unique(), key=lambda d: DEVICE_PREFERENCE.get(d, 3))
    rows = rows[rows["device"] == device]
    top = rows.groupby(["batch", "channels", "dtype"]).size().idxmax()
    b, c, t = top
    return rows[(rows["batch"] == b) & (rows["channels"] == c) & (rows["dtype"] == t)]


def series(rows: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Split rows into scaling lines: one per (block, impl, backend, widths, dtype, device), sorted by N.

    Where a line holds several rows at one N (ISA's factor grid), keep the factor used at most other
    sizes, else the analytically cheapest one (``analytic`` column), so each line is one row per size.
    """
    out: dict[tuple, pd.DataFrame] = {}
    for key, g in rows.groupby(SERIES, dropna=False, sort=True):
        if g["N"].duplicated().any():
            g = _one_per_size(g)
        out[key] = g.sort_values("N")
    return out


def _one_per_size(g: pd.DataFrame) -> pd.DataFrame:
    sizes_per_opt = g.groupby("options")["N"].nunique()
    common = sizes_per_opt[sizes_per_opt >= 2]
    keep = []
    for _, at_n in g.groupby("N"):
        pick = at_n[at_n["options"].isin(common.index)] if not common.empty else at_n.iloc[0:0]
        if pick.empty:
            pick = at_n.sort_values("analytic", na_position="last")
        keep.append(pick.iloc[[0]])
    return pd.concat(keep)
