"""The "Whole networks at the published test sizes" section: params, GFLOPs, inference peak memory and the
decode head's share of the FLOPs, one table per test setting.

Reads ``RESULTS_DIR/networks.csv`` (written by ``isaprof networks RESULTS_DIR``); torch-free.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from isaprof.report import data, tables

NETWORKS_FILE = "networks.csv"
REQUIRED = {"network", "dataset", "height", "width", "num_classes", "params", "flops", "peak_bytes",
            "head_share"}  # fmt: skip
NUMERIC = ("height", "width", "num_classes", "params", "flops", "peak_bytes", "head_share")
DATASET_NAMES = {"cityscapes": "Cityscapes", "ade20k": "ADE20K"}


def setting_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per network of one setting: params (M), GFLOP, peak MiB (inference), head % of FLOPs."""
    return pd.DataFrame(
        {
            "network": df["network"].astype(str),
            "params (M)": df["params"] / 1e6,
            "GFLOP": df["flops"] / 1e9,
            "peak MiB (inference)": df["peak_bytes"] / 2**20,
            "decode head % of FLOPs": 100 * df["head_share"],
        }
    ).reset_index(drop=True)


def setting_title(first: pd.Series) -> str:
    """``Cityscapes, 1024x2048 whole image, 19 classes``."""
    name = DATASET_NAMES.get(str(first["dataset"]), str(first["dataset"]))
    size = f"{int(first['height'])}x{int(first['width'])}"
    return f"{name}, {size} whole image, {int(first['num_classes'])} classes"


def networks_section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """Markdown for the section ('' with a note when ``networks.csv`` is missing)."""
    df = data.side_table(results_dir, NETWORKS_FILE, REQUIRED, "isaprof networks", out_dir, notes)
    if df is None:
        return ""
    for col in NUMERIC:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    sentence = (
        "The papers' networks (dilated ResNet-50/101 backbone, output stride 8, their decode head) at the "
        "published single-scale test settings, B = 1, fp32, inference on the whole image, counted on fake "
        "tensors. FLOPs = 2 x MACs. Params count every weight as built, the auxiliary FCN head (training "
        "only) included; peak = live tensor storage during the call (weights and input excluded). The "
        "decode head's share is module `decode_head`'s MACs over the network's (OCRNet: both cascade "
        "stages, the FCN stage `decode_head.0` and the OCR stage `decode_head.1`)."
    )
    parts = ["## Whole networks at the published test sizes", sentence]
    for _, g in df.groupby(["dataset", "height", "width", "num_classes"], sort=False):
        parts += [f"### {setting_title(g.iloc[0])}", tables.markdown(setting_table(g), ".3g")]
    return "\n\n".join(parts)
