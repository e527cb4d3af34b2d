"""Run a list of configurations into the result store: resume, failures recorded, progress bar.

Every configuration goes through one ``profile(block, **kwargs) -> Record`` call (the callable is a
parameter, ``isaprof.profile`` by default) and its ``Record.rows()`` are appended at once.
A configuration already in the store is skipped: measured ones always, failed ones (status ``oom``
or ``error``) unless ``retry_failed`` -- but one off ``meta`` whose rows were made on another machine
(their ``machine`` cell is not this machine's :func:`isaprof.measure.env.machine_id`, or empty: written
before machines were recorded) is measured again here: its latency (and its failures) depend on the
machine, while meta rows (exact counts and bytes) are reused as they are. A raising configuration
is recorded with status ``oom`` or ``error`` and the one-line message
(``isaprof.profiling.profiler.error_rows``: one row per metric, measured empty), and the sweep goes on.
An ``sdpa`` configuration without backend matches the rows of whichever kernel profile chose for it
(profile records the kernel it ran).

Each configuration is claimed in the store before it is measured (``store.claim``), so concurrent
runs share the work. On cpu/cuda the peak is first predicted on meta (``isaprof.profiling.guard``): one that
would not fit is recorded ``oom`` without running. A configuration whose device is absent (grid
``skip_if_unavailable``) is recorded once with status ``skipped``, which is not a failure.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isaprof.results.reader import winners
from isaprof.results.store import (
    KEY_COLUMNS,
    Key,
    append,
    claim,
    columns,
    config_key,
    read_table,
    row_key,
    statuses,
)
from isaprof.studies.sweep.spec import SweepConfig

ProfileFn = Callable[..., Any]
_BACKEND = KEY_COLUMNS.index("backend")


@dataclass(frozen=True)
class Summary:
    """What one :func:`run_sweep` call did, in configurations."""

    total: int
    measured: int
    failed: int
    skipped: int  # already in the store
    unavailable: int  # device absent and the grid said skip_if_unavailable: recorded as `skipped`
    busy: int = 0  # claimed by another run that was measuring it at the time
    elsewhere: int = 0  # of those measured or failed: in the store from another machine, measured again

    def __str__(self) -> str:
        busy = f", {self.busy} measured by another run" if self.busy else ""
        again = f" ({self.elsewhere} made on another machine: measured again here)" if self.elsewhere else ""
        return (
            f"{self.total} configurations: {self.measured} measured{again}, {self.failed} failed, "
            f"{self.skipped} already in the store, {self.unavailable} skipped (device unavailable){busy}"
        )


def run_sweep(
    configs: Sequence[SweepConfig],
    out: str | Path,
    *,
    profile_fn: ProfileFn | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    machine: bool = True,
    peak_n: int | None = None,
) -> Summary:
    """Measure every configuration of ``configs`` not yet in ``out/results.csv`` and append its rows.

    ``machine``: first add this host's roofs to ``out/machine.json`` (host cache; ``peak_n``: a quick
    uncached measurement with one ``peak_n``-cube matmul instead, for tests).
    """
    try:
        from tqdm.auto import tqdm
    except ModuleNotFoundError:  # optional: a bare GPU machine's Python (make gpu-check) has no tqdm
        tqdm = _NoBar

    from isaprof.roofline.machine import record_machine

    profile_fn = profile_fn if profile_fn is not None else _default_profile()
    cols = columns()
    if machine:
        record_machine(out, n=peak_n)
    done, stale = statuses(out), elsewhere(out)
    todo, skipped, unavailable = [], 0, 0
    for cfg in configs:
        status = _status(done, cfg, stale)
        if status == "ok" or (status == "failed" and not retry_failed):
            skipped += 1
        elif cfg.optional and not _available(cfg.device):
            unavailable += 1
            key = config_key(
                cfg
            )  # recorded once (so that the table says why it has no numbers), claimed first
            if status != "skipped" and claim(out, key, lambda d, c=cfg: _status(d, c) is None) == "claimed":
                row = failure_row(cfg, "skipped", f"device {cfg.device} unavailable here")
                append(out, [row], cols, release_key=key)
        else:
            todo.append(cfg)
    measured = failed = busy = again = 0
    bar = tqdm(todo, disable=not progress, unit="cfg", dynamic_ncols=True, desc="sweep", file=sys.stderr)
    for cfg in bar:
        bar.set_postfix_str(cfg.label(), refresh=False)
        key = config_key(cfg)
        got = claim(out, key, lambda done, cfg=cfg: _wanted(_status(done, cfg, elsewhere(out)), retry_failed))
        if got != "claimed":  # another run measured it meanwhile, or is measuring it now
            skipped += got == "done"
            busy += got == "busy"
            continue
        again += _status(done, cfg) is not None  # its standing rows were another machine's
        rows = measure(cfg, profile_fn)
        bad = any(r.get("status") != "ok" for r in rows)
        failed += bad
        measured += not bad
        append(out, rows, cols, release_key=key)
    return Summary(len(configs), measured, failed, skipped, unavailable, busy, again)


class _NoBar(list):
    """Stands in for ``tqdm`` where it is not installed: iterates, shows nothing."""

    def __init__(self, items: Any, **_: Any) -> None:
        super().__init__(items)

    def set_postfix_str(self, *_: Any, **__: Any) -> None:
        pass


def elsewhere(out: str | Path) -> set[Key]:
    """The configurations off ``meta`` whose standing rows in ``out`` were made on another machine: their
    ``machine`` cell differs from :func:`isaprof.measure.env.machine_id` of their device, or is empty."""
    from isaprof.measure.env import machine_id

    ids: dict[str, str] = {}
    found = set()
    for key, rows in winners(read_table(out)).items():
        device = rows[0].get("device") or "meta"
        if device == "meta":
            continue
        if device not in ids:
            ids[device] = machine_id(device)
        if (rows[0].get("machine") or "") != ids[device]:
            found.add(key)
    return found


def _status(done: dict[Key, str], cfg: SweepConfig, stale: Collection[Key] = ()) -> str | None:
    """The store's status of ``cfg`` (any backend for sdpa with profile's default kernel); None also where
    its rows are in ``stale`` (made on another machine: to be measured again)."""
    if _pinned(cfg):
        key = config_key(cfg)
        return None if key in stale else done.get(key)
    want = _loose(config_key(cfg))
    found = [v for k, v in done.items() if _loose(k) == want and k not in stale]
    gone = any(_loose(k) == want for k in stale)
    return found[-1] if found and not gone else None


def _wanted(status: str | None, retry_failed: bool) -> bool:
    """Whether a configuration with this store status still needs measuring."""
    return not (status == "ok" or (status == "failed" and retry_failed is False))


def measure(cfg: SweepConfig, profile_fn: ProfileFn, guard: bool = True) -> list[dict[str, Any]]:
    """The rows of one configuration: ``profile_fn(...).rows()``, or failure rows if it raised.

    ``guard``: on cpu/cuda, first predict the peak on meta (:mod:`isaprof.profiling.guard`); a configuration
    that would not fit is recorded as ``oom`` without running it."""
    from isaprof.profiling.guard import MemoryRefused, check_fits

    try:
        if guard:
            check_fits(cfg.config)
        rows = list(profile_fn(cfg.block, **cfg.profile_kwargs()).rows())
    except MemoryRefused as e:  # predicted not to fit: recorded as oom without running it
        return failure_rows(cfg, "oom", f"not run: {e}".replace("; --force runs it anyway", ""))
    except Exception as e:  # noqa: BLE001  recorded, the sweep goes on
        from isaprof.profiling.profiler import is_oom

        return failure_rows(cfg, "oom" if is_oom(e) else "error", f"{type(e).__name__}: {e}")
    same = _same if _pinned(cfg) else (lambda a, b: _loose(a) == _loose(b))
    if rows and not same(row_key(rows[0]), config_key(cfg)):
        warnings.warn(
            f"profile's rows describe {row_key(rows[0])}, the sweep asked for {config_key(cfg)}: "
            "a re-run will not recognise this configuration as done",
            stacklevel=2,
        )
    return rows


def failure_rows(cfg: SweepConfig, status: str, message: str) -> list[dict[str, Any]]:
    """Rows saying that ``cfg`` failed with ``status`` and why:
    ``isaprof.profiling.profiler.error_rows`` (one per metric, analytic values kept), or, if the
    configuration itself is invalid, one :func:`failure_row`."""
    from isaprof.profiling.profiler import error_rows
    from isaprof.targets import configure

    kwargs = cfg.config.kwargs()
    try:
        return error_rows(configure(**kwargs), status=status, message=message)
    except Exception:  # noqa: BLE001  an invalid configuration: record it anyway
        return [failure_row(cfg, status, message)]


def failure_row(cfg: SweepConfig, status: str, message: str) -> dict[str, Any]:
    """One tidy row, empty metric and numbers, saying that ``cfg`` failed with ``status`` and why."""
    from isaprof.config import COLUMNS
    from isaprof.measure.env import environment

    values = {**cfg.config.to_row(), **environment(cfg.device), "metric": "", "status": status,
              "error": " ".join(message.split())}  # fmt: skip
    return {c: values.get(c) for c in COLUMNS}


def _pinned(cfg: SweepConfig) -> bool:
    """False for sdpa with the default kernel: profile picks (and records) the backend itself."""
    return cfg.impl != "sdpa" or cfg.backend is not None


def _loose(key: Key) -> Key:
    """``key`` without its backend column (matches whatever kernel profile chose)."""
    return key[:_BACKEND] + key[_BACKEND + 1 :]


def _same(a: Key, b: Key) -> bool:
    return a == b


def _available(device: str) -> bool:
    if device != "cuda":
        return True
    import torch

    return torch.cuda.is_available()


def _default_profile() -> ProfileFn:
    from isaprof.profiling.profiler import profile

    return profile
