"""Noise-robust timing gate: each block's time relative to dense self-attention in the same run.

    python benchmarks/ratios.py                 # newest saved run vs the one before (.benchmarks/)
    python benchmarks/ratios.py NEW.json OLD.json --threshold 0.25

For every benchmark, ``ratio = median(block) / median(reference)`` where the reference (``dense``,
impl ``naive``) ran in the same group (device, mode, size) of the same run. A slower or busier machine
slows both, so the ratio survives it where absolute medians do not. The gate fails (exit 1) when a
ratio grew by more than ``--threshold`` (and more than the runs' own spread, see :func:`noise`).

Catches: one block (or impl) getting slower relative to the others, e.g. an extra pass, a lost
fused kernel, a copy in the hot loop. Cannot catch: a uniform slowdown of everything, the reference
included (use ``--benchmark-compare-fail`` on the same machine for that), a change of the reference
block itself (it shows up as every other ratio *improving*, which is reported but does not fail),
or changes smaller than the threshold / noise floor.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD = 0.25  # see README "Timing benchmarks": 2x the ratio spread seen between two CPU runs
DEFAULT_FLOOR_MS = 0.05  # medians below this are Python-overhead dominated: reported, not gated


@dataclass(frozen=True)
class Ratio:
    """One benchmark's median relative to its group's reference benchmark (both in seconds)."""

    group: str
    name: str
    ratio: float
    median_s: float
    rel_iqr: float  # (IQR / median) of the benchmark plus that of its reference


def _label(bench: Mapping[str, Any]) -> str:
    info = bench.get("extra_info", {})
    if "block" in info:
        return f"{bench['name'].split('[')[0]}[{info['block']}/{info['impl']}]"
    return bench["name"]


def ratios(run: Mapping[str, Any], reference: str = "dense/naive") -> dict[tuple[str, str], Ratio]:
    """``{(group, label): Ratio}`` for every benchmark of ``run`` (a pytest-benchmark JSON dict)."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for b in run["benchmarks"]:
        groups.setdefault(b.get("group") or "", []).append(b)
    out = {}
    for group, benches in groups.items():
        refs = [b for b in benches if _ref_key(b) == reference]
        if not refs:
            continue
        ref = refs[0]["stats"]
        for b in benches:
            if b is refs[0]:
                continue
            s = b["stats"]
            noise = s["iqr"] / s["median"] + ref["iqr"] / ref["median"]
            out[(group, _label(b))] = Ratio(group, _label(b), s["median"] / ref["median"], s["median"], noise)
    return out


def _ref_key(bench: Mapping[str, Any]) -> str:
    info = bench.get("extra_info", {})
    return f"{info.get('block')}/{info.get('impl')}"


@dataclass(frozen=True)
class Verdict:
    """A ratio present in both runs: ``change`` = new / old ratio - 1; ``bound`` = what it must exceed."""

    new: Ratio
    old: Ratio
    change: float
    bound: float
    gated: bool

    @property
    def regressed(self) -> bool:
        return self.gated and self.change > self.bound


def compare(
    new: Mapping[tuple[str, str], Ratio],
    old: Mapping[tuple[str, str], Ratio],
    threshold: float = DEFAULT_THRESHOLD,
    floor_ms: float = DEFAULT_FLOOR_MS,
) -> list[Verdict]:
    """Verdicts for the ratios in both runs, worst change first.

    The bound is ``max(threshold, noise)`` where noise is the summed relative IQR of the four medians
    involved: a change inside the runs' own spread is not evidence.
    """
    out = []
    for key in new.keys() & old.keys():
        n, o = new[key], old[key]
        gated = min(n.median_s, o.median_s) * 1e3 >= floor_ms
        out.append(Verdict(n, o, n.ratio / o.ratio - 1.0, max(threshold, n.rel_iqr + o.rel_iqr), gated))
    return sorted(out, key=lambda v: -v.change)


def report(verdicts: Sequence[Verdict]) -> str:
    """A table: group, benchmark, old ratio, new ratio, change, verdict."""
    lines = [f"{'group':<28} {'benchmark':<44} {'old':>8} {'new':>8} {'change':>8}  verdict"]
    for v in verdicts:
        verdict = "REGRESSED" if v.regressed else ("improved" if v.change < -v.bound else "ok")
        verdict += "" if v.gated else " (under floor)"
        lines.append(
            f"{v.new.group:<28} {v.new.name:<44} {v.old.ratio:8.3f} {v.new.ratio:8.3f} "
            f"{100 * v.change:+7.1f}%  {verdict}"
        )
    return "\n".join(lines)


def saved_runs(storage: Path) -> list[Path]:
    """Saved pytest-benchmark runs under ``storage``, oldest first (by the counter in the name)."""
    return sorted(storage.glob("*/*.json"), key=lambda p: (p.name.split("_")[0], p.stat().st_mtime))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("new", nargs="?", type=Path, help="run to check (default: newest saved run)")
    p.add_argument("old", nargs="?", type=Path, help="run to compare with (default: the one before)")
    p.add_argument("--storage", type=Path, default=Path(".benchmarks"), help="default: %(default)s")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD, help="default: %(default)s")
    p.add_argument("--floor-ms", type=float, default=DEFAULT_FLOOR_MS, help="default: %(default)s")
    p.add_argument("--reference", default="dense/naive", help="BLOCK/IMPL (default: %(default)s)")
    args = p.parse_args(argv)
    if args.threshold <= 0:
        p.error(f"--threshold must be a positive fraction (0.25 = 25%), got {args.threshold}")
    if args.new is None or args.old is None:
        runs = [r for r in saved_runs(args.storage) if r != args.new]
        need = 1 if args.new else 2
        if len(runs) < need:
            p.error(f"need {need} more saved run(s) in {args.storage}; run `make bench` first")
        args.new, args.old = (args.new, runs[-1]) if args.new else (runs[-1], runs[-2])
    new = ratios(_load(p, args.new), args.reference)
    old = ratios(_load(p, args.old), args.reference)
    if not new:
        p.error(f"{args.new}: no group has the reference {args.reference!r}")
    verdicts = compare(new, old, args.threshold, args.floor_ms)
    print(f"ratios to {args.reference}: {args.new} vs {args.old} (threshold {args.threshold:.0%})")
    print(report(verdicts))
    bad = [v for v in verdicts if v.regressed]
    print(f"{len(bad)} regression(s) in {len(verdicts)} compared ratio(s)")
    return 1 if bad else 0


def _load(p: argparse.ArgumentParser, path: Path) -> dict[str, Any]:
    try:
        run = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        p.error(f"cannot read {path}: {e}")
    if not isinstance(run, dict) or not isinstance(run.get("benchmarks"), list):
        p.error(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    return run


if __name__ == "__main__":
    sys.exit(main())
