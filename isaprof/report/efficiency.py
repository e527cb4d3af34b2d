"""The report's opening section: the efficiency table at the papers' two settings, then findings computed
from the results folder (never typed): where each block becomes cheaper than dense, the best ISA factor at
the factor grid's size against (8, 8), which published claims hold here.

Reads ``table_<H>x<W>.json`` (written by ``isaprof table ... --format json``), ``results.csv`` (sweep) and
``reproduction.csv`` (``isaprof reproduce``). Never runs a model.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from isaprof import papers
from isaprof.report import data, tables
from isaprof.results import reproduction
from isaprof.studies import table as tbl

# The papers' settings: (size, what it is), from reference/papers.toml.
SETTINGS = tuple((s.size, s.what) for s in papers.SETTINGS)
# What the findings compare with dense: (metric, mode, words).
CROSSOVER = (
    ("macs", "inference", "FLOPs"),
    ("peak_bytes", "inference", "memory (inference)"),
    ("peak_bytes", "train", "memory (train)"),
    ("latency_ms", "inference", "CPU latency"),
)
CLAIM_METRICS = ("ratio", "reduction")  # rows of reproduction.csv that test a paper's relative claim


def section(
    results_dir: Path, df: pd.DataFrame | None, notes: list[str], crossovers: pd.DataFrame | None = None
) -> str:
    """Markdown of the opening section; a note (not an exception) for each missing input.

    ``crossovers``: ``tables.crossovers(df)`` where the caller has it already (computed here otherwise).
    """
    lines = ["## Efficiency at the papers' settings"]
    found = 0
    for (h, w), what in SETTINGS:
        path = results_dir / f"table_{h}x{w}.json"
        if not path.is_file():
            notes.append(
                f"efficiency table: no {path.name} in {results_dir} (`isaprof table --size {h}x{w} ...`)."
            )
            continue
        try:
            setting, rows = tbl.read_json(path.read_text())
        except (ValueError, KeyError, TypeError) as e:  # a corrupt file: say which
            raise ValueError(f"{path}: not a table written by `isaprof table --format json` ({e})") from None
        if not found:  # the conventions once, from the first table (the tables differ in size only)
            lines.append(tbl.caption(setting).replace(f"{h} x {w}", "H x W", 1))
        found += 1
        lines.append(f"### {h}x{w}")
        lines.append(f"{setting.get('batch', 1)}x{setting.get('channels')}x{h}x{w}: {what}.")
        lines.append(tbl.markdown(rows))
    if not found:
        return ""
    findings = _findings(results_dir, df, crossovers)
    if findings:
        lines.append("### Findings (computed from the results below)")
        lines.append("\n".join(f"- {f}" for f in findings))
    return "\n\n".join(lines)


def _findings(results_dir: Path, df: pd.DataFrame | None, crossovers: pd.DataFrame | None) -> list[str]:
    out = []
    if df is not None:
        cross = _crossover_finding(df, crossovers)
        if cross:
            out.append(cross)
        factor = _factor_finding(df)
        if factor:
            out.append(factor)
    out += _claim_findings(results_dir / "reproduction.csv")
    return out


def _crossover_finding(df: pd.DataFrame, crossovers: pd.DataFrame | None = None) -> str:
    """One sentence: per block (reference form, naive), the size from which it stays cheaper than dense
    (``crossovers``: ``tables.crossovers(df)``, computed here when not given)."""
    cx = tables.crossovers(df) if crossovers is None else crossovers
    cx = cx[(cx["impl"] == "naive") & (cx["baseline_impl"] == "naive")]
    if cx.empty:
        return ""
    per_block = []  # one nested bullet per block
    for block, g in cx.groupby("block", sort=False):
        parts = []
        for metric, mode, words in CROSSOVER:
            hit = g[(g["metric"] == metric) & (g["mode"] == mode)]
            if hit.empty:
                continue
            hw = str(hit["crossover_hw"].iloc[0])
            text = {"always": "at every size swept", "never": "never (up to the largest size)"}.get(hw)
            parts.append(f"{words} {text or 'from ' + hw}")
        per_block.append(f"  - **{block}**: " + ", ".join(parts))
    sizes = df[df["device"] == "meta"].drop_duplicates("N").sort_values("N")
    lo, hi = sizes.iloc[0], sizes.iloc[-1]
    span = f"{lo['height']}x{lo['width']}..{hi['height']}x{hi['width']}"
    lat = data.main_slice(data.metric_rows(df, "latency_ms", "inference"))
    width = f" (C={int(lat['channels'].iloc[0])})" if not lat.empty else ""
    return (
        f"Cheaper than dense attention (both in their reference, naive form, from the sweep over {span}; "
        f"latency measured on this CPU{width}), and staying cheaper at every larger size:\n"
        + "\n".join(per_block)
    )


def _factor_finding(df: pd.DataFrame) -> str:
    """The best ISA factor at the factor grid's size by MACs and by peak memory, against (8, 8)."""
    texts = []
    size = ""
    for metric, words, unit, scale in (
        ("macs", "FLOPs", "GFLOP", 0.5e9),
        ("peak_bytes", "peak memory", "MiB", 2**20),
    ):
        grid = tables.factor_grid(df, metric, "inference")
        if grid.empty or grid["measured"].isna().all():
            continue
        ref = grid[(grid["ph"] == 8) & (grid["pw"] == 8)]
        if ref.empty:
            continue
        size = (
            f"{int(grid['height'].iloc[0])}x{int(grid['width'].iloc[0])} (C={int(grid['channels'].iloc[0])})"
        )
        low = grid["measured"].min()
        best = grid[grid["measured"] <= low * (1 + tables.TIE)].sort_values(["measured", "ph"])
        names = [f"{r.ph}x{r.pw}" for r in best.itertuples()]
        base = float(ref["measured"].iloc[0])
        saved = (1 - low / base) * 100
        tied = (
            f" (tied: {', '.join(names[1:4])}{', ...' if len(names) > 4 else ''})" if len(names) > 1 else ""
        )
        texts.append(
            f"by {words} {names[0]}{tied}: {low / scale:.4g} {unit}, {saved:.1f}% less than 8x8's "
            f"{base / scale:.4g} {unit}"
        )
    if not texts:
        return ""
    return (
        f"Best ISA factorization (P_h x P_w) at {size}, over every padding-minimal factor: "
        + "; ".join(texts)
        + "."
    )


def _claim_findings(path: Path) -> list[str]:
    """Which of the papers' relative claims hold here (matched as :mod:`isaprof.results.reproduction`
    counts), with the reproduction's reason, then the reproduction's one summary sentence."""
    if not path.is_file():
        return []
    rep = pd.read_csv(path, keep_default_na=False)
    if not {"id", "ratio", "metric", "published", "ours"} <= set(rep.columns):
        return []
    summary = reproduction.summarize(rep.to_dict("records"))
    out = []
    for fig, (_, r) in zip(summary.figures, rep.iterrows(), strict=True):
        if r["metric"] not in CLAIM_METRICS:
            continue
        quote = re.search(r"'([^']+)'", str(r.get("source", "")))
        who = ", ".join(str(r.get("source", "")).split(", ")[:2]).strip() or r["id"]
        claim = f'{who}: "{quote.group(1)}"' if quote else r["id"]
        unit = str(r.get("unit", ""))
        measured = (
            f"measured {float(r['ours']):.3g}{unit} against the published {float(r['published']):g}{unit}"
        )
        if fig.matched:
            out.append(f"Holds here: {claim} ({measured}).")
        else:
            reason = str(r.get("reason", "")).strip() or "no reason recorded"
            out.append(f"Does not hold here: {claim} ({measured}); {reason}.")
    tail = " (reasons in the reproduction section)." if summary.misses else "."
    out.append(summary.sentence()[:-1] + tail)
    return out
