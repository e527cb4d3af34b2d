"""Whole segmentation networks at the published test sizes: parameters, FLOPs, inference peak memory and
the decode head's share of the FLOPs.

A measuring step (the report only reads what it writes): every network target (r50 and r101 of each
family, :func:`isaprof.targets.network_names`) is profiled in inference on ``meta`` (fake tensors,
:func:`isaprof.profile`) with its per-module breakdown (:mod:`isaprof.measure.modules`), at each setting of
:data:`SETTINGS`: Cityscapes (1024x2048 whole image, 19 classes) and ADE20K (512x512, 150 classes).
``DIR/networks.csv`` gets one row per (network, setting). ``params`` counts every parameter of the network
as built, the auxiliary FCN head included (trained, unused at test time); ``peak_bytes`` is the live tensor
storage allocated during the call (parameters and input excluded). The head's MACs are the inclusive MACs
of module ``decode_head``; for OCRNet's cascade that module holds both stages, ``decode_head.0`` (the FCN
stage) and ``decode_head.1`` (the OCR stage), and ``head_modules`` names them.

    isaprof networks results/
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isaprof.profiling.profiler import profile
from isaprof.results.store import write_table
from isaprof.targets import network_names

HEAD_MODULE = "decode_head"  # the segmentor's decode head (a ModuleList of the stages in a cascade)
# The published single-scale test settings (B = 1, fp32, whole-image inference).
SETTINGS: tuple[dict[str, Any], ...] = (
    {"dataset": "cityscapes", "size": (1024, 2048), "num_classes": 19},
    {"dataset": "ade20k", "size": (512, 512), "num_classes": 150},
)
COLUMNS = [
    "network", "dataset", "height", "width", "num_classes", "test_mode", "mode", "params", "macs", "flops",
    "peak_bytes", "head_modules", "head_macs", "head_share",
]  # fmt: skip


def network_row(name: str, setting: dict[str, Any]) -> dict[str, Any]:
    """One network at one setting (``dataset``, ``size`` (H, W), ``num_classes``): its CSV row."""
    h, w = setting["size"]
    rec = profile(
        name, size=(h, w), num_classes=setting["num_classes"], test_mode="whole", mode="inference",
        device="meta", latency=None, by_module=True,
    )  # fmt: skip
    rows = {r.module: r for r in rec.by_module or ()}
    if HEAD_MODULE not in rows:
        raise ValueError(f"{name} has no module {HEAD_MODULE!r} (not a segmentation network)")
    stages = sorted(m for m, r in rows.items() if r.depth == 2 and m.startswith(HEAD_MODULE + ".")
                    and m.removeprefix(HEAD_MODULE + ".").isdigit())  # fmt: skip
    head_macs = rows[HEAD_MODULE].macs  # inclusive: every stage of a cascade
    return {
        "network": name, "dataset": setting["dataset"], "height": h, "width": w,
        "num_classes": setting["num_classes"], "test_mode": "whole", "mode": "inference",
        "params": rec.params, "macs": rec.macs, "flops": 2 * rec.macs, "peak_bytes": rec.peak_bytes,
        "head_modules": "+".join(stages) if stages else HEAD_MODULE, "head_macs": head_macs,
        "head_share": head_macs / rec.macs if rec.macs else float("nan"),
    }  # fmt: skip


def default_names() -> list[str]:
    """The r50 and r101 network targets (every ``*_r50_d8`` / ``*_r101_d8`` name), catalogue order."""
    return [n for n in network_names() if "_r50_" in n or "_r101_" in n]


def measure_networks(
    out_dir: str | Path,
    names: Sequence[str] | None = None,
    settings: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Profile every network (default :func:`default_names`) at every setting (default :data:`SETTINGS`);
    write and return ``out_dir/networks.csv``."""
    names = default_names() if names is None else list(names)
    settings = SETTINGS if settings is None else tuple(settings)
    rows = [network_row(name, s) for s in settings for name in names]
    return write_table(Path(out_dir) / "networks.csv", COLUMNS, rows)
