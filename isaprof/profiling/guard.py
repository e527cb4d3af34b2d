"""Refuse what cannot fit, before trying it.

A run on ``cpu`` or ``cuda`` first predicts its peak memory on the ``meta`` device (fake tensors:
instant, nothing allocated; the same counting as ``isaprof profile --device meta``) and is refused in
one line when the prediction exceeds :data:`MARGIN` of the memory available now (``--force`` runs it
anyway). Sizes whose tensors torch cannot even address (``Storage size calculation overflowed``)
become one line too. The CLI (``profile``) and the sweep (recorded as ``oom``, predicted) call this.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from isaprof.config import CUDA_ONLY_BACKENDS, Config, RunSettings

MARGIN = 0.8  # refuse when the predicted peak exceeds 80 % of the available memory (allocator, OS, rest)
GiB = 1024**3


class MemoryRefused(ValueError):
    """The predicted peak does not fit in the memory available on the device."""


def available_bytes(device: str) -> int | None:
    """Memory available now on ``device`` in bytes (``MemAvailable`` on Linux, free CUDA memory);
    ``None`` when unknown (then nothing is refused)."""
    if device.startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):  # no usable CUDA here: the run says why
            return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


RUN_SETTINGS = tuple(RunSettings.names())  # profile's keywords that are not part of the configuration


def _config(block: Config | str, kwargs: dict[str, Any]) -> Config:
    """The resolved configuration the guard and the profile share: ``block`` itself, or resolved once from
    a target and profile's keyword form (its run settings play no part)."""
    if isinstance(block, Config):
        return block
    from isaprof.targets import configure

    return configure(block, **{k: v for k, v in kwargs.items() if k not in RUN_SETTINGS})


def predicted_peak(block: Config | str, **kwargs: Any) -> int:
    """Peak bytes of ``profile(block, **kwargs)`` predicted on ``meta`` (one build there): ``block`` a
    :class:`Config`, or a target with profile's keyword form (its run settings play no part). A CUDA-only
    sdpa kernel is predicted with the meta default instead."""
    from isaprof.profiling.profiler import meta_peak

    config = _config(block, kwargs)
    if config.backend in CUDA_ONLY_BACKENDS:
        config = dataclasses.replace(config, backend=None)
    with addressable(config.size):
        return meta_peak(config)


def check_fits(block: Config | str, **kwargs: Any) -> int | None:
    """Predicted peak bytes of the run, or :class:`MemoryRefused` if it would not fit on its device.

    ``block``: the resolved :class:`Config` the profile then runs (or a target with profile's keyword
    form). Meta runs allocate nothing: not checked (``None``); nor a module fake tensors cannot run (a
    data-dependent output shape: a warning, ``None``).
    """
    config = _config(block, kwargs)
    if config.device == "meta":
        return None
    free = available_bytes(config.device)
    if free is None:
        return None
    from isaprof.profiling.profiler import FakeTensorLimit  # torch is needed to predict anyway

    try:
        peak = predicted_peak(config)
    except FakeTensorLimit as e:  # the module needs real data: run it unguarded, and say so
        warnings.warn(
            f"{config.block!r} {e.reason}: fake tensors cannot predict its peak, so it runs without the "
            "memory guard",
            stacklevel=2,
        )
        return None
    if peak > MARGIN * free:
        raise MemoryRefused(
            f"predicted peak {peak / GiB:.1f} GiB does not fit in the {free / GiB:.1f} GiB available on "
            f"{config.device} (limit {MARGIN:.0%} of it); --force runs it anyway"
        )
    return peak


@contextmanager
def addressable(size: Any = None) -> Iterator[None]:
    """Turn torch's overflow of a tensor's byte size, and an allocation that failed, into one ``ValueError``
    line (and keep the fake-tensor logger from printing its traceback first: the line says it all)."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        from isaprof.profiling.profiler import is_oom  # torch is loaded: the failure came from it

        if is_oom(e):  # run anyway (--force) and it did not fit: one line, not the allocator's trace
            raise ValueError(f"out of memory: {first}") from None
        if "overflow" not in str(e).lower():
            raise
        where = f"size {size[0]}x{size[1]}: " if size else ""
        raise ValueError(f"{where}its tensors are too large for torch to address ({first})") from None
    finally:
        log.setLevel(level)
