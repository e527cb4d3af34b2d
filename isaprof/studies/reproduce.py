"""Rebuild the configurations behind published cost figures, measure them, and compare.

Reads ``reference/published.toml``, builds each configuration (a block alone, openseg's "3x3 conv
2048->512 then the block then the concat fusion" head, or CCNet's RCCA head), measures FLOPs and peak
memory on fake tensors (``meta``: nothing is allocated or computed) and, with ``device="cpu"``,
latency on real tensors; writes ``DIR/reproduction.csv``, one row per published figure with ours beside
it, the ratio and the reason where they differ. Its ``[[training_memory]]`` entries (a whole network's
published GPU memory in training) are predicted by mode "step" with the entry's recipe
(:mod:`isaprof.measure.training`) into ``DIR/training_memory.csv``. A runner, not the report: it may build
models.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomllib
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.config import REFERENCE
from isaprof.measure import measure_latency, step
from isaprof.results.store import write_table
from isaprof.targets import build
from isaprof.targets.blocks.common import record_attention
from isaprof.targets.heads import OpensegHead, RCCAHead  # the published heads (isaprof.targets.heads)

PUBLISHED = REFERENCE / "published.toml"
UNITS = {"GFLOP": 1e9, "MiB": 2.0**20, "x": 1.0, "%": 1.0}
COLUMNS = [
    "id", "metric", "unit", "published", "ours", "ours_as_source", "source_formula", "ratio",
    "provenance", "reason", "latency_ms", "source", "setting",
]  # fmt: skip
KINDS = ("conv3x3", "openseg", "rcca", "block", "affinity")
# [[training_memory]] entries: a whole network's published training memory, and the side table predicting it
TRAINING_KEYS = ("id", "source", "target", "size", "batch", "unit", "value", "provenance", "recipe")
TRAINING_FILE = "training_memory.csv"
TRAINING_COLUMNS = [
    "id", "target", "size", "batch", "recipe", "unit", "published", "predicted", "ratio", "tensors",
    "reserved", "resident", "backbone", "heads", "logits_loss", "backward", "allocator", "phase", "op",
    "provenance", "reason", "source",
]  # fmt: skip


def make_model(spec: dict[str, Any]) -> tuple[Callable[[], nn.Module], tuple[int, int, int, int]]:
    """A constructor of the module a ``build`` table describes, and its input shape (B, C_in, H, W)."""
    kind = spec.get("kind")
    if kind not in KINDS:
        raise ValueError(f"build.kind must be one of {', '.join(KINDS)}, got {kind!r}")
    h, w = spec["size"]
    c, cin = spec["channels"], spec.get("in_channels", spec["channels"])
    options = {
        k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k in ("factor", "recurrence")
    }

    def block() -> nn.Module:
        return build(spec["block"], c, spec.get("key_channels"), spec.get("value_channels"), **options)

    makers: dict[str, Callable[[], nn.Module]] = {
        "conv3x3": lambda: OpensegHead(cin, c),
        "openseg": lambda: OpensegHead(cin, c, block()),
        "rcca": lambda: RCCAHead(cin, c, spec["key_channels"], spec.get("recurrence", 2)),
        "block": block,
        "affinity": block,
    }
    return makers[kind], (1, cin, h, w)


def measure(make: Callable[[], nn.Module], shape: tuple[int, ...], mode: str) -> dict[str, float]:
    """FLOPs, peak bytes (ours: above parameters and input) and parameter + buffer bytes on fake tensors,
    through :func:`isaprof.profile` (the module as an instance target: measured on a copy, input width its
    ``in_channels``), so a published figure is measured exactly as every other configuration."""
    from isaprof.profiling.profiler import profile

    module = make()
    rec = profile(module, size=tuple(shape[2:]), channels=shape[1], batch=shape[0], mode=mode, latency=None)
    weights = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    return {"flops": rec.flop_count.flops, "peak_bytes": rec.peak_bytes, "weight_bytes": weights}


def affinity_bytes(spec: dict[str, Any]) -> tuple[float, str]:
    """Bytes of the softmax affinities a block forms: recorded on fake tensors, or N (H + W - 1) x 4 for
    criss-cross (its joint softmax does not go through ``attend``), with how we got it.

    One inference forward under :func:`~isaprof.targets.blocks.common.record_attention`, not through
    :func:`isaprof.profile`: the maps are not a metric of a profile, which runs the step once per
    measurement (peak, FLOPs), and the recorder recomputes each affinity, an extra matmul a profile would
    count."""
    h, w = spec["size"]
    if spec["block"] == "criss_cross":
        return float(h * w * (h + w - 1) * 4 * spec.get("recurrence", 1)), "from shapes"
    make, shape = make_model(spec)
    with torch.device("meta"):
        module = make().eval()
    with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad(), record_attention() as maps:
        module = module.to_empty(device="cpu")
        module(torch.empty(shape))
    return float(sum(m.numel() * m.element_size() for m in maps)), "recorded"


def rough_flops(name: str, spec: dict[str, Any]) -> int:
    """The source's own rough FLOP formula (openseg ``segmentor/tools/cost_helper.py``), re-evaluated.

    Its conventions: a k x k conv costs H W (2 C_in k^2 + bias) C_out FLOPs (one FLOP per bias add), an
    affinity or aggregation N x M x C costs 2 N M C; softmax, BN and ReLU are free; every projection is one
    1x1 conv with bias; ISA's two stages both project from C_in; the fusion is a 1x1 conv with bias.
    """
    h, w = spec["size"]
    n, cin, c = h * w, spec.get("in_channels", spec["channels"]), spec["channels"]
    ck, cv = spec.get("key_channels", 0), spec.get("value_channels", 0)

    def conv(c_in: int, c_out: int, k: int = 1, bias: int = 1) -> int:
        return h * w * (2 * c_in * k * k + bias) * c_out

    def aff(rows: int, ch: int, cols: int) -> int:
        return 2 * rows * cols * ch

    def isa_attention() -> int:
        ph, pw = spec["factor"]
        q = math.ceil(h / ph) * math.ceil(w / pw)  # positions per long-range group; ph * pw per window
        return (aff(q, ck, q) + aff(q, cv, q)) * ph * pw + (
            aff(ph * pw, ck, ph * pw) + aff(ph * pw, cv, ph * pw)
        ) * q

    qkv = 2 * conv(c, ck) + conv(c, cv)
    head, fuse, r = conv(cin, c, 3), conv(2 * c, c), spec.get("recurrence", 2)
    rough: dict[str, Callable[[], int]] = {  # the source's formula per head, as it writes them
        "conv3x3": lambda: head,
        "sa": lambda: head + qkv + conv(cv, c) + aff(n, ck, n) + aff(n, cv, n) + fuse,
        "isa": lambda: head + 2 * qkv + 2 * conv(cv, c) + isa_attention() + fuse,
        "rcca": lambda: (
            conv(cin, c, 3, 0)
            + r * (qkv + aff(n, ck, h + w - 1) + aff(n, cv, h + w - 1))
            + conv(c, c, 3, 0)
            + conv(cin + c, c, 3, 0)
        ),
    }
    if name not in rough:
        raise ValueError(f"unknown rough formula {name!r}; allowed: {', '.join(rough)}")
    return rough[name]()


def load_published(path: str | Path = PUBLISHED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``[[figure]]`` and ``[[ratio]]`` entries of a published-figures TOML, checked for required keys."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no published-figures file at {path}")
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"published-figures file {path}: invalid TOML: {e}") from None
    # [[training_memory]]: load_training_memory; [[latency]]: isaprof.studies.bounds
    stray = sorted(set(doc) - {"figure", "ratio", "training_memory", "latency"})
    if stray:
        allowed = "[[figure]], [[ratio]], [[training_memory]], [[latency]]"
        raise ValueError(f"{path}: unknown top-level key(s) {', '.join(stray)}; allowed: {allowed}")
    figures, ratios = doc.get("figure", []), doc.get("ratio", [])
    for entry, keys in [
        (e, ("id", "source", "metric", "unit", "value", "provenance", "build")) for e in figures
    ] + [
        (e, ("id", "source", "numerator", "denominator", "op", "unit", "value", "provenance")) for e in ratios
    ]:
        missing = [k for k in keys if k not in entry]
        if missing:
            raise ValueError(f"{path}: entry {entry.get('id', '?')!r} lacks {', '.join(missing)}")
        if entry["unit"] not in UNITS:
            raise ValueError(f"{path}: {entry['id']}: unit {entry['unit']!r} not one of {', '.join(UNITS)}")
    return figures, ratios


def reproduce_figure(
    fig: dict[str, Any], device: str = "meta", latency_max_gflop: float = 50.0
) -> dict[str, Any]:
    """Measure one published figure's configuration; the reproduction row (values in the figure's unit)."""
    spec, scale = fig["build"], UNITS[fig["unit"]]
    row = {k: fig.get(k, "") for k in ("id", "metric", "unit", "provenance", "reason", "source", "setting")}
    row["published"] = fig["value"]
    if fig["metric"] == "affinity_bytes":
        value, how = affinity_bytes(spec)
        row["ours"] = row["ours_as_source"] = value / scale
        row["setting"] = f"{row['setting']} (ours {how})"
    else:
        make, shape = make_model(spec)
        m = measure(make, shape, fig.get("mode", "inference"))
        if fig["metric"] == "flops":
            row["ours"] = row["ours_as_source"] = m["flops"] / scale
        else:  # openseg's harness: max_memory_allocated - input bytes, so resident weights count
            row["ours"] = m["peak_bytes"] / scale
            row["ours_as_source"] = (m["peak_bytes"] + m["weight_bytes"]) / scale
            other = "train" if fig.get("mode", "inference") == "inference" else "inference"
            o = measure(make, shape, other)["peak_bytes"] / scale
            row["reason"] = f"{row['reason']} (ours in {other}: {o:.4g} {fig['unit']})".strip()
        if device == "cpu" and m["flops"] / 1e9 <= latency_max_gflop:
            row["latency_ms"] = cpu_latency(make, shape)
        elif device == "cpu":
            row["latency_ms"] = f"skipped: {m['flops'] / 1e9:.0f} GFLOP > {latency_max_gflop:g}"
    if fig.get("rough"):
        row["source_formula"] = rough_flops(fig["rough"], spec) / scale
        delta = row["ours"] - row["source_formula"]
        row["reason"] = f"{row['reason']} (ours - source formula: {delta:+.3g} {fig['unit']})".strip()
    row["ratio"] = row["ours_as_source"] / fig["value"]
    if abs(row["ratio"] - 1) <= 0.01:
        row["reason"] = "matches within 1%" + (f"; {row['reason']}" if row["reason"] else "")
    return row


def cpu_latency(make: Callable[[], nn.Module], shape: tuple[int, ...]) -> float:
    """Median inference latency in ms on real CPU tensors (the "quick" protocol of ``isaprof.measure``)."""
    module = make()
    for p in module.parameters():  # moderate random weights: zero-initialised gains would skip no work anyway
        p.requires_grad_(False)
    x = torch.randn(shape)  # (B, C_in, H, W)
    return measure_latency(step(module, x, "inference"), protocol="quick", device="cpu").median_ms


def ratio_rows(ratios: list[dict[str, Any]], rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Ratios between two of our rows of the same run (our own convention), against the published claim."""
    out = []
    for r in ratios:
        num, den = rows[r["numerator"]]["ours"], rows[r["denominator"]]["ours"]
        ours = num / den if r["op"] == "ratio" else 100 * (1 - num / den)
        setting = f"{r['op']} of {r['numerator']} to {r['denominator']}, measured in the same run"
        row = {k: r.get(k, "") for k in ("id", "unit", "provenance", "reason", "source")}
        row.update(metric=r["op"], published=r["value"], ours=ours, ours_as_source=ours, setting=setting)
        out.append({**row, "ratio": ours / r["value"]})
    return out


def load_training_memory(path: str | Path = PUBLISHED) -> list[dict[str, Any]]:
    """The ``[[training_memory]]`` entries of a published-figures TOML, checked for required keys."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no published-figures file at {path}")
    try:
        with path.open("rb") as f:
            entries = tomllib.load(f).get("training_memory", [])
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"published-figures file {path}: invalid TOML: {e}") from None
    for e in entries:
        missing = [k for k in TRAINING_KEYS if k not in e]
        if missing:
            raise ValueError(f"{path}: entry {e.get('id', '?')!r} lacks {', '.join(missing)}")
        if e["unit"] != "MiB":
            raise ValueError(f"{path}: {e['id']}: training memory is in MiB, got {e['unit']!r}")
    return entries


def training_memory_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One published training-memory figure beside its prediction (MiB): ``predicted`` the CUDA allocator's
    ``max_memory_allocated`` of the step with the entry's recipe, on meta; ``tensors`` the exact tensor
    bytes at the peak, ``reserved`` the allocator's segments; the peak's parts (``resident``, ``backbone``
    and ``heads`` activations, ``logits_loss``: the network's own resizes and the loss, ``backward``: the
    transient above the saved activations, ``allocator``: block rounding, predicted - tensors); where and
    the ratio predicted / published."""
    from isaprof.profiling.profiler import step_memory  # lazy: loading the TOML needs no torch run

    options = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.get("options", {}).items()}
    width = {"channels": entry["channels"]} if "channels" in entry else {}  # a network's default: 3
    m = step_memory(
        entry["target"],
        size=tuple(entry["size"]),
        batch=entry["batch"],
        recipe=entry["recipe"],
        **width,
        **options,
    )
    owners = dict(m.by_owner)
    backbone = owners.pop("forward:backbone", 0)
    heads = sum(v for k, v in owners.items() if k.startswith("forward:"))
    mib = 2.0**20
    row = {k: entry.get(k, "") for k in ("id", "target", "batch", "recipe", "unit", "provenance", "reason")}
    row.update(
        size="x".join(map(str, entry["size"])),
        source=entry["source"],
        published=entry["value"],
        predicted=m.cuda_allocated / mib,
        tensors=m.total / mib,
        reserved=m.cuda_reserved / mib,
        resident=m.resident_total / mib,
        backbone=backbone / mib,
        heads=heads / mib,
        logits_loss=(owners.get("forward", 0) + owners.get("loss", 0)) / mib,
        backward=m.transient / mib,
        allocator=(m.cuda_allocated - m.total) / mib,
        phase=m.phase,
        op=m.op,
    )
    row["ratio"] = row["predicted"] / entry["value"]
    if abs(row["ratio"] - 1) <= 0.05:
        row["reason"] = "within 5%" + (f"; {row['reason']}" if row["reason"] else "")
    return row


def write_training_memory(out_dir: str | Path, published: str | Path = PUBLISHED) -> Path | None:
    """Predict every ``[[training_memory]]`` figure; write and return ``out_dir/training_memory.csv`` (the
    report's side table), or None when the file has none."""
    entries = load_training_memory(published)
    if not entries:
        return None
    rows = [training_memory_row(entry) for entry in entries]
    rows = [{k: _round(row.get(k, "")) for k in TRAINING_COLUMNS} for row in rows]
    return write_table(Path(out_dir) / TRAINING_FILE, TRAINING_COLUMNS, rows)


def reproduce(
    out_dir: str | Path, device: str = "meta", published: str | Path = PUBLISHED, training: bool = True
) -> Path:
    """Measure every published figure's configuration; write and return ``out_dir/reproduction.csv``.

    ``device="meta"``: FLOPs and memory on fake tensors only (seconds); ``"cpu"`` adds real CPU
    latency for configurations of at most 50 GFLOP. ``training``: also predict the published training
    memory of whole networks (``out_dir/training_memory.csv``, :func:`write_training_memory`; seconds per
    network, on meta).
    """
    if device not in ("meta", "cpu"):
        raise ValueError(f"device must be 'meta' or 'cpu', got {device!r}")
    if training:
        write_training_memory(out_dir, published)
    figures, ratios = load_published(published)
    rows = {f["id"]: reproduce_figure(f, device) for f in figures}
    table = [*rows.values(), *ratio_rows(ratios, rows)]
    rows = [{k: _round(row.get(k, "")) for k in COLUMNS} for row in table]
    return write_table(Path(out_dir) / "reproduction.csv", COLUMNS, rows)


def _round(v: Any) -> Any:
    return float(f"{v:.6g}") if isinstance(v, float) else v
