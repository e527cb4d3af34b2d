"""Sweeps: grids declared as data (``spec``), the resumable result store (``store``), the runner
(``run``), shards and executors (``executors``) and the machine's matmul peak (``peak``).

>>> from isaprof import sweep
>>> configs = sweep.load_configs("reference/sweeps/tiny.toml")
>>> sweep.execute(configs, "out/tiny")  # doctest: +SKIP
"""

from isaprof.results.store import read_rows, results_path
from isaprof.studies.sweep.executors import EXECUTORS, execute, run_shard
from isaprof.studies.sweep.runner import Summary, run_sweep
from isaprof.studies.sweep.spec import SweepConfig, expand, load, load_configs, parse_shard, select, shard

__all__ = [
    "EXECUTORS",
    "Summary",
    "SweepConfig",
    "execute",
    "expand",
    "load",
    "load_configs",
    "parse_shard",
    "read_rows",
    "results_path",
    "run_shard",
    "run_sweep",
    "select",
    "shard",
]
