"""isaprof: what attention blocks for dense prediction really cost.

Importing the package is instant and imports no torch: :func:`profile`, :class:`Record` and
:func:`build` load their modules (and torch) on first use (PEP 562).

>>> import isaprof
>>> block = isaprof.build("isa", channels=64, factor=(8, 8)).eval()
>>> rec = isaprof.profile("isa", size=(97, 97), channels=64, device="meta", factor=(8, 8))
>>> rec.macs == rec.macs_analytic
True
"""

from __future__ import annotations

import functools
import importlib
import subprocess
from pathlib import Path
from typing import Any

__version__ = "0.2.0"

# public name -> the module that defines it (imported on first access)
_LAZY = {
    "Config": "isaprof.config",
    "Record": "isaprof.profiling.profiler",
    "profile": "isaprof.profiling.profiler",
    "build": "isaprof.targets",
    "configure": "isaprof.targets",
    "names": "isaprof.targets",
}
__all__ = ["Config", "Record", "__version__", "build", "configure", "names", "profile", "version"]


@functools.cache
def version() -> str:
    """``__version__``, plus ``+g<commit>`` (and ``.dirty``) when running from a git checkout: what result
    rows record in their ``isaprof`` column, so a table says which code produced it."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return __version__
    try:
        git = ["git", "-C", str(root)]
        sha = subprocess.run([*git, "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha}{'.dirty' if dirty else ''}" if sha else __version__


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'isaprof' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
