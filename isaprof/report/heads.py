"""The "blocks in their heads" section: each block's share of its head's FLOPs and peak memory.

Reads ``RESULTS_DIR/heads.csv`` (written by ``isaprof heads RESULTS_DIR``); torch-free.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from isaprof.report import data, tables

HEADS_FILE = "heads.csv"
REQUIRED = {"head", "block", "mode", "metric", "head_value", "block_value", "share", "height", "width"}


def shares_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per head: its size, GFLOP and peak MiB (inference, train) with the block's share of each."""
    out = []
    for (head, block), g in df.groupby(["head", "block"], sort=False):
        first = g.iloc[0]

        def pick(metric: str, mode: str, column: str, g: pd.DataFrame = g) -> float:
            sel = g[(g["metric"] == metric) & (g["mode"] == mode)]
            return float(sel[column].iloc[0]) if len(sel) else float("nan")

        out.append(
            {
                "head": head,
                "block": block,
                "input": f"{int(first['in_channels'])}x{int(first['height'])}x{int(first['width'])}",
                "head GFLOP": pick("flops", "inference", "head_value") / 1e9,
                "block % of FLOPs": 100 * pick("flops", "inference", "share"),
                "head peak MiB (inference)": pick("peak_bytes", "inference", "head_value") / 2**20,
                "block % of peak (inference)": 100 * pick("peak_bytes", "inference", "share"),
                "head peak MiB (train)": pick("peak_bytes", "train", "head_value") / 2**20,
                "block % of peak (train)": 100 * pick("peak_bytes", "train", "share"),
            }
        )
    return pd.DataFrame(out)


def heads_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """Markdown for the section ('' with a note when ``heads.csv`` is missing)."""
    df = data.side_table(results_dir, HEADS_FILE, REQUIRED, "isaprof heads", out_dir, notes)
    if df is None:
        return ""
    for col in ("head_value", "block_value", "share"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    sentence = (
        "Papers quote a block's cost inside its segmentation head (convolutions before and after, a "
        "fusion on the concatenated input). At the papers' sizes (B = 1, fp32, backbone width 2048 -> 512), "
        "the block's share of its head: FLOPs (forward; train is the same share) and the bytes live at the "
        "head's peak that the block allocated (0% when the peak falls in a convolution after the block "
        "has freed its memory)."
    )
    return "\n\n".join(["## Blocks in their heads", sentence, tables.markdown(shares_table(df), ".3g")])
