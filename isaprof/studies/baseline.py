"""Exact cost baselines: every block's MACs and meta-path peak bytes, frozen in a JSON file.

``reference/baseline.json`` holds, per block x impl x configuration, the measured and analytic
``params`` (count), ``macs`` (MAC, forward for ``inference``, forward + backward for ``train``) and
``peak_bytes`` (byte, the storage-lifetime peak of ``isaprof.profile(..., device="meta")``, see
docs/ARCHITECTURE.md "Measurement protocol"). All numbers are exact integers computed on the meta
device, so they are the same on any machine, with or without a GPU: any difference is a change in
the code (a block, a formula or the counters), never noise. :func:`check` reports it; :func:`update`
rewrites the file on purpose.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isaprof.config import KEY_COLUMNS, MODES, REFERENCE, Config, select

DEFAULT_FILE = REFERENCE / "baseline.json"
SCHEMA = 1
METRICS = ("params", "macs", "peak_bytes")  # tidy-row metric names kept in the baseline
CHANNELS = 32  # C; key/value widths are each block's defaults
# (H, W, batch): square; odd and non-square (an H/W mix-up shows) with batch 2 (batch handling). Two small
# sizes keep `check` under 30 s on 2 cores: the meta path costs ~0.3 s of Python dispatch per call and
# loop-based blocks (channelized axial) dispatch more ops at larger H, W; MACs are exact at any size.
SIZES = ((16, 16, 1), (13, 17, 2))
# Option variants, chosen by option name so the baseline follows whatever the blocks are called:
# ISA partition factors (4x4 pads 13x17 to 16x20, non-square 8x4 pads it to 16x20, neither pads 16x16);
# criss-cross recurrences R = 1, 2.
VARIANTS: dict[str, tuple[Any, ...]] = {"factor": ((4, 4), (8, 4)), "recurrence": (1, 2)}
# Extra cases at the odd size only, for a block having the first option: ISA's padding mask on a padded
# input, non-local's sub-sampled keys.
ODD_EXTRAS: tuple[dict[str, Any], ...] = ({"masked": True, "factor": (4, 4)}, {"sub_sample": True})
# A case's description: its configuration but the block's default widths, what the run reports (backend)
# and what every case shares or is measured across (path, dtype, device, both modes, a map input).
DESCRIBED = select(
    KEY_COLUMNS, "key_channels", "value_channels", "backend", "path", "dtype", "device", "mode", "layout",
    first=("block", "impl"),
)  # fmt: skip
# Set on every case of a block having the option: channelized axial's 16 query chunks make ~2x the
# dispatched ops of 4 on the meta path; MACs do not depend on it (only the peak does).
FIXED: dict[str, Any] = {"groups": 4}

Metrics = dict[str, dict[str, Any]]  # "macs.train" -> {"measured": int | None, "analytic": int | None}


@dataclass(frozen=True)
class Case:
    """One baseline configuration (measured in both modes) and which of its options were set on purpose:
    the key names those, the others are the block's defaults."""

    config: Config  # mode and device are set per measurement (meta; inference and train)
    explicit: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        block: str,
        impl: str,
        height: int,
        width: int,
        channels: int = CHANNELS,
        batch: int = 1,
        options: tuple[tuple[str, Any], ...] = (),
    ) -> Case:
        """The case of ``block``/``impl`` at (``height``, ``width``) with ``options`` set explicitly."""
        from isaprof.targets import configure

        cfg = configure(
            block, size=(height, width), channels=channels, batch=batch, impl=impl, **dict(options)
        )
        return cls(cfg, tuple(k for k, _ in options))

    @property
    def block(self) -> str:
        return self.config.block

    @property
    def options(self) -> tuple[tuple[str, Any], ...]:
        """The explicitly set options, in the order given."""
        return tuple((k, self.config.option(k)) for k in self.explicit)

    @property
    def key(self) -> str:
        """Stable, readable id, e.g. ``"isa/naive B2 C32 13x17 factor=4x4"``."""
        c = self.config
        opts = "".join(f" {k}={_fmt_option(v)}" for k, v in self.options)
        return f"{c.block}/{c.impl} B{c.batch} C{c.channels} {c.height}x{c.width}{opts}"

    def describe(self) -> dict[str, Any]:
        """The JSON-able description stored beside the metrics."""
        out = {name: getattr(self.config, name) for name in DESCRIBED}
        out["options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.options}  # explicit ones
        return out


def cases(blocks: Sequence[str] | None = None) -> list[Case]:
    """Every registered block (or those in ``blocks``) x impl x size x option variant."""
    from isaprof.targets import names, spec

    known = names()
    for b in blocks or ():
        spec(b)  # ValueError listing the known blocks
    out = []
    for name in [b for b in known if blocks is None or b in blocks]:
        s = spec(name)
        fixed = tuple((k, v) for k, v in FIXED.items() if k in s.options)
        variants: list[tuple[tuple[str, Any], ...]] = [()]
        for opt, values in VARIANTS.items():
            if opt in s.options:
                variants = [((opt, v),) for v in values]
        extras = [tuple(e.items()) for e in ODD_EXTRAS if next(iter(e)) in s.options]
        for impl in s.impls:
            for h, w, b in SIZES:
                odd = h % 2 and w % 2
                out += [
                    Case.of(name, impl, h, w, CHANNELS, b, fixed + v)
                    for v in variants + (extras if odd else [])
                ]
    return out


def measure(case: Case, mode: str) -> tuple[Metrics, dict[str, Any]]:
    """Profile ``case`` on the meta device in ``mode``.

    Returns (``{"macs.<mode>": {"measured", "analytic"}, ...}``, ``{"padded": [H', W'], ...}``);
    a failing configuration gives ``{"error": message}`` in place of the numbers.
    """
    from isaprof.profiling.profiler import profile

    try:
        record = profile(dataclasses.replace(case.config, device="meta", mode=mode))
        rows = [dict(r) for r in record.rows()]  # tidy rows, docs/ARCHITECTURE.md
    except Exception as e:  # noqa: BLE001  a block that stops running is a change to report
        return {f"{m}.{mode}": {"error": _one_line(e)} for m in METRICS}, {}
    metrics: Metrics = {}
    info: dict[str, Any] = {}
    for r in rows:
        if r.get("metric") not in METRICS:
            continue
        if r.get("status", "ok") != "ok":
            metrics[f"{r['metric']}.{mode}"] = {"error": str(r.get("error") or r.get("status"))}
        else:
            measured = r.get("measured")
            if r["metric"] == "peak_bytes":  # tensors only: per-thread scratch depends on the machine
                measured = record.peak_bytes_tensors
            metrics[f"{r['metric']}.{mode}"] = {
                "measured": _int(measured),
                "analytic": _int(r.get("analytic")),
            }
        if r.get("padded_height") not in (None, ""):
            info["padded"] = [_int(r["padded_height"]), _int(r["padded_width"])]
        if r.get("backend"):
            info["backend"] = r["backend"]  # the sdpa kernel profile chose (math when flash does not apply)
    return metrics, info


def entry(case: Case) -> dict[str, Any]:
    """The baseline entry of one case: its configuration, ``padded``/``backend`` and both modes' metrics."""
    metrics: Metrics = {}
    info: dict[str, Any] = {}
    for mode in MODES:
        m, i = measure(case, mode)
        metrics.update(m)
        info.update(i)
    # params do not depend on the mode: keep one copy
    metrics["params"] = metrics.pop("params.inference", {"error": "no params row"})
    metrics.pop("params.train", None)
    return {**case.describe(), **info, "metrics": dict(sorted(metrics.items()))}


def collect(selected: Iterable[Case], jobs: int = 1) -> dict[str, Any]:
    """Measure every case in both modes and return the baseline document (see :func:`write`).

    ``jobs`` > 1 spreads the cases over that many fresh (spawned) processes: the meta path is
    CPU-bound Python dispatch, so 2 cores halve the time. Patches made in this process (tests'
    monkeypatching) do not reach those workers: use ``jobs=1`` with them.
    """
    import torch

    selected = list(selected)
    jobs = max(1, min(jobs, len(selected)))
    if jobs == 1:
        entries = [entry(c) for c in selected]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_one_thread) as pool:
            entries = list(pool.map(entry, selected, chunksize=1))
    cases_ = {c.key: e for c, e in zip(selected, entries, strict=True)}
    return {"schema": SCHEMA, "torch": torch.__version__, "cases": cases_}


def default_jobs() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # fake tensors compute nothing: intra-op threads would only contend


def write(doc: Mapping[str, Any], path: str | Path) -> None:
    """Write ``doc`` as sorted, indented JSON (stable diffs in review)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def load(path: str | Path) -> dict[str, Any]:
    """Read a baseline file; ``ValueError`` naming the file if it is missing or not a baseline."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"no baseline file at {path}; create it with `isaprof baseline update --file {path}`"
        )
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path} is not valid JSON ({e}); regenerate it with `isaprof baseline update`"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("cases"), dict):
        raise ValueError(
            f"{path} is not an isaprof baseline (schema {SCHEMA}); rewrite it: `isaprof baseline update`"
        )
    return doc


@dataclass(frozen=True)
class Change:
    """One differing value: ``metric`` is e.g. ``"macs.train measured"`` or ``"padded"``."""

    block: str
    case: str
    metric: str
    old: Any
    new: Any

    @property
    def ratio(self) -> float | None:
        """new / old for two nonzero numbers, else ``None``."""
        num = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (self.old, self.new))
        return self.new / self.old if num and self.old else None


@dataclass(frozen=True)
class Diff:
    """What changed between two baseline documents (cases keyed by :attr:`Case.key`)."""

    changes: tuple[Change, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    compared: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not (self.changes or self.added or self.removed)


def compare(old: Mapping[str, Any], new: Mapping[str, Any], blocks: Sequence[str] | None = None) -> Diff:
    """Every value of ``new`` that differs from ``old``, plus cases only in one of them.

    With ``blocks``, only those blocks' cases are compared (on both sides).
    """
    keep = (lambda e: e.get("block") in blocks) if blocks else (lambda e: True)
    a = {k: e for k, e in old["cases"].items() if keep(e)}
    b = {k: e for k, e in new["cases"].items() if keep(e)}
    changes: list[Change] = []
    for key in [k for k in b if k in a]:
        changes += _entry_changes(key, a[key], b[key])
    notes = ()
    if old.get("torch") != new.get("torch"):
        notes = (f"baseline written with torch {old.get('torch')}, now torch {new.get('torch')}",)
    return Diff(
        tuple(changes),
        added=tuple(sorted(set(b) - set(a))),
        removed=tuple(sorted(set(a) - set(b))),
        compared=len(set(a) & set(b)),
        notes=notes,
    )


def _entry_changes(key: str, a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    block = b.get("block", key.split("/")[0])
    out = [
        Change(block, key, f, a.get(f), b.get(f))
        for f in ("options", "padded", "backend")
        if a.get(f) != b.get(f)
    ]
    ma, mb = a.get("metrics", {}), b.get("metrics", {})
    for metric in sorted(set(ma) | set(mb)):
        va, vb = ma.get(metric, {}), mb.get(metric, {})
        for part in ("measured", "analytic", "error"):
            if va.get(part) != vb.get(part):
                out.append(Change(block, key, f"{metric} {part}", va.get(part), vb.get(part)))
    return out


def format_diff(diff: Diff, source: str = "baseline") -> str:
    """Readable report: one line per change (block, config, metric, old -> new, ratio)."""
    lines = [f"note: {n}" for n in diff.notes]
    if diff.ok:
        return "\n".join([*lines, f"baseline check: OK, {diff.compared} configurations match {source}"])
    lines.append(
        f"baseline check: FAILED against {source}: {len(diff.changes)} changed value(s), "
        f"{len(diff.added)} configuration(s) added, {len(diff.removed)} removed"
    )
    if diff.changes:
        w_cfg = max(len(_config_part(c.case)) for c in diff.changes)
        w_blk = max(len(c.block) for c in diff.changes)
        w_met = max(len(c.metric) for c in diff.changes)
        lines.append(f"  {'block':<{w_blk}}  {'config':<{w_cfg}}  {'metric':<{w_met}}  old -> new (ratio)")
        for c in diff.changes:
            ratio = f"  (x{c.ratio:.4f})" if c.ratio is not None else ""
            lines.append(
                f"  {c.block:<{w_blk}}  {_config_part(c.case):<{w_cfg}}  {c.metric:<{w_met}}  "
                f"{_fmt_value(c.old)} -> {_fmt_value(c.new)}{ratio}"
            )
    lines += [f"  added:   {k}" for k in diff.added]
    lines += [f"  removed: {k}" for k in diff.removed]
    lines.append("if the change is intended, rewrite the file with `isaprof baseline update` and commit it")
    return "\n".join(lines)


def check(path: str | Path = DEFAULT_FILE, blocks: Sequence[str] | None = None, jobs: int = 1) -> Diff:
    """Re-measure every case of the current code and compare with the file at ``path``."""
    old = load(path)
    return compare(old, collect(cases(blocks), jobs), blocks)


def update(
    path: str | Path = DEFAULT_FILE, blocks: Sequence[str] | None = None, jobs: int = 1
) -> dict[str, Any]:
    """Re-measure and write ``path``; with ``blocks``, only their cases are replaced."""
    new = collect(cases(blocks), jobs)
    if blocks and Path(path).is_file():
        old = load(path)
        kept = {k: e for k, e in old["cases"].items() if e.get("block") not in blocks}
        new = {**new, "cases": dict(sorted({**kept, **new["cases"]}.items()))}
    write(new, path)
    return new


def _config_part(key: str) -> str:
    """The key without its ``block/`` prefix (the block has its own column): ``naive B2 C32 13x17``."""
    return key.split("/", 1)[-1]


def _fmt_option(v: Any) -> str:
    return "x".join(str(x) for x in v) if isinstance(v, tuple | list) else str(v)


def _fmt_value(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "(none)" if v is None else str(v)


def _int(v: Any) -> int | None:
    """Tidy-row number -> int (the baseline holds exact integers); empty -> ``None``."""
    if v is None or v == "":
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    f = float(v)
    return int(f) if f.is_integer() else f  # type: ignore[return-value]  a fraction is itself a finding


def _one_line(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".strip().splitlines()
    return text[0] if text else type(e).__name__
