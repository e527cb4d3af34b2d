"""Derived tables: scaling exponents, crossovers, ISA factor grid, throughput, failures; number formatting.

Every function takes tidy rows (see :mod:`.data`) and returns a DataFrame of raw numbers; only
:func:`fmt` and :func:`markdown` turn numbers into text (GMACs, MiB, ms).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from isaprof import units
from isaprof.config import KEY_COLUMNS, SIZE_FIELDS, Config, select
from isaprof.report import data
from isaprof.roofline import schema
from isaprof.studies.table import BASELINE  # the block every other is compared with

TIE = 1e-3  # factors within 0.1% of the grid's minimum count as tied optima
MIN_SPAN = 2.0  # a fitted exponent needs sizes spanning at least this factor in N
# (metric, mode) pairs the scaling figures and tables cover, with a label and the unit they are drawn in.
SCALING = (
    ("flops", "inference", "FLOPs (inference)", "GFLOP", 1e9),
    ("peak_bytes", "inference", "peak memory (inference)", "MiB", 2**20),
    ("peak_bytes", "train", "peak memory (train)", "MiB", 2**20),
    ("latency_ms", "inference", "latency (inference)", "ms", 1.0),
    ("latency_ms", "train", "latency (train)", "ms", 1.0),
)
CROSSOVER_METRICS = (
    ("macs", "inference"),
    ("peak_bytes", "inference"),
    ("peak_bytes", "train"),
    ("latency_ms", "inference"),
)


def fit_exponent(n: np.ndarray, y: np.ndarray, tail: float = 0.5) -> float:
    """Slope of log y against log N over the larger sizes (the top ``tail`` fraction, at least 2 points).

    The window is widened until its largest N is at least ``MIN_SPAN`` times its smallest; ``nan`` when
    no window does (or fewer than 2 positive points): a slope over N = 63..64 says nothing.
    Least squares on (log N, log y).
    """
    good = (np.asarray(n) > 0) & (np.asarray(y) > 0) & np.isfinite(y)
    n, y = np.asarray(n, float)[good], np.asarray(y, float)[good]
    order = np.argsort(n)
    n, y = n[order], y[order]
    k = max(2, math.ceil(len(n) * tail))
    while k < len(n) and n[-1] < MIN_SPAN * n[-k]:  # widen the window until it spans MIN_SPAN x in N
        k += 1
    if len(n) < 2 or n[-1] < MIN_SPAN * n[-k]:
        return float("nan")
    slope, _ = np.polyfit(np.log(n[-k:]), np.log(y[-k:]), 1)
    return float(slope)


def exponents(df: pd.DataFrame) -> pd.DataFrame:
    """Fitted scaling exponent of each block's measured and analytic curve, per metric and impl.

    Columns: metric, mode, block, impl, sizes, measured_exponent, analytic_exponent.
    """
    out = []
    for metric, mode, label, _, _ in SCALING:
        rows = data.main_slice(data.metric_rows(df, metric, mode))
        for key, g in data.series(rows).items():
            out.append(
                {
                    "metric": label,
                    "block": data.label(key, g),
                    "impl": _impl(key),
                    "sizes": g["N"].nunique(),
                    "measured_exponent": fit_exponent(g["N"].to_numpy(), g["measured"].to_numpy()),
                    "analytic_exponent": fit_exponent(g["N"].to_numpy(), g["analytic"].to_numpy()),
                }
            )
    return pd.DataFrame(
        out, columns=["metric", "block", "impl", "sizes", "measured_exponent", "analytic_exponent"]
    )


def crossover(n: np.ndarray, block: np.ndarray, base: np.ndarray) -> str | int:
    """Smallest N from which ``block < base`` at every larger size on the common grid.

    Returns that N, ``"always"`` if from the smallest size, ``"never"`` if not even at the largest.
    """
    cheaper = np.asarray(block) < np.asarray(base)
    if not cheaper[-1]:
        return "never"
    i = len(cheaper) - 1
    while i > 0 and cheaper[i - 1]:
        i -= 1
    return "always" if i == 0 else int(np.asarray(n)[i])


def crossovers(df: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """For each efficient (block, impl) against the baseline block of each impl: the crossover size.

    Columns: metric, mode, block, impl, baseline_impl, sizes, crossover (N, "always" or "never"),
    crossover_hw (``HxW`` of that N, or the same word).
    """
    out = []
    for metric, mode in CROSSOVER_METRICS:
        rows = data.main_slice(data.metric_rows(df, metric, mode))
        lines = data.series(rows)
        bases = {k: g for k, g in lines.items() if k[0] == baseline}
        base_n = {bkey: (b["N"].to_numpy(), b["measured"].to_numpy()) for bkey, b in bases.items()}
        for key, g in lines.items():
            if key[0] == baseline:
                continue
            n, y = g["N"].to_numpy(), g["measured"].to_numpy()
            hs, ws = g["height"].to_numpy(), g["width"].to_numpy()
            for bkey, (bn, by) in base_n.items():
                # the sizes both lines hold (each line's N are unique and sorted: see data.series)
                common, i, j = np.intersect1d(n, bn, assume_unique=True, return_indices=True)
                if len(common) == 0:
                    continue
                x = crossover(common, y[i], by[j])
                hw = x
                if isinstance(x, int):
                    at = i[np.searchsorted(common, x)]
                    hw = f"{int(hs[at])}x{int(ws[at])}"
                out.append(
                    {
                        "metric": metric,
                        "mode": mode,
                        "block": data.label(key, g),
                        "impl": _impl(key),
                        "baseline_impl": _impl(bkey),
                        "sizes": len(common),
                        "crossover": x,
                        "crossover_hw": hw,
                    }
                )
    cols = ["metric", "mode", "block", "impl", "baseline_impl", "sizes", "crossover", "crossover_hw"]
    return pd.DataFrame(out, columns=cols)


def _impl(key: tuple) -> str:
    return key[1] + (f"/{key[2]}" if key[2] else "")


def factor_grid(df: pd.DataFrame, metric: str, mode: str = "inference", block: str = "isa") -> pd.DataFrame:
    """ISA cost over (P_h, P_w) at the size with most factors: columns ph, pw, measured, analytic, H, W, ...

    ``analytic`` is the formula for ``metric``, or the MACs formula where the metric has none (latency);
    ``analytic_from`` says which.
    """
    rows = data.metric_rows(df, metric, mode)
    rows = rows[(rows["block"] == block) & rows["factor"].str.contains("x", na=False)]
    if rows.empty:
        return pd.DataFrame(columns=["ph", "pw", "measured", "analytic", "height", "width", "impl"])
    keys = select(KEY_COLUMNS, "options", first=["device"])  # one grid: every key column but the factor
    score = {  # the grid with most factors, then the preferred device
        k: (g["factor"].nunique(), -data.DEVICE_PREFERENCE.get(k[0], 3)) for k, g in rows.groupby(keys)
    }
    best = max(score, key=score.get)
    g = rows[(rows[keys] == pd.Series(best, index=keys)).all(axis=1)].drop_duplicates("factor").copy()
    g["ph"] = g["factor"].str.split("x").str[0].astype(int)
    g["pw"] = g["factor"].str.split("x").str[1].astype(int)
    g["analytic_from"] = metric
    if g["analytic"].isna().all():  # latency has no formula: the MACs formula's optimum stands in
        macs = data.metric_rows(df, "macs", mode)
        macs = macs.groupby(data.CONFIG, dropna=False)["analytic"].first().rename("macs_analytic")
        g = g.merge(macs.reset_index(), on=data.CONFIG, how="left")
        g["analytic"], g["analytic_from"] = g["macs_analytic"], "macs"
    cols = ["ph", "pw", "measured", "analytic", "analytic_from", *SIZE_FIELDS, "impl", "device", "channels"]
    return g[cols].reset_index(drop=True)


def grid_optima(grid: pd.DataFrame) -> dict[str, object]:
    """Analytic and measured optimal factors of a grid; measured cost at the analytic opt. / measured min."""
    if grid.empty or grid["measured"].isna().all():
        return {}
    meas = grid.loc[grid["measured"].idxmin()]
    if grid["analytic"].isna().all():
        return {}
    ana = grid.loc[grid["analytic"].idxmin()]
    return {
        "measured_opt": (int(meas["ph"]), int(meas["pw"])),
        "analytic_opt": (int(ana["ph"]), int(ana["pw"])),
        "ratio": float(ana["measured"] / meas["measured"]),
        "ties": int((grid["measured"] <= meas["measured"] * (1 + TIE)).sum()),
    }


def throughput(df: pd.DataFrame, machine: dict) -> pd.DataFrame:
    """Achieved GFLOP/s = counted FLOPs / median latency, beside the device's roofline bound.

    ``intensity`` (FLOP/byte) = FLOPs / ``bytes_moved`` of the same configuration (each op reads its inputs
    and writes its outputs once: unfused traffic); NaN where the results hold no ``bytes_moved`` rows.
    ``peak_gflops`` and ``bandwidth_gbs`` are the device's measured roofs (``machine.json``);
    ``bound_gflops = min(peak, bandwidth x intensity)``, ``bound_by`` says which roof, ``roof_fraction =
    gflops / bound_gflops`` and ``fraction = gflops / peak_gflops``. ``interleaved`` and ``interleaved_iqr``:
    the ``peak_fraction`` rows (the FLOP rate over a square sgemm's, timed interleaved in the same run:
    load moves both alike), NaN where none was measured.
    """
    lat = data.ok(df)[data.ok(df)["metric"] == "latency_ms"]
    cols = data.CONFIG + ["backend", "device", "flops", "latency_ms", "spread", "gflops", "peak_gflops"]
    cols += ["fraction", "bytes_moved", "intensity", "bandwidth_gbs", "bound_gflops", "bound_by"]
    cols += ["roof_fraction", "interleaved", "interleaved_iqr"]
    if lat.empty:
        return pd.DataFrame(columns=cols)
    flops = _by_config(data.metric_rows(df, "flops"), "flops")
    t = lat[data.CONFIG + ["backend", "device", "measured", "spread"]].rename(
        columns={"measured": "latency_ms"}
    )
    t = t.merge(flops, on=data.CONFIG, how="left")
    moved = data.metric_rows(df, "bytes_moved")
    if moved.empty:
        t["bytes_moved"] = np.nan
    else:
        t = t.merge(_by_config(moved, "bytes_moved"), on=data.CONFIG, how="left")
    t["gflops"] = t["flops"] / (t["latency_ms"] / 1e3) / 1e9
    peak = [schema.matmul_peak_gflops(machine, d, dt) for d, dt in zip(t["device"], t["dtype"], strict=True)]
    t["peak_gflops"] = pd.to_numeric(pd.Series(peak, index=t.index, dtype=object), errors="coerce")
    bw = [schema.bandwidth_gbs(machine, d) for d in t["device"]]
    t["bandwidth_gbs"] = pd.to_numeric(pd.Series(bw, index=t.index, dtype=object), errors="coerce")
    t["fraction"] = t["gflops"] / t["peak_gflops"]
    t["intensity"] = t["flops"] / pd.to_numeric(t["bytes_moved"], errors="coerce")
    memory_roof = t["bandwidth_gbs"] * t["intensity"]  # GB/s x FLOP/byte = GFLOP/s
    t["bound_gflops"] = np.fmin(t["peak_gflops"], memory_roof).where(
        memory_roof.notna() & t["peak_gflops"].notna()
    )
    t["bound_by"] = np.where(
        t["bound_gflops"].isna(), "", np.where(memory_roof < t["peak_gflops"], "memory", "compute")
    )
    t["roof_fraction"] = t["gflops"] / t["bound_gflops"]
    same_run = data.ok(df)[data.ok(df)["metric"] == "peak_fraction"]
    key = data.CONFIG + ["device"]
    same_run = same_run[[*key, "measured", "spread"]].drop_duplicates(key)
    t = t.merge(
        same_run.rename(columns={"measured": "interleaved", "spread": "interleaved_iqr"}),
        on=key,
        how="left",
    )
    return t[cols].sort_values(["block", "impl", "height"]).reset_index(drop=True)


def _by_config(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """One value per configuration: the measured value (analytic where not measured), any device."""
    rows = rows.assign(**{name: rows["measured"].fillna(rows["analytic"])})
    return rows.groupby(data.CONFIG, dropna=False)[name].first().reset_index()


def failures(df: pd.DataFrame) -> pd.DataFrame:
    """Rows whose status is not ``ok``, one per (configuration, device, mode, status, error)."""
    bad = df[~df["status"].isin(["ok", "skipped"])]  # skipped: the device was absent, not a failure
    config = Config.column_names(padded=False)  # the configuration, its widths and options' JSON left out
    cols = select(config, "key_channels", "value_channels", "recurrence", "options", "path", first=data.LINE)
    cols += ["status", "error"]
    return bad[cols].drop_duplicates().reset_index(drop=True)


# --- formatting (through isaprof.units, the one number formatter) --------------------------------------

_UNITS = {
    "macs": (1e9, "GMAC"),
    "flops": (1e9, "GFLOP"),
    "peak_bytes": (2**20, "MiB"),
    "latency_ms": (1.0, "ms"),
}


def fmt(value: float | None, metric: str = "", digits: int = 3) -> str:
    """Format a raw value in the metric's display unit (GMAC, GFLOP, MiB, ms); empty for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or pd.isna(value):
        return ""
    scale, unit = _UNITS.get(metric, (1.0, ""))
    return f"{units.sig(value / scale, digits, trim=True)} {unit}".strip()  # 2,417 ms, not 2.42e+03 ms


def markdown(df: pd.DataFrame, floatfmt: str = ".3g") -> str:
    """A GitHub Markdown table of ``df``: floats through :func:`isaprof.units.by_spec` with ``floatfmt``
    (``".3g"``: 3 significant digits, an integer from 1,000 on; ``".2f"``; ``".1%"``), NaN as empty."""
    if df.empty:
        return "_(none)_"
    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    body = []
    for row in df.itertuples(index=False):
        cells = []
        for v in row:
            if isinstance(v, float):
                cells.append(units.by_spec(v, floatfmt))
            else:
                cells.append("" if v is None or v is pd.NA else str(v).replace("|", "\\|"))
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])
