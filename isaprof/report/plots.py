"""One function per figure: tidy rows in, image path out (Agg backend, PNG and optionally SVG).

Each figure is readable on its own: title, axis labels with units, a legend outside the axes. One palette
(:data:`STYLES`) keyed by block name gives a block the same colour and marker in every figure; the impl is the
fill (naive filled, sdpa hollow, fast half); a curve hidden under another is drawn slightly to its right.

A figure whose inputs did not change is not drawn again (:func:`unchanged`): each PNG carries the hash of
the data, the arguments and this module's source in its ``isaprof-inputs`` text chunk. Matplotlib is imported
only when a figure is drawn (:func:`pyplot`): a report whose figures are all current never loads it.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd

from isaprof.config import KEY_COLUMNS, SIZE_FIELDS, select
from isaprof.report import data, tables

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# One palette keyed by block name: the same colour and marker for a block in every figure.
STYLES: dict[str, tuple[str, str]] = {
    "dense": ("tab:blue", "o"),
    "non_local": ("tab:orange", "s"),
    "isa": ("tab:green", "D"),
    "criss_cross": ("tab:red", "^"),
    "axial": ("tab:purple", "v"),
    "channelized_axial": ("tab:brown", "P"),
    "sparse_nonlocal": ("tab:pink", "X"),
    "linear": ("tab:gray", "*"),
}
_OTHER_COLOURS = ("tab:olive", "tab:cyan", "black", "gold", "navy", "teal")
_OTHER_MARKERS = ("h", "p", "<", ">", "8", "d")
# An impl is told apart by its fill: the reference naive form filled, sdpa hollow, the fast path half-filled.
FILLS = {"naive": "full", "sdpa": "none", "fast": "left"}
# Two curves with |ln(y / y0)| < OVERLAP (within about 3%) at every common size, 2 sizes or more, coincide:
# the later one is drawn DODGE times further right in N per curve it hides behind, and its legend says so.
OVERLAP = 0.03
DODGE = 1.07
SMALL = 4.0  # marker size (points) of a marker drawn on top of another curve's marker; others are 7


def style(block: str) -> tuple[str, str]:
    """(colour, marker) of a block: fixed for the built-in blocks, a stable pick by name for others."""
    if block in STYLES:
        return STYLES[block]
    h = sum(map(ord, block))
    return _OTHER_COLOURS[h % len(_OTHER_COLOURS)], _OTHER_MARKERS[h % len(_OTHER_MARKERS)]


def colour(block: str) -> str:
    """Fixed colour of a block (see :func:`style`)."""
    return style(block)[0]


def marker(block: str) -> str:
    """Fixed marker of a block (see :func:`style`)."""
    return style(block)[1]


F = TypeVar("F", bound=Callable[..., Path])
KEY = "isaprof-inputs"  # the PNG text chunk holding the inputs' hash
_SOURCE = hashlib.sha1(Path(__file__).read_bytes()).hexdigest()
_current: dict[str, str] = {}  # path -> hash of the figure being drawn


def inputs_hash(name: str, *args: Any, **kwargs: Any) -> str:
    """SHA-1 of a figure's inputs: its function's name, its arguments (a DataFrame by its columns and
    every cell's text) and this module's source (a change of drawing code draws again)."""
    h = hashlib.sha1(f"{name}\0{_SOURCE}".encode())
    for v in (*args, *sorted(kwargs.items())):
        if isinstance(v, pd.DataFrame):
            h.update(v.to_csv(index=False).encode())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def stored_hash(path: Path) -> str | None:
    """The ``isaprof-inputs`` ``tEXt`` chunk of the PNG at ``path`` (None: absent, not a PNG, unreadable).

    Walks the chunks (8-byte signature, then length, type, data, CRC each) up to the image data.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return None
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    at, key = 8, KEY.encode("latin-1") + b"\0"
    while at + 8 <= len(raw):
        size, kind = struct.unpack(">I4s", raw[at : at + 8])
        body = raw[at + 8 : at + 8 + size]
        if kind == b"tEXt" and body.startswith(key):
            return body[len(key) :].decode("latin-1")
        if kind in (b"IDAT", b"IEND"):
            return None
        at += 12 + size
    return None


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the Agg backend, imported on the first figure drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def unchanged(fn: F) -> F:
    """Draw ``fn(data, path, ...)`` only when the PNG at ``path`` was not drawn from the same inputs
    (:func:`inputs_hash`); an SVG asked for and absent draws again."""

    @functools.wraps(fn)
    def wrapper(first: Any, path: str | Path, *args: Any, **kwargs: Any) -> Path:
        path = Path(path)
        key = inputs_hash(fn.__name__, first, *args, **kwargs)
        svg_missing = kwargs.get("svg") and not path.with_suffix(".svg").is_file()
        if path.is_file() and not svg_missing and stored_hash(path) == key:
            return path
        _current[str(path)] = key
        try:
            return fn(first, path, *args, **kwargs)
        finally:
            _current.pop(str(path), None)

    return wrapper  # type: ignore[return-value]


def _save(fig: Figure, path: Path, svg: bool, dpi: int = 110, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` (PNG, its inputs' hash in a text chunk; ``svg``: an SVG beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {KEY: _current[str(path)]} if str(path) in _current else {}
    box = "tight" if tight else None
    fig.savefig(path, dpi=dpi, bbox_inches=box, metadata={"Software": None, **meta})
    if svg:
        fig.savefig(path.with_suffix(".svg"), bbox_inches=box)
    pyplot().close(fig)
    return path


@unchanged
def scaling(
    rows: pd.DataFrame, path: str | Path, *, title: str, unit: str, scale: float, svg: bool = False
) -> Path:
    """Metric against N = H x W, log-log: measured markers over the dashed analytic curve, a colour a block.

    ``rows``: tidy rows of one metric and mode (already one impl, or the impl is put in the label);
    values are divided by ``scale`` and drawn in ``unit``. The legend carries each line's fitted exponent
    (slope of log metric against log N over the larger half of the sizes). A line that coincides with one
    drawn before it (:func:`overlaps`) is drawn :data:`DODGE` times to its right, its legend entry naming
    that line and the tolerance: ``(= axial within 3%, drawn 7% right)``. A marker that sits within that
    tolerance on a marker drawn before it at the same size (:func:`sits_on`), where the lines as a whole
    do not coincide, is drawn smaller (:data:`SMALL`) so that the one beneath shows around it.
    """
    fig, ax = pyplot().subplots(figsize=(7, 4.6))
    several_impls = rows["impl"].nunique() > 1 or rows["backend"].nunique() > 1
    drawn: list[tuple[str, np.ndarray, np.ndarray]] = []  # (label, N, y) of each curve so far
    points: list[tuple[np.ndarray, np.ndarray]] = []  # (x, y) of the markers drawn so far
    for key, g in data.series(rows).items():
        block, impl = key[0], key[1]
        c, mk = style(block)
        fill = FILLS.get(impl, "full") if several_impls else "full"
        n, y = g["N"].to_numpy(), g["measured"].to_numpy() / scale
        slope = tables.fit_exponent(n, y)
        name = data.label(key, g, impl=several_impls)
        hides = [lab for lab, n0, y0 in drawn if overlaps(n, y, n0, y0)]
        shift = DODGE ** len(hides)  # a curve under another one is drawn beside it, and says so
        drawn.append((name, n, y))
        x = n * shift
        small = sits_on(x, y, points)  # markers on another curve's marker: drawn smaller, on top
        points.append((x, y))
        has_formula = g["analytic"].notna().sum() >= 2
        if has_formula:  # the formula as a dashed curve, measured points as markers on top
            ax.plot(n * shift, g["analytic"].to_numpy() / scale, "--", linewidth=1.2, color=c, alpha=0.8)
        spread = pd.to_numeric(g["spread"], errors="coerce").to_numpy() / scale if "spread" in g else None
        if spread is not None and np.isfinite(spread).any():  # a timed metric: its IQR as an error bar
            half = np.nan_to_num(spread) / 2  # drawn median +- IQR/2 (the IQR's width, centred)
            ax.errorbar(n * shift, y, yerr=[np.minimum(half, y * 0.999), half], fmt="none", ecolor=c,
                        elinewidth=1.0, capsize=3, alpha=0.8)  # fmt: skip
        marks = dict(
            marker=mk,
            fillstyle=fill,
            color=c,
            markeredgecolor=c if fill == "none" else "k",
            markeredgewidth=1.2 if fill == "none" else 0.4,
        )
        ax.plot(
            x,
            y,
            linestyle="none" if has_formula else ":",
            markersize=7,
            markevery=list(~small) if small.any() else None,
            label=f"{name}  "
            + ("N^?" if np.isnan(slope) else f"N^{slope:.2f}")
            + (dodge_note(hides[-1], shift) if hides else ""),
            **marks,
        )
        if small.any():
            ax.plot(x[small], y[small], linestyle="none", markersize=SMALL, **marks)
    ax.set_xscale("log")
    ax.set_yscale("log")
    if rows["N"].nunique() == 1:  # one size: a span around it (else matplotlib's default span is huge)
        n0 = float(rows["N"].iloc[0])
        ax.set_xlim(n0 / 1.5, n0 * 1.5)
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


def dodge_note(hidden: str, shift: float) -> str:
    """Legend tail of a curve drawn ``shift`` times to the right of ``hidden``, the curve it coincides
    with: ``"  (= axial within 3%, drawn 7% right)"`` (the tolerance is :data:`OVERLAP`)."""
    return f"  (= {hidden} within {OVERLAP:.0%}, drawn {100 * (shift - 1):.0f}% right)"


def sits_on(x: np.ndarray, y: np.ndarray, points: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Which markers (x, y) sit on a marker of ``points`` (earlier curves' (x, y)): the same x and
    ``|ln(y / y0)| <`` :data:`OVERLAP`. A boolean array the length of ``x``."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    out = np.zeros(len(x), bool)
    for x0, y0 in points:
        _, i, j = np.intersect1d(x, np.asarray(x0, float), return_indices=True)
        a, b = y[i], np.asarray(y0, float)[j]
        good = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
        out[i[good & (np.abs(np.log(np.where(good, a, 1) / np.where(good, b, 1))) < OVERLAP)]] = True
    return out


def overlaps(n: np.ndarray, y: np.ndarray, n0: np.ndarray, y0: np.ndarray, tol: float = OVERLAP) -> bool:
    """Whether curve (n, y) coincides with (n0, y0): they share at least 2 sizes N and at every one of them
    both values are positive and ``|ln(y / y0)| < tol`` (:data:`OVERLAP`: within about 3%), so that on a
    log axis one curve's markers hide the other's everywhere."""
    common, i, j = np.intersect1d(n, n0, return_indices=True)
    if len(common) < 2:
        return False
    a, b = np.asarray(y, float)[i], np.asarray(y0, float)[j]
    good = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    close = good & (np.abs(np.log(np.where(good, a, 1) / np.where(good, b, 1))) < tol)
    return bool(close.all())


def _size_ticks(ax: Axes, rows: pd.DataFrame) -> None:
    """x ticks at the measured sizes labelled ``HxW`` (up to 10 sizes), else plain numbers of N."""
    import matplotlib.ticker

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


@unchanged
def factor_heatmap(grid: pd.DataFrame, path: str | Path, *, title: str, unit: str, scale: float) -> Path:
    """ISA cost over the factor grid (P_h rows, P_w columns), analytic (x) and measured (o) optimum."""
    import matplotlib.colors
    import matplotlib.ticker

    plt = pyplot()
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
        best = np.nanmin(z)  # every factor tied with the measured minimum (within 0.1%), not just one
        ties = [(i, j) for i in range(len(phs)) for j in range(len(pws)) if z[i, j] <= best * (1 + 1e-3)]
        ties = ties or [(mi, mj)]
        ax.scatter([j for _, j in ties], [i for i, _ in ties], marker="o", s=260, facecolors="none",
                   edgecolors="orange", linewidths=2)  # fmt: skip
        tied = f" ({len(ties)} tied within 0.1%)" if len(ties) > 1 else ""
        title += f"\nred x: {ana}; orange o: measured optimum{tied}"
    ax.set_xticks(range(len(pws)), [str(p) for p in pws])
    ax.set_yticks(range(len(phs)), [str(p) for p in phs])
    ax.set_xlabel("P_w (column factor)")
    ax.set_ylabel("P_h (row factor)")
    ax.set_title(title, fontsize=10)
    bar = fig.colorbar(im, ax=ax, label=f"measured {unit}" + (" (log colour scale)" if norm else ""))
    bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.4g}"))
    bar.ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.4g}"))
    return _save(fig, Path(path), svg=False)


def _two_five(v: float, _: int) -> str:
    """Minor tick label of a log axis: only the 2s and 5s of each decade (0.2, 0.5, 2, 5, 20, ...)."""
    if v <= 0:
        return ""
    lead = v / 10 ** np.floor(np.log10(v))
    return f"{v:g}" if np.isclose(lead, 2) or np.isclose(lead, 5) else ""


@unchanged
def roofline(
    tp: pd.DataFrame,
    path: str | Path,
    *,
    title: str,
    peak_gflops: float | None,
    bandwidth_gbs: float | None,
) -> Path:
    """A roofline of one device, log-log: achieved GFLOP/s against arithmetic intensity (FLOPs / bytes
    moved), under the compute roof (``peak_gflops``) and the memory roof (``bandwidth_gbs`` x intensity).

    ``tp``: :func:`tables.throughput` rows of that device. Colour and marker = block (the report's palette),
    fill = impl (:data:`FILLS`), connector solid = inference, dashed = train; size grows with resolution; a
    block's variants (ISA's factors) are labelled at their largest size. The legend has one entry per block,
    impl and mode. Without intensities (no ``bytes_moved`` rows) the figure says so and draws no points;
    without a bandwidth it draws the compute roof only and says that the memory roof is missing. The legend
    sits outside the axes.
    """
    import matplotlib.lines
    import matplotlib.ticker

    fig, ax = pyplot().subplots(figsize=(8.5, 5.2))
    pts = tp.dropna(subset=["intensity", "gflops"])
    pts = pts[(pts["intensity"] > 0) & (pts["gflops"] > 0)]
    if pts.empty:
        ax.axis("off")
        ax.text(0.5, 0.5, "No roofline: the results hold no bytes_moved rows\n(rerun `isaprof sweep` with an "
                "isaprof that records them).\nPeak bytes (memory held) are not bytes moved, so no x axis is "
                "drawn from them.", ha="center", va="center", fontsize=10, wrap=True)  # fmt: skip
        ax.set_title(title)
        return _save(fig, Path(path), svg=False)
    lo, hi = pts["intensity"].min(), pts["intensity"].max()
    ridge = peak_gflops / bandwidth_gbs if peak_gflops and bandwidth_gbs else None  # FLOP/byte: roofs meet
    if ridge:
        lo, hi = min(lo, ridge), max(hi, ridge)
    x = np.geomspace(lo / 1.6, hi * 1.6, 200)
    # each roof solid where it binds, thin and dashed where the other one is lower
    if bandwidth_gbs:
        mem, bind = bandwidth_gbs * x, x <= ridge if ridge else np.ones_like(x, bool)
        ax.plot(
            x[bind],
            mem[bind],
            color="k",
            linewidth=2,
            label=f"memory roof: {bandwidth_gbs:.1f} GB/s x intensity",
        )
        ax.plot(x[~bind], mem[~bind], color="k", linewidth=0.6, linestyle="--")
    if peak_gflops:
        bind = x >= ridge if ridge else np.ones_like(x, bool)
        label = f"compute roof: matmul peak {peak_gflops:.0f} GFLOP/s"
        ax.plot(x[bind], np.full(bind.sum(), peak_gflops), color="k", linewidth=2, label=label)
        ax.plot(x[~bind], np.full((~bind).sum(), peak_gflops), color="k", linewidth=0.6, linestyle="--")
    if ridge:
        ax.axvline(ridge, color="grey", linestyle=":", linewidth=1, label=f"ridge at {ridge:.1f} FLOP/byte")
    dtypes = pts["dtype"].nunique() > 1
    # a series: one configuration over the sizes (its key columns but the resolution). The legend stays
    # short: one entry per block (colour and marker), one per impl (fill), one per mode (connector);
    # a block's variants (ISA's factors) are labelled directly at their largest size.
    keys = select([c for c in KEY_COLUMNS if c in pts], *SIZE_FIELDS, first=[*data.LABEL, "mode", "dtype"])
    smallest = pts["height"].min()
    for _, g in pts.groupby(keys, dropna=False):
        block, impl, mode, dtype = g.iloc[0][[*data.LABEL, "mode", "dtype"]]
        g = g.sort_values("height")
        c, mk = style(block)  # the report's one palette: a block looks the same in every figure
        ax.plot(g["intensity"], g["gflops"], color=c, linewidth=0.6, alpha=0.5,
                linestyle="-" if mode == "inference" else "--")  # fmt: skip
        for xi, yi, h in zip(g["intensity"], g["gflops"], g["height"], strict=True):
            size = 4 + 2.2 * np.log2(h / smallest + 1)  # marker size grows with resolution
            ax.plot([xi], [yi], linestyle="none", marker=mk, markersize=size, color=c,
                    fillstyle=FILLS.get(impl, "full"), markeredgecolor=c, markeredgewidth=0.8)  # fmt: skip
        tag = " ".join(p for p in (data.variant(g), dtype if dtypes else "") if p)
        if tag:
            ax.annotate(tag, (g["intensity"].iloc[-1], g["gflops"].iloc[-1]), fontsize=6, color=c,
                        xytext=(4, 2), textcoords="offset points")  # fmt: skip
    handles = [matplotlib.lines.Line2D([], [], color="k", linewidth=2, label="roofs (memory, compute)")]
    for block in dict.fromkeys(pts["block"]):
        c, mk = style(block)
        handles.append(matplotlib.lines.Line2D([], [], linestyle="none", marker=mk, color=c, label=block))
    for impl in dict.fromkeys(pts["impl"]):
        fill = FILLS.get(impl, "full")
        handles.append(matplotlib.lines.Line2D([], [], linestyle="none", marker="o", color="grey",
                                               fillstyle=fill, label=f"[{impl}]"))  # fmt: skip
    if pts["mode"].nunique() > 1:
        handles += [matplotlib.lines.Line2D([], [], color="grey", linestyle=ls, label=m)
                    for m, ls in (("inference", "-"), ("train", "--"))]  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    top = max(peak_gflops or 0.0, pts["gflops"].max())
    bottom = min(pts["gflops"].min(), bandwidth_gbs * x[0] if bandwidth_gbs else np.inf)
    ax.set_ylim(bottom / 2, top * 2)  # the dashed extension of the memory roof does not stretch the axis
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 20, not 2x10^0
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(_two_five))  # 2 and 5 only: no overlap
    ax.set_xlabel("arithmetic intensity: counted FLOPs / bytes moved (FLOP/byte, log)")
    ax.set_ylabel("achieved GFLOP/s = FLOPs / median latency (log)")
    if not bandwidth_gbs:
        title += "\n(no memory roof: machine.json has no bandwidth_gbs; rerun `isaprof sweep`)"
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title="marker size grows with resolution;\nISA's factor labelled at its largest size",
              title_fontsize=7)  # fmt: skip
    return _save(fig, Path(path), svg=False)


# The training peak's parts, bottom up, as training_memory.csv names them (MiB), with their legend.
PARTS = (
    ("resident", "resident state (weights, grads, optimizer, buckets, batch)"),
    ("backbone", "backbone activations"),
    ("heads", "head activations"),
    ("logits_loss", "logits and loss"),
    ("backward", "backward transient"),
    ("allocator", "allocator rounding"),
)


@unchanged
def stacked_bars(df: pd.DataFrame, path: str | Path) -> Path:
    """One bar per network of ``training_memory.csv`` (``df``): the predicted peak's parts
    (:data:`PARTS`, MiB) stacked, the published figure as a tick."""
    fig, ax = pyplot().subplots(figsize=(1.6 + 1.2 * len(df), 4.2))
    x = range(len(df))
    bottom = pd.Series(0.0, index=df.index)
    for col, label in PARTS:
        if col not in df:
            continue
        values = pd.to_numeric(df[col], errors="coerce").fillna(0.0)
        ax.bar(x, values, bottom=bottom, label=label, width=0.6)
        bottom = bottom + values
    ax.scatter(x, pd.to_numeric(df["published"]), marker="_", s=900, color="k", label="published", zorder=3)
    ax.set_xticks(list(x), df["target"], rotation=20, ha="right")
    ax.set_ylabel("MiB (max_memory_allocated)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _save(fig, Path(path), svg=False, dpi=120, tight=False)
