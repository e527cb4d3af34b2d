"""One function per figure: tidy rows in, image path out (Agg backend, PNG and optionally SVG).

Each figure is readable on its own: title, axis labels with units, legend. Colours are fixed per block
name so a block keeps its colour across figures.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.colors
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from isaprof.report import data, tables  # noqa: E402

_BLOCKS = (
    "dense",
    "non_local",
    "isa",
    "criss_cross",
    "axial",
    "channelized_axial",
    "sparse_nonlocal",
    "linear",
)


def colour(block: str) -> str:
    """Fixed colour of a block (tab10), known blocks first, others after in name order."""
    cmap = plt.get_cmap("tab10")
    i = _BLOCKS.index(block) if block in _BLOCKS else len(_BLOCKS) + sum(map(ord, block)) % 2
    return cmap(i % 10)


def _save(fig: plt.Figure, path: Path, svg: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches="tight")
    plt.close(fig)
    return path


def scaling(
    rows: pd.DataFrame, path: str | Path, *, title: str, unit: str, scale: float, svg: bool = False
) -> Path:
    """Metric against N = H x W, log-log: measured markers over the dashed analytic curve, a colour a block.

    ``rows``: tidy rows of one metric and mode (already one impl, or the impl is put in the label);
    values are divided by ``scale`` and drawn in ``unit``. The legend carries each line's fitted exponent
    (slope of log metric against log N over the larger half of the sizes).
    """
    fig, ax = plt.subplots(figsize=(7, 4.6))
    several_impls = rows["impl"].nunique() > 1 or rows["backend"].nunique() > 1
    seen: dict[str, int] = {}  # lines drawn per block: a block's variants differ by marker
    for key, g in data.series(rows).items():
        block, impl = key[0], key[1]
        c, k = colour(block), seen.get(block, 0)
        seen[block] = k + 1
        n, y = g["N"].to_numpy(), g["measured"].to_numpy() / scale
        slope = tables.fit_exponent(n, y)
        name = data.label(key, g, impl=several_impls)
        has_formula = g["analytic"].notna().sum() >= 2
        if has_formula:  # the formula as a dashed curve, measured points as markers on top
            ax.plot(n, g["analytic"].to_numpy() / scale, linestyle="--", linewidth=1.2, color=c, alpha=0.8)
        ax.plot(
            n,
            y,
            marker=_MARKERS[(k + (0 if impl == "naive" else 3)) % len(_MARKERS)],
            linestyle="none" if has_formula else ":",
            markersize=6,
            color=c,
            markeredgecolor="k",
            markeredgewidth=0.4,
            label=f"{name}  " + ("N^?" if np.isnan(slope) else f"N^{slope:.2f}"),
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    _size_ticks(ax, rows)
    ax.set_ylabel(f"{unit} (log)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if rows["analytic"].notna().any():
        ax.plot([], [], "k--", label="analytic (formula)")
    ax.legend(
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        title="measured, fitted exponent (?: sizes span < 2x)",
        title_fontsize=8,
    )
    return _save(fig, Path(path), svg)


_MARKERS = ("o", "^", "D", "s", "v", "P")


def _size_ticks(ax: plt.Axes, rows: pd.DataFrame) -> None:
    """x ticks at the measured sizes labelled ``HxW`` (up to 10 sizes), else plain numbers of N."""
    sizes = rows.drop_duplicates("N").sort_values("N")
    if len(sizes) <= 10:
        ax.set_xticks(
            sizes["N"],
            [f"{h}x{w}" for h, w in zip(sizes["height"], sizes["width"], strict=True)],
            rotation=30,
        )
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xlabel("feature map H x W (log scale of N = H x W positions)")
    else:
        ax.set_xlabel("positions N = H x W (log)")


def factor_heatmap(grid: pd.DataFrame, path: str | Path, *, title: str, unit: str, scale: float) -> Path:
    """ISA cost over the factor grid (P_h rows, P_w columns), analytic (x) and measured (o) optimum."""
    phs, pws = sorted(grid["ph"].unique()), sorted(grid["pw"].unique())
    z = np.full((len(phs), len(pws)), np.nan)
    for r in grid.itertuples():
        z[phs.index(r.ph), pws.index(r.pw)] = r.measured / scale
    fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.9 * len(pws)), max(4.5, 1.8 + 0.7 * len(phs))))
    lo, hi = np.nanmin(z), np.nanmax(z)
    norm = matplotlib.colors.LogNorm(vmin=lo, vmax=hi) if hi > lo > 0 else None
    im = ax.imshow(z, cmap="viridis", origin="lower", aspect="auto", norm=norm)
    mid = np.sqrt(lo * hi) if norm else (lo + hi) / 2
    for i in range(len(phs)):
        for j in range(len(pws)):
            if np.isfinite(z[i, j]):
                ax.text(
                    j,
                    i + 0.28,
                    f"{z[i, j]:,.0f}" if z[i, j] >= 1000 else f"{z[i, j]:.3g}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="w" if z[i, j] < mid else "k",
                )
    opt = tables.grid_optima(grid)
    if opt:
        ai, aj = phs.index(opt["analytic_opt"][0]), pws.index(opt["analytic_opt"][1])
        mi, mj = phs.index(opt["measured_opt"][0]), pws.index(opt["measured_opt"][1])
        source = grid["analytic_from"].iloc[0] if "analytic_from" in grid else ""
        ana = "analytic optimum" + (" (MACs formula)" if source == "macs" else "")
        ax.scatter([aj], [ai], marker="x", s=160, color="red")
        ax.scatter([mj], [mi], marker="o", s=260, facecolors="none", edgecolors="orange", linewidths=2)
        title += f"\nred x: {ana}; orange o: measured optimum"
    ax.set_xticks(range(len(pws)), [str(p) for p in pws])
    ax.set_yticks(range(len(phs)), [str(p) for p in phs])
    ax.set_xlabel("P_w (column factor)")
    ax.set_ylabel("P_h (row factor)")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, label=f"measured {unit}" + (" (log colour scale)" if norm else ""))
    return _save(fig, Path(path), svg=False)


def roofline(tp: pd.DataFrame, path: str | Path, *, title: str) -> Path:
    """Achieved GFLOP/s against arithmetic intensity (FLOPs / peak bytes), with each device's matmul peak."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for block, g in tp.groupby("block"):
        g = g.dropna(subset=["intensity", "gflops"])
        marker = {"naive": "o", "sdpa": "s"}
        for impl, gi in g.groupby("impl"):
            ax.scatter(
                gi["intensity"],
                gi["gflops"],
                color=colour(block),
                marker=marker.get(impl, "^"),
                label=f"{block} [{impl}]",
                s=18 + 30 * np.log2(gi["height"] / gi["height"].min() + 1),
            )
    for device, peak in tp.dropna(subset=["peak_gflops"]).groupby("device")["peak_gflops"].first().items():
        ax.axhline(
            peak, color="k", linestyle="--", linewidth=1, label=f"{device} matmul peak {peak:.0f} GFLOP/s"
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity: counted FLOPs / peak bytes (FLOP/byte, log)")
    ax.set_ylabel("achieved GFLOP/s (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="best", title="marker size grows with resolution", title_fontsize=7)
    return _save(fig, Path(path), svg=False)
