"""The grid check: profile every registered block over a grid on ``meta`` and list where measurement and
closed form disagree.

Rules (per configuration): parameters and MACs must match exactly; so must peak bytes on the CPU /
meta storage tracker (:data:`MEMORY_RTOL` = 0), except where the formula names a tolerance for that
mode (``Cost.peak_tolerance``, e.g. stage locals the code may free before a post-attention peak): then
a measurement up to that many bytes below the formula agrees, and the message names the tolerance;
every difference is reported with its relative size; a missing analytic peak,
a matmul-like op the counter could not count, or a configuration that raises are disagreements too.
The grid is generic: it knows options by name (``factor``, ``recurrence``, boolean options), never blocks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from isaprof import formulas
from isaprof import targets as blocks
from isaprof.config import MODES, Config
from isaprof.profiling.profiler import Record, profile

MEMORY_RTOL = 0.0  # |measured - analytic| / measured above this is a disagreement: exact

CHANNELS, BATCH, KEY_CHANNELS = 32, 2, 8
SIZES = {"quick": [(8, 8), (9, 11)], "full": [(8, 8), (9, 11), (16, 12), (13, 13)]}
FACTORS = {"quick": [(2, 2), (3, 2)], "full": [(2, 2), (3, 2), (4, 4), (1, 3), (5, 5)]}  # incl. non-divisors
RECURRENCES = {"quick": [1, 2], "full": [1, 2, 3]}


@dataclass(frozen=True)
class Disagreement:
    """One metric of one configuration where the closed form does not match the measurement."""

    config: Config | Mapping[str, Any]  # a Config, or the keyword form it could not be made from
    metric: str  # params, macs, peak_bytes, uncounted or error
    measured: int | None
    analytic: int | None
    message: str

    def __str__(self) -> str:
        c = self.config
        label = c.label() if isinstance(c, Config) else " ".join(f"{k}={v}" for k, v in c.items())
        return f"{label}: {self.metric}: {self.message}"


def _backends(impl: str) -> list[str | None]:
    return [None, "math"] if impl == "sdpa" else [None]


def _option_variants(options: Mapping[str, Any], level: str) -> list[dict[str, Any]]:
    """Option dicts to try: factor and recurrence over their grids, each boolean option flipped once."""
    variants: list[dict[str, Any]] = [{}]
    if "factor" in options:
        variants = [{"factor": f} for f in FACTORS[level]]
    if "recurrence" in options:
        variants = [{**v, "recurrence": r} for v in variants for r in RECURRENCES[level]]
    flips = [{name: not default} for name, default in options.items() if isinstance(default, bool)]
    return variants + [{**variants[0], **flip} for flip in flips]


def checkable() -> list[str]:
    """Registered targets that have a closed-form formula (the others have nothing to check)."""
    return [n for n in blocks.names() if formulas.find(blocks.spec(n).formula_name) is not None]


def skipped() -> list[str]:
    """Registered targets without a formula: ``isaprof check`` names them and skips them."""
    return [n for n in blocks.names() if n not in checkable()]


def default_grid(quick: bool = False) -> list[Config]:
    """Configurations on meta: every block x impl x backend x size x option variant x mode, plus, per
    block, an explicit key width unlike every default (so Ck != Cv; value widths stay the block's: some
    blocks need Cv == C for their residual)."""
    level = "quick" if quick else "full"
    grid = []
    for name in checkable():
        s = blocks.spec(name)
        for impl, size, opts, mode in itertools.product(
            s.impls, SIZES[level], _option_variants(s.options, level), MODES
        ):
            for backend in _backends(impl):
                grid.append(blocks.configure(name, size=size, channels=CHANNELS, batch=BATCH, impl=impl,
                                        backend=backend, mode=mode, **opts))  # fmt: skip
        for impl, mode in itertools.product(s.impls, MODES):
            grid.append(blocks.configure(name, size=(8, 8), channels=CHANNELS, key_channels=KEY_CHANNELS,
                                    batch=BATCH, impl=impl, mode=mode))  # fmt: skip
    return grid


def compare(record: Record, config: Config) -> list[Disagreement]:
    """Disagreements of one profiled record (rules in the module docstring)."""
    found = []
    for metric, measured, analytic in (
        ("params", record.params, record.params_analytic),
        ("macs", record.macs, record.macs_analytic),
    ):
        if measured != analytic:
            found.append(Disagreement(config, metric, measured, analytic, _diff(measured, analytic)))
    peak, peak_a = record.peak_bytes, record.peak_bytes_analytic
    if record.peak_bytes_tensors is not None:  # formulas replay tensors, not the scratch of fused ops
        peak = record.peak_bytes_tensors
    if peak_a is None:
        found.append(Disagreement(config, "peak_bytes", peak, None, "no analytic peak bytes"))
    elif record.peak_tolerance is not None and record.peak_tolerance.admits(peak, peak_a):
        pass  # agreement within the formula's named tolerance
    elif abs(peak - peak_a) > MEMORY_RTOL * peak:
        tol = record.peak_tolerance
        why = f" (beyond tolerance {tol.name!r}: {tol.bytes} B)" if tol is not None else ""
        found.append(Disagreement(config, "peak_bytes", peak, peak_a, _diff(peak, peak_a) + why))
    if record.flop_count.uncounted:
        ops = ", ".join(record.flop_count.uncounted)
        found.append(Disagreement(config, "uncounted", None, None, f"ops without a FLOP formula: {ops}"))
    return found


def _diff(measured: int, analytic: int) -> str:
    rel = (analytic - measured) / measured if measured else float("inf")
    return f"measured {measured}, analytic {analytic} ({rel:+.2%})"


def check(
    grid: Iterable[Config | Mapping[str, Any]] | None = None,
    quick: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[Disagreement]:
    """Profile every configuration of ``grid`` (default :func:`default_grid`) on meta; return disagreements.

    ``progress(done, total)`` is called after each configuration.
    """
    configs = list(default_grid(quick) if grid is None else grid)
    found: list[Disagreement] = []
    for i, config in enumerate(configs, 1):
        try:
            if not isinstance(config, Config):  # the keyword form: {"block": ..., "size": ..., ...}
                kw = dict(config)
                config = blocks.configure(kw.pop("block", None) or kw.pop("name"), **kw)
            record = profile(config, latency=None)
        except Exception as e:  # noqa: BLE001 - any failure is a finding of the check
            found.append(Disagreement(config, "error", None, None, f"{type(e).__name__}: {_first_line(e)}"))
        else:
            found.extend(compare(record, config))
        if progress is not None:
            progress(i, len(configs))
    return found


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""
