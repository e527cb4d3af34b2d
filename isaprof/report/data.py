"""Load saved results (tidy CSV) and pick the slices the report draws (``machine.json``: read through
:mod:`isaprof.roofline.schema`).

Reads files only: this module never builds or runs a model. Column names and units follow the tidy row
schema of ``docs/ARCHITECTURE.md``; values stay raw (MACs, FLOPs, bytes, ms) until :mod:`.tables` formats.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd

from isaprof.config import (  # the tidy row schema, defined once (pure Python)
    COLUMNS,
    KEY_COLUMNS,
    SIZE_FIELDS,
    Config,
    default_of,
    select,
)
from isaprof.results import reader as results

# A configuration without where it ran (device, backend, path), its padded map, metric and environment:
# what a FLOP count and a latency share.
CONFIG = Config.column_names(placement=False, padded=False)
# What names a row of a table or a line of a figure: ``block [impl/backend]``.
LABEL = ["block", "impl"]
LINE = [*LABEL, "backend"]
# One line of a scaling figure: every key column but the resolution it varies (and the options, grouped
# last, see `series`), the label's first.
SERIES = select(KEY_COLUMNS, *SIZE_FIELDS, "options", first=LINE)
# The configuration's text columns (every field not read as an integer).
TEXT = [f.name for f in fields(Config) if f.metadata["read"] is not int]
# The text fields with a default (``layout``: map): what a side table written before the field existed holds.
FIELD_DEFAULTS = {f.name: default_of(f) for f in fields(Config) if isinstance(default_of(f), str)}
DEVICE_PREFERENCE = {"cuda": 0, "cpu": 1, "meta": 2}


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a tidy results CSV; add ``N = height * width`` (positions) and fill absent columns.

    ``ValueError`` if the file is missing or lacks the columns the report needs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no results table at {path} (expected the tidy CSV written by `isaprof sweep`)")
    df = _latest_frame(path)
    needed = {"block", "height", "width", "metric", "measured", "mode", "status"}
    missing = sorted(needed - set(df.columns))
    if missing:
        raise ValueError(
            f"{path} lacks column(s) {', '.join(missing)}; expected the tidy schema: {' '.join(COLUMNS)}"
        )
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA
    for col in ("factor", "error", "machine", "flags", *TEXT):
        df[col] = df[col].fillna("").astype(str)
    # The report shows a fast-path row as its own impl, "fast" (it runs sdpa whatever the reference impl):
    # every table and figure then keeps it apart from the reference form without knowing about paths.
    df["path"] = df["path"].fillna("reference").astype(str).replace("", "reference")
    fast = df["path"] == "fast"
    df.loc[fast, "impl"], df.loc[fast, "backend"] = "fast", ""
    for col in ("measured", "analytic", "spread", "samples"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["recurrence"] = pd.to_numeric(df["recurrence"], errors="coerce")
    df["N"] = df["height"].astype(int) * df["width"].astype(int)
    return df


def _latest_frame(path: Path) -> pd.DataFrame:
    """The store's winning attempts (:mod:`isaprof.results.reader`, the reader the sweep uses) as a
    DataFrame."""
    table = results.read_table(path)
    if not table.columns:
        raise ValueError(
            f"{path}:1: {path.name} is not a readable results table (it is empty); rerun `isaprof sweep`"
        )
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=table.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table.latest())
    buf.seek(0)
    return pd.read_csv(buf, keep_default_na=True, dtype={"factor": str, "options": str, "error": str})


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
    """The rows of one (device, batch, channels, dtype): the one with most sizes, then cuda > cpu > meta.

    A sweep may hold several widths and devices; a figure compares blocks along one of them.
    """
    if rows.empty:
        return rows
    keys = ["device", "batch", "channels", "dtype"]
    score = {
        k: (g["N"].nunique(), -DEVICE_PREFERENCE.get(k[0], 3), len(g))
        for k, g in rows.groupby(keys, dropna=False)
    }
    best = max(score, key=score.get)
    return rows[(rows[keys] == pd.Series(best, index=keys)).all(axis=1)]


def series(rows: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """Split rows into scaling lines, sorted by N: one per (block, impl, backend, widths, dtype, device,
    options). A block's option sets found at one size only (ISA's factor grid) are left out when others of
    the block span several sizes. Key: (block, impl, backend, ..., options); see :func:`label`.
    """
    keys = [*SERIES, "options"]
    # one pass: a line's first row at each N, sorted by N (stable), then split by key once; a line
    # keeps its rows in that order (rows with an empty key cell belong to no line, as in a groupby)
    uniq = rows.drop_duplicates([*keys, "N"]).sort_values("N", kind="stable")
    grouped = uniq.groupby(keys, sort=True)
    sizes = grouped.size()
    if sizes.empty:
        return {}
    codes = grouped.ngroup().fillna(-1).to_numpy(dtype=np.int64)
    order = np.argsort(codes, kind="stable")[int((codes < 0).sum()) :]
    ends = np.cumsum(sizes.to_numpy())
    spans: dict[str, int] = {}
    for k, n in zip(sizes.index, sizes.to_numpy(), strict=True):
        spans[k[0]] = max(spans.get(k[0], 0), int(n))
    return {
        k: uniq.iloc[order[end - n : end]]
        for k, n, end in zip(sizes.index, sizes.to_numpy(), ends, strict=True)
        if n >= 2 or spans[k[0]] < 2
    }


def variant(g: pd.DataFrame) -> str:
    """Short name of a line's block option: ``"8x8"`` (ISA factor), ``"R=2"`` (recurrence), else empty."""
    row = g.iloc[0]
    if row["factor"]:
        return str(row["factor"])
    if pd.notna(row["recurrence"]):
        return f"R={int(row['recurrence'])}"
    return ""


def label(key: tuple, g: pd.DataFrame, impl: bool = False) -> str:
    """``block [variant] [impl/backend]`` of a line from :func:`series`."""
    text = " ".join(p for p in (key[0], variant(g)) if p)
    if impl:
        text += f" [{key[1]}{'/' + key[2] if key[2] else ''}]"
    return text


def side_table(
    results_dir: str | Path,
    name: str,
    required: set[str],
    made_by: str,
    out_dir: str | Path,
    notes: list[str],
) -> pd.DataFrame | None:
    """A measuring step's CSV beside the results (``heads.csv``, ``bounds.csv``, ...), copied into
    ``out_dir/tables``; None with a note naming ``made_by`` (the command that writes it) when absent;
    ``ValueError`` naming the file when it lacks a ``required`` column (a configuration column with a
    default, added after the file was written, reads as that default). Cells stay text (no NaN)."""
    path = Path(results_dir) / name
    if not path.is_file():
        notes.append(f"{Path(name).stem}: no {name} in {results_dir} (`{made_by} {results_dir}`).")
        return None
    df = pd.read_csv(path, keep_default_na=False)
    for name_, default in FIELD_DEFAULTS.items():  # a configuration field newer than the file: its default
        if name_ in required and name_ not in df.columns:
            df[name_] = default
    missing = required - set(df.columns)
    if missing:
        raise ValueError(f"{path} lacks the columns {', '.join(sorted(missing))}; rewrite it with {made_by}")
    (Path(out_dir) / "tables").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, Path(out_dir) / "tables" / name)
    return df


def latency_machines(df: pd.DataFrame) -> list[tuple[str, str, str, int]]:
    """Where the latencies come from: ``(device, machine id, device name, rows)`` of each (device, machine)
    among the measured ``latency_ms`` rows, most rows first (machine id empty: rows written before machine
    ids were recorded)."""
    lat = df[(df["metric"] == "latency_ms") & df["measured"].notna()]
    if lat.empty:
        return []
    groups = lat.groupby(["device", "machine"], dropna=False)
    out = [
        (
            str(dev),
            mach if isinstance(mach, str) else "",
            ", ".join(sorted(set(g["device_name"].astype(str)))),
            len(g),
        )
        for (dev, mach), g in groups
    ]
    return sorted(out, key=lambda t: (DEVICE_PREFERENCE.get(t[0], 3), -t[3], t[1]))


def roofs_for_latencies(machine: dict, df: pd.DataFrame) -> tuple[dict, list[str]]:
    """``machine.json`` with each device's top-level entry set to the roofs of the machine its latency rows
    were measured on (:func:`latency_machines`' first for the device), and notes where that machine recorded
    no roofs (then the file's own top-level entry stands, measured elsewhere)."""
    view, notes = dict(machine), []
    from isaprof.roofline import schema

    seen: set[str] = set()
    for device, mach, name, _ in latency_machines(df):
        if device in seen or device == "meta":
            continue
        seen.add(device)
        entry = schema.machine_entry(machine, device, mach)
        if entry is not None:
            view[device] = entry
        elif mach and schema.device_roofs(machine, device) is not None:
            where = schema.device_roofs(machine, device).get("device_name") or "another machine"
            notes.append(
                f"roofs of {device}: machine.json holds none measured on the machine of the latencies "
                f"({mach or name or 'unrecorded'}); those of {where} are used."
            )
    return view, notes
