"""Where shards run: in this process (``local``) or as submitit jobs, one job per shard.

``local`` with ``workers > 1`` runs the ``meta`` configurations (exact counts, CPU-bound Python, no
timing) in that many worker processes, then the real-device ones here one at a time, so that no
latency is measured while other work competes for the cores.

``slurm`` submits to a Slurm cluster; ``submitit-local`` (one subprocess per shard, concurrently)
and ``submitit-debug`` (in this process) go through exactly the same submitit code path, which is
how the tests exercise it. All shards append to the same resumable store (see ``store``), so a
later run, sharded or not, skips what any shard measured.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isaprof.results.store import statuses
from isaprof.studies.sweep.lifeline import die_with_parent
from isaprof.studies.sweep.runner import ProfileFn, Summary, run_sweep
from isaprof.studies.sweep.spec import SweepConfig, shard

EXECUTORS = ("local", "slurm", "submitit-local", "submitit-debug")
_CLUSTERS = {"slurm": "slurm", "submitit-local": "local", "submitit-debug": "debug"}


def run_shard(
    configs: Sequence[SweepConfig], out: str | Path, k: int = 1, n: int = 1, **kwargs: Any
) -> Summary:
    """Run shard ``k`` of ``n`` of ``configs`` into ``out`` (``kwargs``: :func:`run_sweep`'s)."""
    return run_sweep(shard(configs, k, n), out, **kwargs)


def execute(
    configs: Sequence[SweepConfig],
    out: str | Path,
    *,
    executor: str = "local",
    shards: Sequence[int] | None = None,
    n_shards: int = 1,
    folder: str | Path | None = None,
    slurm_partition: str | None = None,
    gpus_per_node: int | None = None,
    timeout_min: int = 60,
    cpus_per_task: int | None = None,
    wait: bool = True,
    retry_failed: bool = False,
    progress: bool = True,
    profile_fn: ProfileFn | None = None,
    machine: bool = True,
    peak_n: int | None = None,
    workers: int = 1,
) -> list[Any]:
    """Run shards ``shards`` (1-based; default all ``n_shards``) of ``configs`` with ``executor``.

    Returns one :class:`Summary` per shard, or, for a submitit executor with ``wait=False``, the
    submitit jobs. ``folder`` (submitit logs and pickles) defaults to ``out/submitit``.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; allowed: {', '.join(EXECUTORS)}")
    if n_shards < 1:
        raise ValueError(f"the number of shards must be a positive integer, got {n_shards}")
    ks = list(shards) if shards is not None else list(range(1, n_shards + 1))
    for k in ks:
        shard([], k, n_shards)  # validates 1 <= k <= n
    kwargs = dict(retry_failed=retry_failed, profile_fn=profile_fn, machine=machine, peak_n=peak_n)
    if executor == "local" and workers > 1:
        return [
            run_parallel(
                [c for k in ks for c in shard(configs, k, n_shards)], out, workers, progress, **kwargs
            )
        ]
    if executor == "local":
        return [run_shard(configs, out, k, n_shards, progress=progress, **kwargs) for k in ks]
    submitit = _submitit()
    ex = submitit.AutoExecutor(
        folder=Path(folder) if folder else Path(out) / "submitit", cluster=_CLUSTERS[executor]
    )
    params: dict[str, Any] = dict(timeout_min=timeout_min, name="isaprof-sweep")
    if slurm_partition is not None:
        params["slurm_partition"] = slurm_partition
    if gpus_per_node is not None:
        params["gpus_per_node"] = gpus_per_node
    if cpus_per_task is not None:
        params["cpus_per_task"] = cpus_per_task
    ex.update_parameters(**params)
    jobs = [ex.submit(run_shard, list(configs), str(out), k, n_shards, progress=False, **kwargs) for k in ks]
    return [job.result() for job in jobs] if wait else jobs


def run_parallel(
    configs: Sequence[SweepConfig], out: str | Path, workers: int, progress: bool = True, **kwargs: Any
) -> Summary:
    """Meta configurations in ``workers`` spawned processes, then the others in this process."""
    from concurrent.futures import ProcessPoolExecutor

    from isaprof.roofline.machine import record_machine

    if kwargs.pop("machine", True):
        record_machine(out, n=kwargs.get("peak_n"))  # before anything competes for the cores
    fake = [c for c in configs if c.device == "meta"]
    real = [c for c in configs if c.device != "meta"]
    parts: list[Summary] = []
    if fake:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch's thread pools
        pool = ProcessPoolExecutor(
            workers, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)
        )
        try:
            futures = [
                pool.submit(run_shard, fake, str(out), k, workers, progress=False, machine=False, **kwargs)
                for k in range(1, workers + 1)
            ]
            _watch(futures, out, len(fake), progress)
            parts = [f.result() for f in futures]
        except BaseException:  # interrupted (SIGINT) or a worker failed: the workers stop with us
            _stop(pool)
            raise
        pool.shutdown()
    parts.append(run_sweep(real, out, progress=progress, machine=False, **kwargs))
    return Summary(*(sum(getattr(p, f) for p in parts) for f in Summary.__dataclass_fields__))


def _stop(pool: Any) -> None:
    """End ``pool``'s workers now (SIGTERM) and wait for them: nothing keeps writing after we return."""
    procs = list(getattr(pool, "_processes", {}).values())  # the executor has no public handle on them
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
    pool.shutdown(wait=False, cancel_futures=True)


def _watch(futures: list[Any], out: str | Path, total: int, progress: bool) -> None:
    """A progress bar over the store's growth while ``futures`` run."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    from tqdm.auto import tqdm

    if not progress:
        wait(futures, return_when=FIRST_EXCEPTION)
        return
    start = len(statuses(out))
    with tqdm(total=total, unit="cfg", desc="sweep (meta, parallel)") as bar:
        while wait(futures, timeout=1.0, return_when=FIRST_EXCEPTION).not_done:
            bar.update(len(statuses(out)) - start - bar.n)


def _submitit() -> Any:
    try:
        import submitit
    except ModuleNotFoundError:
        raise ValueError(
            "this executor needs submitit: pip install 'isaprof[cluster]' (or pip install submitit)"
        ) from None
    return submitit
