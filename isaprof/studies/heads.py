"""Each attention block's share of its published head's FLOPs and peak memory, at the papers' sizes.

A measuring step (it builds models; the report only reads what it writes): every head of
:data:`HEAD_CONFIGS` is built on ``meta``, moved to fake tensors and broken down per module
(:func:`isaprof.measure.modules.breakdown`) in inference and train; ``DIR/heads.csv`` gets one tidy row
per (head, mode, metric): the head's value, its block's value and the share. The block's MACs are its
inclusive MACs; its peak bytes are the bytes live at the head's peak that the block's modules allocated.

    python -m isaprof.studies.heads results/
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.config import MODES
from isaprof.measure import step
from isaprof.measure.modules import breakdown
from isaprof.targets import papers
from isaprof.targets.heads import build_head

# The papers' head configurations (B = 1, fp32, backbone output stride 8), with where each comes from:
# reference/papers.toml.
HEAD_CONFIGS: tuple[dict[str, Any], ...] = papers.HEADS
COLUMNS = [
    "head", "block", "mode", "metric", "unit", "head_value", "block_value", "share",
    "height", "width", "in_channels", "channels", "key_channels", "value_channels", "options", "source",
]  # fmt: skip


def head_share(cfg: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    """Tidy rows (macs, flops, peak_bytes) of one head configuration in one protocol mode."""
    h, w = cfg["size"]
    with torch.device("meta"):
        head = build_head(cfg["head"], cfg["channels"], cfg["key_channels"], cfg["value_channels"],
                          in_channels=cfg["in_channels"], **cfg["options"])  # fmt: skip
    with FakeTensorMode(allow_non_fake_inputs=True):
        head = head.to_empty(device="cpu")
        x = torch.empty(1, cfg["in_channels"], h, w)  # (B, C_in, H, W), fake
        b = breakdown(head, step(head, x, mode))
    block_name, block = next(
        (n, m) for n, m in head.named_modules() if n and getattr(m, "block_name", None) == head.inner_block
    )
    inside = [r for r in b.rows if r.module == block_name or r.module.startswith(block_name + ".")]
    block_macs = next(r.macs for r in b.rows if r.module == block_name)
    block_peak = sum(r.peak_bytes for r in inside)
    base = {
        "head": cfg["head"], "block": block.block_name, "mode": mode, "height": h, "width": w,
        "in_channels": cfg["in_channels"], "channels": cfg["channels"], "key_channels": cfg["key_channels"],
        "value_channels": cfg["value_channels"], "options": json.dumps(cfg["options"]),
        "source": cfg["source"],
    }  # fmt: skip
    values = [
        ("macs", "MAC", b.macs, block_macs),
        ("flops", "FLOP", 2 * b.macs, 2 * block_macs),
        ("peak_bytes", "byte", b.peak_bytes, block_peak),
    ]
    return [
        {**base, "metric": m, "unit": u, "head_value": hv, "block_value": bv, "share": bv / hv}
        for m, u, hv, bv in values
    ]


def measure_head_shares(out_dir: str | Path, configs: tuple[dict[str, Any], ...] = HEAD_CONFIGS) -> Path:
    """Measure every head configuration in both modes; write and return ``out_dir/heads.csv``."""
    rows = [row for cfg in configs for mode in MODES for row in head_share(cfg, mode)]
    path = Path(out_dir) / "heads.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m isaprof.studies.heads RESULTS_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(measure_head_shares(sys.argv[1]))
