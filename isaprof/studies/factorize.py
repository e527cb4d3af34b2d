"""Every ISA factorization (P_h, P_w) of one map size, with its analytic and measured cost.

ISA splits an H x W map as H' = P_h * Q_h, W' = P_w * Q_w with Q = ceil(H / P) and zero padding up to
H' x W' (``isaprof.targets.blocks.isa``). The long-range stage runs P_h P_w groups of Q_h Q_w positions, the
short-range stage Q_h Q_w groups of P_h P_w positions.

Which factors are listed (``candidate_factors``): for each axis, the *padding-minimal* P, i.e. the
smallest P giving its Q = ceil(H / P) (the distinct values of ceil(H / q), q = 1..H; about 2 sqrt(H)
of them, all divisors of H included). Any other P' with the same Q pads more and, with Q fixed, has
more and larger groups in both stages and a larger padded map: it costs strictly more MACs and
bytes, so it can never be the optimum. ``full=True`` lists every P_h <= H, P_w <= W instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from isaprof.config import Config

METRICS = ("macs", "peak_bytes", "latency")
NOISY_IQR_RATIO = 0.1  # as isaprof.measure.latency (not imported: it imports torch)


@dataclass(frozen=True)
class FactorRow:
    """One factor of one size. MACs in MAC, bytes in byte, latency in ms; ``None`` = not measured.

    ``macs`` / ``peak_bytes``: closed form (``isaprof.formulas``) for the chosen mode;
    ``measured_*``: ``isaprof.profile`` on ``meta`` (``latency_ms`` on ``cpu``, median).
    ``best``: minimum of the analytic metric; ``measured_best``: minimum of the measured metric
    (ties: the first in the listing, which is sorted by (P_h, P_w)).
    """

    factor: tuple[int, int]
    groups: tuple[int, int]  # (Q_h, Q_w)
    padded: tuple[int, int]  # (H', W')
    macs: int
    peak_bytes: int | None  # None while a formula has no peak term
    measured_macs: int | None = None
    measured_peak_bytes: int | None = None
    latency_ms: float | None = None
    best: bool = False
    measured_best: bool = False
    latency_iqr_ms: float | None = None  # spread of the timing; noisy when IQR > 10 % of the median
    latency_noisy: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("factor", "groups", "padded"):
            d[k] = f"{d[k][0]}x{d[k][1]}"
        return d


def padding_minimal(n: int) -> list[int]:
    """Sorted distinct ceil(n / q), q = 1..n: for each group count Q, the smallest P giving it."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"size must be a positive integer, got {n!r}")
    return sorted({-(-n // q) for q in range(1, n + 1)})


def candidate_factors(size: tuple[int, int], full: bool = False) -> list[tuple[int, int]]:
    """The (P_h, P_w) listed for an H x W map (see module docstring), sorted."""
    h, w = size
    hs, ws = (range(1, h + 1), range(1, w + 1)) if full else (padding_minimal(h), padding_minimal(w))
    return [(ph, pw) for ph in hs for pw in ws]


def factorize(
    size: tuple[int, int],
    *,
    channels: int = 512,
    key_channels: int | None = None,
    value_channels: int | None = None,
    batch: int = 1,
    mode: str = "inference",
    dtype: str = "float32",
    impl: str = "naive",
    metric: str = "macs",
    measure: bool = True,
    latency: bool = False,
    full: bool = False,
    profile_fn: Callable[..., Any] | None = None,
    progress: bool = False,
    **options: Any,
) -> list[FactorRow]:
    """Every candidate ISA factor of ``size`` = (H, W), with costs; the best ones flagged.

    ``measure``: also profile each factor on ``meta`` (exact MACs and peak bytes);
    ``latency`` (implied by ``metric="latency"``): also time each on ``cpu``. ``options``: ISA's
    other options (``masked``). ``profile_fn`` defaults to :func:`isaprof.profile`. ``measure=False``
    (analytic only) measures nothing, so it cannot go with latency. ``progress``: a bar on stderr.
    """
    from isaprof.formulas import cost
    from isaprof.targets import configure, resolve_channels, spec

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not measure and (latency or metric == "latency"):
        raise ValueError("latency is measured (timed on cpu), so it cannot go with analytic-only")
    latency = latency or metric == "latency"
    bad = sorted(o for o in options if o == "factor" or o not in spec("isa").options)
    if bad:
        raise ValueError(f"isa option(s) {', '.join(bad)} not allowed here; allowed: masked")
    ck, cv = resolve_channels("isa", channels, key_channels, value_channels)
    if profile_fn is None and (measure or latency):
        from isaprof.profiling.profiler import profile as profile_fn
    rows = []
    candidates = candidate_factors(size, full=full)
    if measure or latency:
        import sys

        from tqdm.auto import tqdm

        desc = "factors (meta" + (", cpu timing)" if latency else ")")
        candidates = tqdm(candidates, desc=desc, unit="factor", disable=not progress, file=sys.stderr)
    for ph, pw in candidates:
        opts = {**spec("isa").options, **options, "factor": (ph, pw)}
        cfg = configure("isa", size=size, channels=channels, key_channels=ck, value_channels=cv,
                          batch=batch, mode=mode, dtype=dtype, impl=impl, **opts)  # fmt: skip
        c = cost(cfg)
        macs = c.total_macs if mode == "inference" else c.total_train_macs
        m = _measured(profile_fn, replace(cfg, device="meta")) if measure else {}
        t = _measured(profile_fn, replace(cfg, device="cpu")) if latency else {}
        q = (math.ceil(size[0] / ph), math.ceil(size[1] / pw))
        rows.append(
            FactorRow(
                (ph, pw), q, c.padded, macs, c.peak_bytes.get(mode),
                _int(m.get("macs")), _int(m.get("peak_bytes")), _float(t.get("latency_ms")),
                latency_iqr_ms=_float(t.get("latency_ms_iqr_ms")), latency_noisy=_noisy(t),
            )
        )  # fmt: skip
    return _flag(rows, metric)


def _flag(rows: list[FactorRow], metric: str) -> list[FactorRow]:
    """Mark the analytic and measured minima of ``metric``."""
    analytic = {"macs": "macs", "peak_bytes": "peak_bytes", "latency": None}[metric]
    measured = {"macs": "measured_macs", "peak_bytes": "measured_peak_bytes", "latency": "latency_ms"}[metric]
    best = _argmin(rows, analytic) if analytic else None
    mbest = _argmin(rows, measured)
    return [
        FactorRow(**{**asdict(r), "best": i == best, "measured_best": i == mbest})  # asdict keeps tuples
        for i, r in enumerate(rows)
    ]


def _argmin(rows: list[FactorRow], attr: str) -> int | None:
    values = [(getattr(r, attr), i) for i, r in enumerate(rows) if getattr(r, attr) is not None]
    return min(values)[1] if values else None


def _measured(profile_fn: Callable[..., Any], config: Config) -> dict[str, Any]:
    """``{metric: measured}`` of one profile call (rows with status ``ok`` only)."""
    kwargs = config.kwargs()
    record = profile_fn(kwargs.pop("block"), latency="quick", **kwargs)
    ok = [r for r in record.rows() if r.get("status", "ok") == "ok"]
    got = {r["metric"]: r["measured"] for r in ok}
    got.update({f"{r['metric']}_iqr_ms": r.get("spread") for r in ok if r["metric"] == "latency_ms"})
    return got


def _noisy(timed: dict[str, Any]) -> bool | None:
    """IQR > 10 % of the median (``isaprof.measure.latency``'s threshold); ``None`` when not timed."""
    median, iqr = _float(timed.get("latency_ms")), _float(timed.get("latency_ms_iqr_ms"))
    if median is None or iqr is None:
        return None
    return median > 0 and iqr / median > NOISY_IQR_RATIO


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)
