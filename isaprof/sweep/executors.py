"""Where shards run: in this process (``local``) or as submitit jobs, one job per shard.

``slurm`` submits to a Slurm cluster; ``submitit-local`` (one subprocess per shard, concurrently)
and ``submitit-debug`` (in this process) go through exactly the same submitit code path, which is
how the tests exercise it. All shards append to the same resumable store (see ``store``), so a
later run, sharded or not, skips what any shard measured.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from isaprof.sweep.run import ProfileFn, Summary, run_sweep
from isaprof.sweep.spec import SweepConfig, shard

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
    peak_n: int = 2048,
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


def _submitit() -> Any:
    try:
        import submitit
    except ModuleNotFoundError:
        raise ValueError(
            "this executor needs submitit: pip install 'isaprof[cluster]' (or pip install submitit)"
        ) from None
    return submitit
