"""Sweep runner and store: rows written, resume, failures recorded, shards == unsharded, executors."""

from __future__ import annotations

import csv
import json
import multiprocessing
import sys
import time

import pytest

from isaprof.config import COLUMNS
from isaprof.results.store import append, config_key, row_key, statuses
from isaprof.roofline.machine import record_machine
from isaprof.studies.sweep import execute, expand, load_configs, read_rows, run_sweep, select, shard
from isaprof.studies.sweep.runner import failure_row, failure_rows
from tests import REPO

MEASURED = (
    "block",
    "height",
    "width",
    "factor",
    "recurrence",
    "options",
    "impl",
    "mode",
    "metric",
    "measured",
)


class FakeRecord:
    def __init__(self, rows):
        self._rows = rows

    def rows(self):
        return self._rows


class FakeProfile:
    """Deterministic stand-in for ``isaprof.profile``: two metrics per configuration.

    ``fail``: {(block, height, factor-or-None): exception} raised for matching configurations.
    """

    def __init__(self, fail=None, delay=0.0):
        self.calls = []
        self.fail = fail or {}
        self.delay = delay

    def __call__(self, name, *, size, channels, key_channels, value_channels, batch, device, dtype, mode,
                 impl, backend, latency, by_module=False, path="reference", layout="map",
                 **options):  # fmt: skip
        self.calls.append((name, size, mode, options.get("factor")))
        time.sleep(self.delay)
        err = self.fail.get((name, size[0], options.get("factor")))
        if err is not None:
            raise err
        base = dict(
            block=name, batch=batch, channels=channels, key_channels=key_channels,
            value_channels=value_channels, height=size[0], width=size[1], padded_height=size[0],
            padded_width=size[1], factor="{}x{}".format(*options["factor"]) if "factor" in options else None,
            recurrence=options.get("recurrence"),
            options=json.dumps(dict(reversed(options.items()))),  # key order differs from the sweep's
            impl=impl, backend=backend, path=path, dtype=dtype, device=device, mode=mode, layout=layout,
            status="ok",
            error=None,
            torch="x", device_name="fake", threads=1, host="h", timestamp="t",
        )  # fmt: skip
        macs = batch * channels * size[0] * size[1] * (2 if mode == "train" else 1)
        return FakeRecord(
            [
                {**base, "metric": "macs", "measured": macs, "analytic": macs, "unit": "MAC"},
                {**base, "metric": "peak_bytes", "measured": 4 * macs, "analytic": 4 * macs, "unit": "byte"},
            ]
        )


def configs():
    grid = {"blocks": ["dense", "isa", "criss_cross"], "sizes": ["8x8", "9x7"], "channels": [16]}
    return expand([{**grid, "factors": ["2x2", "4x4"], "impls": ["naive"], "modes": ["inference", "train"]}])


def run(out, fake, cfgs=None, **kw):
    return run_sweep(
        configs() if cfgs is None else cfgs, out, profile_fn=fake, progress=False, machine=False, **kw
    )


def table(out):
    return sorted(tuple(r[c] for c in MEASURED) for r in read_rows(out))


def test_rows_written_then_resumed_without_remeasuring(tmp_path):
    cfgs, fake = configs(), FakeProfile()
    summary = run(tmp_path, fake)
    assert (summary.total, summary.measured, summary.failed, summary.skipped) == (len(cfgs), len(cfgs), 0, 0)
    assert len(fake.calls) == len(cfgs) == 16  # dense 4 + isa 8 + criss_cross 4
    with open(tmp_path / "results.csv", newline="") as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    rows = read_rows(tmp_path)
    assert len(rows) == 2 * len(cfgs)
    assert {row_key(r) for r in rows} == {config_key(c) for c in cfgs}  # options JSON order does not matter
    again = FakeProfile()
    summary = run(tmp_path, again)
    assert again.calls == [] and summary.skipped == len(cfgs)
    assert len(read_rows(tmp_path, latest=False)) == 2 * len(cfgs)  # nothing appended


def test_interrupted_sweep_loses_nothing(tmp_path):
    cfgs = configs()
    stop = FakeProfile(
        fail={(cfgs[5].block, cfgs[5].height, dict(cfgs[5].options).get("factor")): KeyboardInterrupt()}
    )
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, stop)
    assert len(read_rows(tmp_path)) == 2 * 5  # the five configurations before the interrupt
    with open(tmp_path / "results.csv", "a") as f:
        f.write("dense,1,16,8")  # a line cut by a crash
    rest = FakeProfile()
    run(tmp_path, rest)
    assert len(rest.calls) == len(cfgs) - 5
    assert table(tmp_path) == table_of_clean_run(tmp_path.parent / "clean")


def table_of_clean_run(out):
    run(out, FakeProfile())
    return table(out)


def test_failures_recorded_sweep_goes_on_and_retry(tmp_path):
    fail = {("isa", 8, (4, 4)): RuntimeError("boom\nsecond line"), ("dense", 9, None): MemoryError("no room")}
    fake = FakeProfile(fail=fail)
    summary = run(tmp_path, fake)
    cfgs = configs()
    n_fail = sum((c.block, c.height, dict(c.options).get("factor")) in fail for c in cfgs)  # 2 modes each
    assert n_fail == 4 and summary.failed == n_fail and summary.measured == len(cfgs) - n_fail
    bad = [r for r in read_rows(tmp_path) if r["status"] != "ok"]
    assert sorted({(r["block"], r["status"], r["error"]) for r in bad}) == [
        ("dense", "oom", "MemoryError: no room"),
        ("isa", "error", "RuntimeError: boom second line"),  # one line
    ]
    # isaprof.profiling.profiler.error_rows: every meta metric, measured empty, analytic kept
    assert len(bad) == 6 * n_fail and all(r["measured"] == "" for r in bad)
    assert {r["metric"] for r in bad} == {
        "params",
        "macs",
        "flops",
        "elementwise",
        "peak_bytes",
        "bytes_moved",
    }
    assert all(r["analytic"] != "" for r in bad if r["metric"] == "macs")
    plain = FakeProfile()
    assert run(tmp_path, plain).skipped == len(cfgs) and plain.calls == []  # failed: not retried by default
    retry = FakeProfile()
    assert run(tmp_path, retry, retry_failed=True).measured == n_fail
    assert len(retry.calls) == n_fail
    assert all(r["status"] == "ok" for r in read_rows(tmp_path))  # last attempts only
    assert len(read_rows(tmp_path, latest=False)) == 2 * len(cfgs) + 6 * n_fail  # append-only
    assert set(statuses(tmp_path).values()) == {"ok"}


@pytest.mark.parametrize("rows", [failure_rows, lambda cfg, *a: [failure_row(cfg, *a)]])
def test_retry_right_after_failure_is_a_new_attempt(tmp_path, rows):
    cfg = configs()[0]
    append(tmp_path, rows(cfg, "error", "x"), COLUMNS)
    assert statuses(tmp_path) == {config_key(cfg): "failed"}
    run(tmp_path, FakeProfile(), [cfg], retry_failed=True)
    assert [r["status"] for r in read_rows(tmp_path)] == ["ok", "ok"]


def test_store_rejects_other_columns(tmp_path):
    (tmp_path / "results.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="choose another --out"):
        run(tmp_path, FakeProfile())


def _shard_worker(out, k, n):
    run(out, FakeProfile(delay=0.005), shard(configs(), k, n))


def test_two_shards_at_once_equal_the_unsharded_run(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_shard_worker, args=(tmp_path / "sharded", k, 2)) for k in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    run(tmp_path / "whole", FakeProfile())
    assert table(tmp_path / "sharded") == table(tmp_path / "whole")
    assert len(read_rows(tmp_path / "sharded", latest=False)) == 2 * len(configs())  # no duplicates
    again = FakeProfile()
    assert run(tmp_path / "sharded", again).skipped == len(configs()) and again.calls == []


def test_unavailable_optional_device_is_skipped(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfgs = expand([{"blocks": ["dense"], "sizes": [8], "channels": [8], "impls": ["naive"],
                    "devices": ["meta", "cuda"], "skip_if_unavailable": True}])  # fmt: skip
    fake = FakeProfile()
    summary = run(tmp_path, fake, cfgs)
    assert (summary.measured, summary.failed, summary.unavailable) == (1, 0, 1)
    assert [c[0] for c in fake.calls] == ["dense"]
    # recorded once as `skipped` (says why the table has no cuda numbers), not as a failure
    assert {(r["device"], r["status"]) for r in read_rows(tmp_path)} == {("meta", "ok"), ("cuda", "skipped")}
    assert run(tmp_path, FakeProfile(), cfgs).unavailable == 1
    assert len(read_rows(tmp_path, latest=False)) == 3  # not recorded twice
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with the device: measured
    again = FakeProfile()
    assert run(tmp_path, again, cfgs).measured == 1 and [c[2] for c in again.calls] == ["inference"]


def test_machine_json(tmp_path):
    data = record_machine(tmp_path, n=64)
    assert data["cpu"]["matmul_gflops"] > 0 and data["cpu"]["bandwidth_gbs"] > 0
    assert [m["device"] for m in data["machines"]] == ["cpu"]
    assert {"torch", "host", "threads"} <= set(data["machines"][0]["env"])
    again = record_machine(tmp_path, n=64)  # already there: not measured twice
    assert again == json.loads((tmp_path / "machine.json").read_text()) == data


def test_submitit_debug_executor_same_rows(tmp_path):
    pytest.importorskip("submitit")
    fake = FakeProfile()
    res = execute(
        configs(), tmp_path / "dbg", executor="submitit-debug", n_shards=2, profile_fn=fake, peak_n=64
    )
    assert [r.measured for r in res] == [8, 8]
    assert table(tmp_path / "dbg") == table_of_clean_run(tmp_path / "clean")


def test_execute_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'ssh'; allowed: local, slurm"):
        execute([], tmp_path, executor="ssh")
    with pytest.raises(ValueError, match="1 <= K <= N"):
        execute([], tmp_path, shards=[3], n_shards=2)


# End to end with the real profile on meta (deterministic counts).
TINY = REPO / "reference" / "sweeps" / "tiny.toml"


class Counting:
    """The real profile, counting calls."""

    def __init__(self):
        from isaprof.profiling.profiler import profile

        self.profile, self.calls = profile, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.profile(*args, **kwargs)


def test_tiny_sweep_end_to_end_and_resume(tmp_path):
    cfgs = select(load_configs(TINY), modes=["inference"])  # 4 configurations, 3 blocks
    counting = Counting()
    summary = run_sweep(cfgs, tmp_path, profile_fn=counting, progress=False, peak_n=64)
    assert (summary.measured, summary.failed, counting.calls) == (len(cfgs), 0, len(cfgs))
    rows = read_rows(tmp_path)
    assert len(rows) == 6 * len(cfgs)  # params, macs, flops, elementwise, peak_bytes, bytes_moved (meta)
    assert {row_key(r) for r in rows} == {
        config_key(c) for c in cfgs
    }  # profile's rows match the sweep's keys
    assert all(r["measured"] not in ("", None) for r in rows if r["metric"] in ("macs", "peak_bytes"))
    assert json.loads((tmp_path / "machine.json").read_text())["cpu"]["matmul_gflops"] > 0
    again = Counting()
    assert run_sweep(cfgs, tmp_path, profile_fn=again, progress=False).skipped == len(cfgs)
    assert again.calls == 0


def test_sdpa_default_backend_resumes(tmp_path):
    cfgs = expand([{"blocks": ["dense"], "sizes": [6], "channels": [8], "impls": ["sdpa"]}])
    assert cfgs[0].backend is None
    run_sweep(cfgs, tmp_path, progress=False, machine=False)
    assert {r["backend"] for r in read_rows(tmp_path)} == {"flash"}  # profile's choice, recorded
    again = Counting()
    assert run_sweep(cfgs, tmp_path, profile_fn=again, progress=False, machine=False).skipped == 1
    assert again.calls == 0


@pytest.mark.slow  # two subprocesses import torch
def test_parallel_local_workers_equal_unsharded(tmp_path):
    cfgs = configs() + expand([{"blocks": ["dense"], "sizes": [8], "channels": [16], "devices": ["cpu"]}])
    [res] = execute(
        cfgs, tmp_path / "par", workers=2, profile_fn=FakeProfile(), progress=False, machine=False
    )
    assert (res.total, res.measured) == (len(cfgs), len(cfgs))
    run(tmp_path / "one", FakeProfile(), cfgs)
    assert table(tmp_path / "par") == table(tmp_path / "one")
    rows = read_rows(tmp_path / "par", latest=False)
    assert len(rows) == 2 * len(cfgs) and rows[-1]["device"] == "cpu"  # real devices last, alone


@pytest.mark.slow  # two subprocesses import torch
def test_submitit_local_shards_at_once_equal_unsharded(tmp_path):
    """Two shards as two concurrent subprocesses (submitit's LocalExecutor, the slurm code path)."""
    pytest.importorskip("submitit")
    cloudpickle = pytest.importorskip("cloudpickle")
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the fake travels to the jobs
    try:
        res = execute(configs(), tmp_path / "jobs", executor="submitit-local", n_shards=2,
                      profile_fn=FakeProfile(delay=0.005), machine=False)  # fmt: skip
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert [r.measured for r in res] == [8, 8]
    assert table(tmp_path / "jobs") == table_of_clean_run(tmp_path / "one")
    assert len(read_rows(tmp_path / "jobs", latest=False)) == 2 * len(configs())


def test_another_machine_remeasures_latency_rows_and_reuses_meta_rows(tmp_path, monkeypatch):
    """The tiny sweep (meta) plus one cpu configuration, with the real profile: a store made on machine A is
    re-measured on machine B off meta only (its latency rows and roofs), then left alone."""
    cfgs = load_configs(REPO / "reference" / "sweeps" / "tiny.toml")
    cpu = expand([{"blocks": ["dense"], "sizes": ["6x5"], "channels": [8], "devices": ["cpu"],
                   "modes": ["inference"], "impls": ["naive"]}])  # fmt: skip
    monkeypatch.setattr("isaprof.studies.sweep.runner._available", lambda device: device != "cuda")
    cuda = expand([{"blocks": ["dense"], "sizes": ["6x5"], "channels": [8], "devices": ["cuda"],
                    "modes": ["inference"], "impls": ["naive"], "skip_if_unavailable": True}])  # fmt: skip
    cfgs = [*cfgs, *cpu]
    out = tmp_path / "data"

    def sweep():
        return run_sweep(cfgs, out, progress=False, peak_n=32)

    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine A")
    first = sweep()
    assert (first.measured, first.elsewhere) == (len(cfgs), 0)
    assert sweep().skipped == len(cfgs)  # the same machine: nothing measured
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine B")
    second = sweep()
    assert (second.measured, second.elsewhere, second.skipped) == (1, 1, len(cfgs) - 1)
    assert "1 made on another machine: measured again here" in str(second)
    latency = [r for r in read_rows(out) if r["metric"] == "latency_ms"]
    assert [(r["machine"], int(r["samples"]) >= 7) for r in latency] == [("machine B", True)]
    assert {r["machine"] for r in read_rows(out) if r["device"] == "meta"} == {"machine A"}  # reused
    roofs = json.loads((out / "machine.json").read_text())
    assert [m["machine"] for m in roofs["machines"]] == ["machine A", "machine B"]
    before = (out / "results.csv").read_bytes()
    assert sweep().skipped == len(cfgs) and (out / "results.csv").read_bytes() == before
    # a device absent here is recorded as skipped, never counted as measured again
    assert run_sweep(cuda, out, progress=False, peak_n=32).unavailable == 1
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine C")
    third = run_sweep(cuda, out, progress=False, peak_n=32)
    assert (third.unavailable, third.elsewhere, third.measured) == (1, 0, 0)


def test_store_of_an_older_schema_is_upgraded_on_append(tmp_path):
    """A results.csv written before the samples, flags and machine columns existed reads (those cells
    empty) and, on the next append, is rewritten with the current header, its rows kept."""
    old_cols = [c for c in COLUMNS if c not in ("samples", "flags", "machine")]
    cfg = configs()[0]
    row = {c: v for c, v in failure_row(cfg, "error", "old").items() if c in old_cols}
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_cols, lineterminator="\n")
        w.writeheader()
        w.writerow(row)
    assert [r["status"] for r in read_rows(tmp_path)] == ["error"] and "samples" not in read_rows(tmp_path)[0]
    append(tmp_path, [failure_row(configs()[1], "error", "new")])
    with open(tmp_path / "results.csv", newline="") as f:
        assert next(csv.reader(f)) == list(COLUMNS)
    rows = read_rows(tmp_path)
    assert [r["error"] for r in rows] == ["old", "new"] and rows[0]["machine"] == ""
    assert rows[1]["machine"] != ""
