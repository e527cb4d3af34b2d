"""``isaprof sweep SPEC --out DIR``: run a TOML sweep into a resumable result table.

Overrides (``--blocks``, ``--sizes``, ``--devices``, ``--modes``) keep only the matching configurations
of the spec. ``--shard K/N`` runs one deterministic N-th; ``--jobs N`` with a submitit executor runs
all N shards as jobs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from isaprof.cli._args import positive_int, size


def _csv(kind):  # noqa: ANN001, ANN202
    return lambda text: [kind(t) for t in text.split(",") if t.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``sweep`` subcommand."""
    from isaprof.studies.sweep import EXECUTORS

    p = sub.add_parser(
        "sweep",
        help="run a TOML sweep (resumable, shardable) into DIR/results.csv",
        description="Expand the [[grid]] tables of SPEC and profile every configuration into DIR/results.csv "
        "(append-only; a re-run skips what is there). Also writes DIR/machine.json "
        "(this host's roofs: matmul peak, memory bandwidth; see `isaprof machine`).",
    )
    p.add_argument("spec", help="sweep TOML, e.g. reference/sweeps/report.toml")
    p.add_argument("--out", required=True, metavar="DIR", help="result directory")
    p.add_argument("--blocks", type=_csv(str.strip), help="only these blocks (comma-separated)")
    p.add_argument("--sizes", type=_csv(size), help="only these sizes, e.g. 32x32,64x64")
    p.add_argument("--devices", type=_csv(str.strip), help="only these devices (meta, cpu, cuda)")
    p.add_argument("--modes", type=_csv(str.strip), help="only these modes (inference, train)")
    p.add_argument("--shard", metavar="K/N", help="run shard K of N (deterministic round-robin split)")
    p.add_argument(
        "--jobs", type=positive_int, metavar="N", help="submitit executors: run all N shards as jobs"
    )
    p.add_argument("--executor", choices=EXECUTORS, default="local", help="where shards run (default: local)")
    p.add_argument(
        "--workers",
        type=positive_int,
        default=min(4, os.cpu_count() or 1),
        help="local: processes for meta configurations; real devices run alone after (default: %(default)s)",
    )
    p.add_argument("--slurm-partition", help="slurm: partition")
    p.add_argument("--gpus-per-node", type=int, help="slurm: GPUs per job")
    p.add_argument("--cpus-per-task", type=int, help="submitit: CPUs per job")
    p.add_argument("--timeout-min", type=positive_int, default=60, help="submitit: job time limit in minutes")
    p.add_argument("--no-wait", action="store_true", help="submitit: print job ids and return")
    p.add_argument("--retry-failed", action="store_true", help="re-measure configurations recorded oom/error")
    p.add_argument("--dry-run", action="store_true", help="list the configurations (of the shard) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Expand, filter, shard and run (or list) the sweep; returns the exit status."""
    from isaprof.studies import sweep

    configs = sweep.select(
        sweep.load_configs(args.spec),
        blocks=args.blocks,
        sizes=args.sizes,
        devices=args.devices,
        modes=args.modes,
    )
    if args.shard and args.jobs:
        raise ValueError("give either --shard K/N (one shard) or --jobs N (all N shards), not both")
    if args.jobs and args.executor == "local":
        raise ValueError(
            f"--jobs {args.jobs} runs shards as submitit jobs (--executor submitit-local or slurm); "
            f"here use --workers {args.jobs} (local processes) or --shard K/N"
        )
    if os.path.splitext(args.out)[1].lower() == ".csv":
        stem = os.path.splitext(args.out)[0]
        raise ValueError(
            f"--out is a directory (results.csv goes inside it), got {args.out!r}: try --out {stem}"
        )
    k, n = sweep.parse_shard(args.shard) if args.shard else (None, args.jobs or 1)
    if args.dry_run:
        chosen = sweep.shard(configs, k, n) if k else configs
        for cfg in chosen:
            flag = "  (skipped if unavailable)" if cfg.optional else ""
            print(f"{cfg.grid}: {cfg.label()}{flag}")
        print(f"{len(chosen)} configurations" + (f" (shard {k}/{n} of {len(configs)})" if k else ""))
        return 0
    if args.executor == "slurm" and shutil.which("srun") is None:
        raise ValueError(
            "--executor slurm needs a slurm cluster (no `srun` on PATH); "
            "use --executor local, submitit-local or submitit-debug here"
        )
    results = sweep.execute(
        configs,
        args.out,
        executor=args.executor,
        shards=[k] if k else None,
        n_shards=n,
        slurm_partition=args.slurm_partition,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        timeout_min=args.timeout_min,
        wait=not args.no_wait,
        retry_failed=args.retry_failed,
        progress=not args.no_progress and sys.stderr.isatty(),
        workers=args.workers,
    )
    for i, res in enumerate(results):
        shard_k = k or i + 1
        label = f"shard {shard_k}/{n}: " if n > 1 else ""
        print(f"{label}{res}" if isinstance(res, sweep.Summary) else f"{label}submitted job {res.job_id}")
    print(f"results: {sweep.results_path(args.out)}")
    failed = sum(res.failed for res in results if isinstance(res, sweep.Summary))
    if failed:
        print(
            f"isaprof sweep: {failed} configuration(s) failed (recorded with their error in "
            f"{sweep.results_path(args.out)}; --retry-failed measures them again)",
            file=sys.stderr,
        )
        return 1
    return 0
