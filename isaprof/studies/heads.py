"""Each attention block's share of its published head's FLOPs and peak memory, at the papers' sizes.

A measuring step (the report only reads what it writes): every head of :data:`HEAD_CONFIGS` is profiled
on ``meta`` (:func:`isaprof.profile`, fake tensors) with its per-module breakdown
(:mod:`isaprof.measure.modules`) in inference and train; ``DIR/heads.csv`` gets one tidy row per (head,
mode, metric): the head's value, its block's value and the share. The block's MACs are its inclusive MACs;
its peak bytes are the bytes live at the head's peak that the block's modules allocated.

    isaprof heads results/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from isaprof import papers
from isaprof.config import MODES, SIZE_FIELDS
from isaprof.profiling.profiler import profile
from isaprof.results.store import write_table
from isaprof.targets.heads import HEADS

# The papers' head configurations (B = 1, fp32, backbone output stride 8), with where each comes from:
# reference/papers.toml.
HEAD_CONFIGS: tuple[dict[str, Any], ...] = papers.HEADS
# A head's widths as its entry gives them (beside its input width in_channels).
WIDTHS = ("channels", "key_channels", "value_channels")
COLUMNS = [
    "head", "block", "mode", "metric", "unit", "head_value", "block_value", "share",
    *SIZE_FIELDS, "in_channels", *WIDTHS, "options", "source",
]  # fmt: skip


def head_share(cfg: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    """Tidy rows (macs, flops, peak_bytes) of one head configuration in one protocol mode."""
    h, w = cfg["size"]
    rec = profile(
        cfg["head"], size=(h, w), channels=cfg["channels"], key_channels=cfg["key_channels"],
        value_channels=cfg["value_channels"], in_channels=cfg["in_channels"], mode=mode, device="meta",
        latency=None, by_module=True, **cfg["options"],
    )  # fmt: skip
    block, head_cls = HEADS[cfg["head"]]
    inside = [r for r in rec.by_module if r.module == head_cls.block_module
              or r.module.startswith(head_cls.block_module + ".")]  # fmt: skip
    block_macs = inside[0].macs  # pre-order: the block's own row first, its MACs inclusive
    block_peak = sum(r.peak_bytes for r in inside)
    head_peak = sum(r.peak_bytes for r in rec.by_module)  # self bytes: the rows sum to the peak
    base = {
        "head": cfg["head"], "block": block, "mode": mode, **dict(zip(SIZE_FIELDS, (h, w), strict=True)),
        "in_channels": cfg["in_channels"], **{k: cfg[k] for k in WIDTHS},
        "options": json.dumps(cfg["options"]), "source": cfg["source"],
    }  # fmt: skip
    values = [
        ("macs", "MAC", rec.macs, block_macs),
        ("flops", "FLOP", 2 * rec.macs, 2 * block_macs),
        ("peak_bytes", "byte", head_peak, block_peak),
    ]
    return [
        {**base, "metric": m, "unit": u, "head_value": hv, "block_value": bv, "share": bv / hv}
        for m, u, hv, bv in values
    ]


def measure_head_shares(out_dir: str | Path, configs: tuple[dict[str, Any], ...] | None = None) -> Path:
    """Measure every head configuration (default :data:`HEAD_CONFIGS`) in both modes; write and return
    ``out_dir/heads.csv``."""
    configs = HEAD_CONFIGS if configs is None else configs
    rows = [row for cfg in configs for mode in MODES for row in head_share(cfg, mode)]
    return write_table(Path(out_dir) / "heads.csv", COLUMNS, rows)
