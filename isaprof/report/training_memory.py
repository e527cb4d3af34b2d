"""The "Training memory of whole networks" section: published GPU training memory beside mode "step"'s
prediction, with a stacked bar per network of what holds the peak.

Reads ``RESULTS_DIR/training_memory.csv`` (written by ``isaprof reproduce``,
:func:`isaprof.studies.reproduce.write_training_memory`); torch-free.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from isaprof.report import plots, tables

TRAINING_FILE = "training_memory.csv"
REQUIRED = {"id", "target", "published", "predicted", "ratio", "reason"}


def section(results_dir: Path, out_dir: Path, notes: list[str]) -> str:
    """The section's Markdown (empty, with a note, when the side table is missing)."""
    path = Path(results_dir) / TRAINING_FILE
    if not path.is_file():
        notes.append(
            f"training memory: no {path.name} in {results_dir} (`isaprof reproduce --out {results_dir}`)."
        )
        return ""
    df = pd.read_csv(path, keep_default_na=False)
    if not REQUIRED <= set(df.columns):
        raise ValueError(
            f"{path} lacks the columns {', '.join(sorted(REQUIRED))}; rewrite it with `isaprof reproduce`"
        )
    out_dir = Path(out_dir)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out_dir / "tables" / TRAINING_FILE)
    figure = plots.stacked_bars(df, out_dir / "figures" / "training_memory.png")
    ratio = pd.to_numeric(df["ratio"], errors="coerce")
    within = int((ratio - 1).abs().le(0.10).sum())
    recipes = ", ".join(sorted({str(r) for r in df.get("recipe", []) if r})) or "today's PyTorch"
    sentence = (
        f"{within} of {len(df)} published training-memory figures are predicted within 10% "
        "(ratio = predicted / published; predicted = the CUDA caching allocator's max_memory_allocated "
        f"of a training step replayed on fake tensors, settings: {recipes}); the reason column explains "
        "each miss above 5%."
    )
    shown = "id target batch size published predicted ratio tensors reserved phase op reason".split()
    cols = [c for c in shown if c in df]
    return "\n\n".join(
        [
            "## Training memory of whole networks",
            sentence,
            tables.markdown(df[cols], ".4g"),
            f"![what holds the peak]({figure.relative_to(out_dir).as_posix()})",
        ]
    )


__all__ = ["section"]
