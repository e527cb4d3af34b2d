"""This machine's roofs (fp32 matmul peak, memory bandwidth) recorded in ``DIR/machine.json``, one entry per
machine id (:func:`isaprof.measure.env.machine_id`) and device.

``isaprof report`` draws its roofline from these figures: the compute and memory roofs that this very
machine reaches (:mod:`isaprof.roofline.roofs`), not a vendor datasheet number. The file's layout, its
reader and writer are :mod:`isaprof.roofline.schema`'s.
"""

from __future__ import annotations

import fcntl
import socket
from pathlib import Path
from typing import Any

from isaprof.roofline import schema


def _quick(n: int) -> dict[str, Any]:
    """Arguments of a quick, uncached measurement (tests): one n^3 matmul, 4 MiB arrays."""
    from isaprof.roofline.roofs import GemmShape

    return dict(shapes=(GemmShape(n, n, n, why="quick"),), array_bytes=4 * 2**20, min_run_time=0.05)


def record_machine(
    out: str | Path, devices: tuple[str, ...] = ("cpu", "cuda"), n: int | None = None
) -> dict[str, Any]:
    """Add this machine's roofs for each available device it has not yet recorded in ``out/machine.json``
    (keyed by machine id, not host name: a results folder made on another machine gets this one's roofs
    beside its own); return the file.

    The roofs come from the machine's cache (:func:`isaprof.roofline.roofs.machine_roofs`), measured there
    if absent. ``n``: instead a quick uncached measurement with one ``n x n x n`` product (tests). Layout:
    :mod:`isaprof.roofline.schema`.

    An entry measured while the machine was contended (``"contended": true``) is measured again (not with
    ``n``). Files written before the bandwidth was measured (``"peak_gflops"``) are read and completed: a host
    whose entry lacks ``bandwidth_gbs`` (or a machine id) is measured again. Concurrent shard processes
    are serialised by a lock file; the JSON is replaced atomically.
    """
    import torch

    from isaprof.measure.env import environment, machine_id
    from isaprof.roofline.roofs import machine_roofs, measure_roofs

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / schema.MACHINE
    host = socket.gethostname()
    with open(out / (schema.MACHINE + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = schema.read_machine(path)
        todo = [
            d
            for d in devices
            if d in ("cpu", "cuda")
            and (d != "cuda" or torch.cuda.is_available())
            and (
                d not in schema.recorded(data, machine=machine_id(d))
                or (not n and (schema.machine_entry(data, d, machine_id(d)) or {}).get("contended"))
            )
        ]
        if todo:
            roofs = {d: measure_roofs(d, **_quick(n)) for d in todo} if n else machine_roofs()
            for dev in todo:
                schema.add_measured(data, host, dev, roofs[dev], environment(dev), machine=machine_id(dev))
        schema.write_machine(path, data)
    return data
