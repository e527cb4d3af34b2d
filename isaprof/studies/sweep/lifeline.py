"""Workers that die with their parent: a sweep's worker processes must not outlive it.

Without this, ``kill -9`` (or SIGTERM) of a sweep's main process leaves its workers to PID 1: they
finish their shard and then idle, and SIGINT to the main process alone leaves them writing.
:func:`die_with_parent` is the initializer of every worker: on Linux the kernel sends the worker
SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and on every platform a watchdog thread
ends the worker once its parent id changes (the parent is gone). The store stays consistent either
way: a configuration's rows go out in one write, and a dead worker's claim is void (see ``store``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_S = 0.5


def die_with_parent(parent: int) -> None:
    """Make this process end when process ``parent`` (its parent) ends; call first thing in a worker."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        except (OSError, AttributeError):  # no prctl: the watchdog alone
            pass
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(143)
    threading.Thread(target=_watch, args=(parent,), name="isaprof-lifeline", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
