"""The efficiency table: per-target measurements in, one row per target out, rendered as Markdown, CSV,
LaTeX or JSON. Pure Python (no torch, no pandas): ``isaprof table`` measures, the report reuses the rendering.

A *measurement* (what :func:`rows` takes) is a dict per target, raw numbers, ``None`` where not measured::

    {"target": "isa", "options": {"factor": [8, 8]}, "key_channels": 256, "value_channels": 256,
     "status": "ok", "error": "",
     "params": 1_050_112,                                      # count
     "flops_inference": ..., "flops_train": ...,               # FLOP (= 2 x MACs)
     "peak_bytes_inference": ..., "peak_bytes_train": ...,     # byte
     "latency_ms_inference": ..., "latency_iqr_ms_inference": ..., "latency_ms_train": ..., ...,  # ms
     "bound_ms": ...}                                          # a lower bound on a GPU, not a measurement

A *row* (what the renderers take, what CSV and JSON hold) is flat, in display units: ``params`` (count),
``gflops`` (1e9 FLOP, forward), ``gflops_train`` (forward + backward), ``peak_mib_inference`` /
``peak_mib_train`` (2^20 byte), ``latency_ms`` / ``latency_iqr_ms`` (inference), ``latency_train_ms`` /
``latency_train_iqr_ms``, ``bound_ms``, and ``<cost>_vs_dense`` = cost / dense attention's cost on the same
input (ratio; ``1 - ratio`` is the fraction saved). Only :func:`fmt_value` / :func:`fmt_ratio` make text.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from isaprof import units

BASELINE = "dense"
MODES = ("inference", "train", "both")
FORMATS = ("markdown", "csv", "latex", "json")
MIB = 2**20
GIGA = 1e9

# Cost columns: (row column, measurement key, scale, Markdown/LaTeX header, mode it belongs to).
COSTS: tuple[tuple[str, str, float, str, str], ...] = (
    ("params", "params", 1.0, "params", ""),
    ("gflops", "flops_inference", GIGA, "GFLOPs", "inference"),
    ("gflops_train", "flops_train", GIGA, "GFLOPs (train)", "train"),
    ("peak_mib_inference", "peak_bytes_inference", MIB, "peak MiB (inference)", "inference"),
    ("peak_mib_train", "peak_bytes_train", MIB, "peak MiB (train)", "train"),
    ("latency_ms", "latency_ms_inference", 1.0, "latency ms", "inference"),
    ("latency_train_ms", "latency_ms_train", 1.0, "latency ms (train)", "train"),
    ("bound_ms", "bound_ms", 1.0, "GPU bound ms (lower bound)", ""),
)
# The spread of a latency column: (its column, the spread's column, measurement key).
SPREADS = (
    ("latency_ms", "latency_iqr_ms", "latency_iqr_ms_inference"),
    ("latency_train_ms", "latency_train_iqr_ms", "latency_iqr_ms_train"),
)
# The samples and warnings ("noisy", "contended") behind a latency column: (its column, the column, key).
SAMPLES = (
    ("latency_ms", "latency_samples", "latency_samples_inference"),
    ("latency_ms", "latency_flags", "latency_flags_inference"),
    ("latency_train_ms", "latency_train_samples", "latency_samples_train"),
    ("latency_train_ms", "latency_train_flags", "latency_flags_train"),
)
# A latency's ratio to dense timed interleaved with it: (its column, the ratio's key, its IQR's key). Where
# given, ``<column>_vs_dense`` is this per-round ratio's median (not a quotient of two medians), and
# ``<column>_vs_dense_iqr`` its IQR.
RATIOS = (
    ("latency_ms", "latency_ratio_inference", "latency_ratio_iqr_inference"),
    ("latency_train_ms", "latency_ratio_train", "latency_ratio_iqr_train"),
)
INT_COLUMNS = ("params", "key_channels", "value_channels", "latency_samples", "latency_train_samples")
TEXT_COLUMNS = ("target", "options", "status", "error", "latency_flags", "latency_train_flags")
RATIO_DIGITS = 3  # significant digits of a printed ratio
SAVED_DECIMALS = 1  # decimals of a printed "% saved"


def modes_of(mode: str) -> tuple[str, ...]:
    """``"both"`` -> ``("inference", "train")``; ``ValueError`` for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; allowed: {', '.join(MODES)}")
    return ("inference", "train") if mode == "both" else (mode,)


def columns(mode: str, latency: bool = False, bound: bool = False) -> list[str]:
    """The row columns of a table, in order: ``target``, ``options``, widths, ``status``, each cost (and
    latency spreads), each cost's ``_vs_dense`` ratio, then ``error``."""
    ms = modes_of(mode)
    costs = [
        c
        for c, _, _, _, m in COSTS
        if (m == "" or m in ms) and (latency or not c.startswith("latency")) and (bound or c != "bound_ms")
    ]
    out = ["target", "options", "key_channels", "value_channels", "status"]
    for c in costs:
        out.append(c)
        out += [s for col, s, _ in SPREADS if col == c]
        out += [s for col, s, _ in SAMPLES if col == c]
    ratios = []
    for c in costs:
        ratios.append(f"{c}_vs_dense")
        ratios += [f"{c}_vs_dense_iqr" for col, _, _ in RATIOS if col == c]
    return out + ratios + ["error"]


def cost_columns(cols: Sequence[str]) -> list[str]:
    """The cost columns among ``cols`` (those with a ``_vs_dense`` ratio)."""
    return [c for c, *_ in COSTS if c in cols]


def options_text(options: Mapping[str, Any]) -> str:
    """``{"factor": (8, 8), "recurrence": 2}`` -> ``"factor=8x8, recurrence=2"`` (sorted; pairs as AxB)."""
    parts = []
    for k in sorted(options):
        v = options[k]
        text = "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        parts.append(f"{k}={text}")
    return ", ".join(parts)


def rows(measurements: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any] | None, mode: str,
         *, latency: bool = False, bound: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """One row per measurement (same order), costs in display units and as ratios to ``baseline`` (dense
    attention measured on the same input; ``None``: ratios left empty). A failed measurement
    (``status`` not ``ok``) keeps its target, options and error, every number ``None``."""
    cols = columns(mode, latency, bound)
    base = _scaled(baseline) if baseline and baseline.get("status", "ok") == "ok" else {}
    out = []
    for m in measurements:
        ok = m.get("status", "ok") == "ok"
        row: dict[str, Any] = dict.fromkeys(cols)
        row.update(
            target=str(m["target"]),
            options=options_text(m.get("options") or {}),
            key_channels=m.get("key_channels"),
            value_channels=m.get("value_channels"),
            status="ok" if ok else str(m.get("status") or "error"),
            error="" if ok else " ".join(str(m.get("error", "")).split()),
        )
        if ok:
            values = _scaled(m)
            for c in cost_columns(cols):
                row[c] = values.get(c)
                b = base.get(c)
                row[f"{c}_vs_dense"] = row[c] / b if row[c] is not None and b else None
            for _, spread, key in SPREADS:
                if spread in cols and m.get(key) is not None:
                    row[spread] = float(m[key])
            for _, col, key in SAMPLES:
                if col in cols and m.get(key) is not None:
                    row[col] = m[key] if col.endswith("flags") else int(m[key])
            for c, key, iqr in RATIOS:
                if f"{c}_vs_dense" in cols and m.get(key) is not None:
                    row[f"{c}_vs_dense"] = float(m[key])
                    row[f"{c}_vs_dense_iqr"] = float(m[iqr]) if m.get(iqr) is not None else None
                elif f"{c}_vs_dense" in cols and row[f"{c}_vs_dense"] == 1.0 and m is baseline:
                    row[f"{c}_vs_dense_iqr"] = 0.0
        out.append({c: row[c] for c in cols})
    return out


def _scaled(m: Mapping[str, Any]) -> dict[str, Any]:
    """A measurement's costs in the row's display units (params stay an int)."""
    out: dict[str, Any] = {}
    for col, key, scale, _, _ in COSTS:
        v = m.get(key)
        if v is not None:
            out[col] = int(v) if col == "params" else v / scale
    return out


# --- text ----------------------------------------------------------------------------------------------


def fmt_value(column: str, value: Any) -> str:
    """A cost in its display unit: params with thousands separators, others 4 significant digits
    (fixed-point, an integer with separators from 10,000 on); empty for ``None``."""
    return units.integer(value) if column == "params" else units.sig(value, 4)


def fmt_ratio(ratio: float | None, latex: bool = False) -> str:
    """``0.1463`` -> ``"0.146x (85.4% saved)"``; above 1: ``"3.20x (220.0% more)"``; ``1`` -> ``"1.00x"``
    (:func:`isaprof.units.ratio` with :data:`RATIO_DIGITS` significant digits). ``latex``: ``$\\times$``
    and ``\\%``."""
    return units.ratio(ratio, RATIO_DIGITS, decimals=SAVED_DECIMALS, latex=latex)


def label(row: Mapping[str, Any]) -> str:
    """A row's name for a reader: ``isa (factor=8x8)``."""
    return f"{row['target']} ({row['options']})" if row.get("options") else str(row["target"])


def _display(cols: Sequence[str]) -> list[tuple[str, str]]:
    """(header, column) pairs of the rendered table: each cost, its spread, then its ratio to dense."""
    heads = {c: h for c, _, _, h, _ in COSTS}
    out = []
    for c in cost_columns(cols):
        out.append((heads[c], c))
        out += [(f"IQR {heads[c]}", s) for col, s, _ in SPREADS if col == c and s in cols]
        out.append(("vs dense", f"{c}_vs_dense"))
    return out


def _cell(column: str, value: Any, latex: bool = False, row: Mapping[str, Any] | None = None) -> str:
    """One rendered cell; with its ``row``, a latency says when it was noisy or contended (``noisy``:
    IQR / median > 10%) and an interleaved ratio gives its IQR."""
    row = row or {}
    if column.endswith("_vs_dense"):
        text = fmt_ratio(value, latex)
        iqr = row.get(f"{column}_iqr")
        if value is not None and iqr is not None and iqr > 0:
            pct = "\\%" if latex else "%"
            text += f", IQR {units.sig(iqr, 2)}" + (f" (noisy: > 10{pct})" if iqr / value > 0.1 else "")
        return text
    text = fmt_value(column, value)
    flags = next((row.get(f) for c, f, _ in SAMPLES if c == column and f.endswith("flags")), None)
    if flags:
        text += f" ({flags})"
    return text.replace(",", "{,}") if latex else text


def widths_text(row: Mapping[str, Any]) -> str:
    """``"256/256"`` (key/value channels), empty where unknown."""
    ck, cv = row.get("key_channels"), row.get("value_channels")
    return f"{ck}/{cv}" if ck is not None and cv is not None else ""


def markdown(table: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table: block, Ck/Cv, each cost with its ratio to dense; failed rows say so."""
    cols = list(cols or (table[0].keys() if table else []))
    shown = _display(cols)
    head = ["block", "Ck/Cv", *(h for h, _ in shown)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for r in table:
        name = label(r).replace("|", "\\|")
        if r["status"] != "ok":
            cells = [f"**{r['status']}**: {r['error']}".replace("|", "\\|")] + [""] * (len(shown) - 1)
        else:
            cells = [_cell(c, r.get(c), row=r) for _, c in shown]
        lines.append("| " + " | ".join([name, widths_text(r), *cells]) + " |")
    return "\n".join(lines)


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_RE = re.compile("|".join(re.escape(k) for k in _LATEX_SPECIAL))


def latex_escape(text: str) -> str:
    """Escape every LaTeX special character (``\\ & % $ # _ { } ~ ^``) in one pass."""
    return _LATEX_RE.sub(lambda m: _LATEX_SPECIAL[m.group(0)], str(text))


def caption(setting: Mapping[str, Any]) -> str:
    """The conventions of a table in one sentence (plain text): input, device, dtype, batch, mode, units."""
    h, w = setting.get("size", ("?", "?"))
    mode = setting.get("mode", "inference")
    modes = " and ".join(modes_of(mode)) if mode in MODES else str(mode)
    dev = setting.get("device", "meta")
    if dev == "meta":
        where = "meta (fake tensors: exact counts and bytes, no timing)"
    else:
        name = setting.get("device_name")
        where = dev + (f" ({name})" if name and name != dev else "")
    batch = setting.get("batch", 1)
    text = (
        f"Cost of each attention block on a {batch} x {setting.get('channels', '?')} x {h} x {w} input "
        f"({setting.get('dtype', 'float32')}, batch {batch}, {modes}, device {where}); key/value widths "
        "Ck/Cv as listed. FLOPs = 2 x MACs (matrix products and convolutions). Memory = peak tensor "
        "storage allocated during the call above inputs and parameters, in MiB (1,048,576 bytes). "
        "'vs dense' = cost / dense self-attention's cost on the same input."
    )
    if setting.get("latency"):
        text += (
            " Latency: median over at least 7 timed samples (ms) with its interquartile range (IQR); each "
            "block timed interleaved with dense (A, B, A, B, ...), its 'vs dense' the median of the "
            "per-round ratios with their IQR; 'noisy': IQR above 10% of the median; 'contended': a matmul "
            "probe before and after the timing differed by more than 20%."
        )
    if setting.get("gpu"):
        text += f" GPU bound: a lower bound on latency on {setting['gpu']} (roofline), not a measurement."
    return text


def latex(table: Sequence[Mapping[str, Any]], setting: Mapping[str, Any], cols: Sequence[str] | None = None,
          label_key: str = "tab:efficiency") -> str:  # fmt: skip
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``): right-aligned numbers,
    a caption stating the conventions, every text cell escaped; a failed row spans the cost columns."""
    cols = list(cols or (table[0].keys() if table else []))
    shown = _display(cols)
    head = ["Block", "$C_k/C_v$", *(latex_escape(h) for h, _ in shown)]
    out = [
        "% isaprof table; needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        "\\caption{" + latex_escape(caption(setting)) + "}",
        "\\label{" + label_key + "}",
        "\\begin{tabular}{ll" + "r" * len(shown) + "}",
        "\\toprule",
        " & ".join(head) + " \\\\",
        "\\midrule",
    ]
    for r in table:
        name = latex_escape(label(r))
        if r["status"] != "ok":
            msg = latex_escape(f"{r['status']}: {r['error']}")
            cells = [f"\\multicolumn{{{len(shown)}}}{{l}}{{{msg}}}"]
        else:
            cells = [_cell(c, r.get(c), latex=True, row=r) for _, c in shown]
        out.append(" & ".join([name, widths_text(r), *cells]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    return "\n".join(out)


def to_csv(table: Sequence[Mapping[str, Any]], cols: Sequence[str] | None = None) -> str:
    """One CSV line per row, raw numbers (``repr`` of floats: exact round trip), ``None`` as empty."""
    cols = list(cols or (table[0].keys() if table else []))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({c: "" if r.get(c) is None else r[c] for c in cols})
    return buf.getvalue()


def read_csv(text: str) -> list[dict[str, Any]]:
    """Rows of :func:`to_csv` (ints and floats parsed back, empty as ``None``)."""
    out = []
    for r in csv.DictReader(io.StringIO(text)):
        out.append({c: _parse(c, v) for c, v in r.items()})
    return out


def _parse(column: str, value: str) -> Any:
    if column in TEXT_COLUMNS:
        return value
    if value == "":
        return None
    return int(value) if column in INT_COLUMNS else float(value)


def to_json(table: Sequence[Mapping[str, Any]], setting: Mapping[str, Any],
            cols: Sequence[str] | None = None) -> str:  # fmt: skip
    """``{"setting": ..., "caption": ..., "columns": [...], "rows": [...]}`` (raw numbers)."""
    cols = list(cols or (table[0].keys() if table else []))
    doc = {
        "setting": dict(setting),
        "caption": caption(setting),
        "columns": cols,
        "rows": [{c: r.get(c) for c in cols} for r in table],
    }
    return json.dumps(doc, indent=1) + "\n"


def read_json(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(setting, rows) of :func:`to_json`; ``ValueError`` naming what is missing."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not {"setting", "rows"} <= set(doc):
        raise ValueError("not an isaprof table JSON (needs the keys setting and rows)")
    return doc["setting"], list(doc["rows"])


def render(table: Sequence[Mapping[str, Any]], setting: Mapping[str, Any], fmt: str,
           cols: Sequence[str] | None = None) -> str:  # fmt: skip
    """The table in ``fmt`` (one of :data:`FORMATS`), ending with a newline."""
    if fmt == "markdown":
        return markdown(table, cols) + "\n"
    if fmt == "csv":
        return to_csv(table, cols)
    if fmt == "latex":
        return latex(table, setting, cols) + "\n"
    if fmt == "json":
        return to_json(table, setting, cols)
    raise ValueError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
