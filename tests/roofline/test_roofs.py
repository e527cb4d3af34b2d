"""Machine roofs (isaprof.roofline.roofs, ``isaprof machine``, machine.json): structure, never timings.

Measurements here use tiny shapes and arrays (fractions of a second); nothing asserts a rate's size.
"""

from __future__ import annotations

import hashlib
import json
import socket

import pytest
import torch

from isaprof.cli import main
from isaprof.measure.env import machine_id
from isaprof.measure.latency import contended
from isaprof.roofline import roofs, schema
from isaprof.roofline.machine import record_machine
from isaprof.roofline.roofs import GemmShape, Sample, machine_roofs, measure_roofs, summarise

TINY = dict(
    shapes=(GemmShape(32, 16, 8, why="a"), GemmShape(64, 64, 64, why="b"), GemmShape(8, 8, 8, batch=4)),
    array_bytes=2**20,
    min_run_time=0.01,
)
KEYS = {"matmul_gflops", "matmul_gflops_iqr", "matmul_shape", "bandwidth_gbs", "bandwidth_gbs_iqr", "threads"}


def _fake(rate: float = 100.0, threads: int | None = None) -> dict:
    return {"matmul_gflops": rate, "matmul_gflops_iqr": 1.0, "matmul_shape": "x", "bandwidth_gbs": 10.0,
            "bandwidth_gbs_iqr": 0.1, "threads": threads or torch.get_num_threads(), "host": "h",
            "device_name": "cpu", "samples": []}  # fmt: skip


def test_roofs_are_the_maximum_of_the_same_runs_samples() -> None:
    r = measure_roofs("cpu", **TINY)
    mm = [s for s in r["samples"] if s["kind"] == "matmul"]
    bw = [s for s in r["samples"] if s["kind"] == "bandwidth"]
    assert [s["kernel"] for s in mm] == ["mm", "mm", "bmm"] and [s["kernel"] for s in bw] == ["copy", "triad"]
    assert r["matmul_gflops"] == max(s["rate"] for s in mm)
    assert r["bandwidth_gbs"] == max(s["rate"] for s in bw)
    top = max(mm, key=lambda s: s["rate"])
    assert (r["matmul_shape"], r["matmul_gflops_iqr"]) == (top["shape"], top["rate_iqr"])
    # work per call: 2 M K N FLOPs (bmm: times the batch); copy moves 2 arrays, triad 3 (STREAM's count)
    assert [s["work"] for s in mm] == [2 * 32 * 16 * 8, 2 * 64**3, 2 * 4 * 8**3]
    assert [s["work"] for s in bw] == [2 * 2**20, 3 * 2**20]
    assert all(s["rate_iqr"] >= 0 and s["runs"] >= 1 for s in r["samples"])
    assert KEYS | {"host", "device_name", "samples", "measured_at"} <= set(r)


def test_rates_median_and_iqr_arithmetic() -> None:
    # 4e9 FLOP in 1, 2, 4, 8 s: rates 4, 2, 1, 0.5 GFLOP/s; median (2 + 1) / 2; quartiles (inclusive)
    # of 0.5, 1, 2, 4: Q1 = 0.875, Q3 = 2.5
    assert roofs._rates(4 * 10**9, [1.0, 2.0, 4.0, 8.0]) == (1.5, 2.5 - 0.875)
    assert roofs._rates(10**9, [0.5]) == (2.0, 0.0)


def test_summarise_takes_the_largest_median_not_a_lucky_block() -> None:
    def s(kernel: str, rate: float, iqr: float, kind: str = "matmul") -> Sample:
        return Sample(kind, kernel, kernel, "", "float32", 1, "FLOP", rate, iqr, 1.0, 3)

    out = summarise([s("a", 10.0, 9.0), s("b", 12.0, 0.5), s("c", 5.0, 1.0, "bandwidth")])
    assert (out["matmul_gflops"], out["matmul_gflops_iqr"], out["matmul_shape"]) == (12.0, 0.5, "b")
    assert (out["bandwidth_gbs"], out["bandwidth_kernel"]) == (5.0, "c")


def test_stream_arrays_exceed_the_last_level_cache() -> None:
    llc = roofs.last_level_cache_bytes("cpu")
    nbytes = roofs.stream_array_bytes("cpu")
    assert nbytes % 2**20 == 0 and nbytes >= 64 * 2**20
    import os

    free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # 4x the last-level cache and 256 MiB, unless that is more than 1/8 of the free memory
    assert nbytes >= min(max(4 * (llc or 0), 256 * 2**20), max(free // 8, 64 * 2**20))
    assert llc is None or nbytes >= 4 * llc or nbytes >= free // 8


def test_machine_roofs_cache(tmp_path, monkeypatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(roofs, "measure_roofs", lambda d, **kw: calls.append(d) or _fake(7.0))
    monkeypatch.setattr(roofs, "available_devices", lambda: ("cpu",))
    path = tmp_path / "m.json"
    first = machine_roofs(cache=path)
    assert calls == ["cpu"] and first["cpu"]["matmul_gflops"] == 7.0 and json.loads(path.read_text()) == first
    assert machine_roofs(cache=path) == first and calls == ["cpu"]  # cached: not measured twice
    machine_roofs(remeasure=True, cache=path)
    assert calls == ["cpu", "cpu"]
    path.write_text(json.dumps({"cpu": _fake(threads=torch.get_num_threads() + 1)}))  # other thread count
    machine_roofs(cache=path)
    assert len(calls) == 3


def test_cache_path_follows_isaprof_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISAPROF_CACHE", str(tmp_path))
    # keyed by the machine id (CPU model, cores, threads, torch build; ISAPROF_MACHINE_ID), not the host name
    assert roofs.cache_path() == tmp_path / f"machine-{roofs.slug(machine_id('cpu'))}.json"
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "node type A")
    digest = hashlib.sha1(b"node type A").hexdigest()[:8]
    assert roofs.cache_path().name == f"machine-node-type-A-{digest}.json"
    assert roofs.cache_path() != roofs.cache_path("node type B")


def test_machine_cli_json_schema(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ISAPROF_CACHE", str(tmp_path))
    roofs.cache_path().write_text(json.dumps({"cpu": measure_roofs("cpu", **TINY)}))
    monkeypatch.setattr(roofs, "available_devices", lambda: ("cpu",))
    assert main(["machine", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"cpu"} and KEYS <= set(doc["cpu"])
    assert isinstance(doc["cpu"]["matmul_gflops"], float) and isinstance(doc["cpu"]["threads"], int)
    assert main(["machine"]) == 0
    out = capsys.readouterr().out
    assert "fp32 matmul peak" in out and "memory bandwidth" in out and "STREAM" in out


def test_record_machine_completes_an_old_peak_only_file(tmp_path) -> None:
    host = socket.gethostname()
    old = {"peak_gflops": {"cpu": 50.0}, "machines": [{"host": host, "device": "cpu", "peak_gflops": 50.0}]}
    (tmp_path / "machine.json").write_text(json.dumps(old))
    assert schema.matmul_peak_gflops(old, "cpu") == 50.0 and schema.bandwidth_gbs(old, "cpu") is None
    new = record_machine(tmp_path, n=32)
    assert [m["device"] for m in new["machines"]] == ["cpu"]  # the old entry replaced, not duplicated
    assert new["cpu"]["bandwidth_gbs"] > 0
    assert schema.matmul_peak_gflops(new, "cpu") == new["cpu"]["matmul_gflops"]
    assert schema.bandwidth_gbs(new, "cpu") == new["cpu"]["bandwidth_gbs"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_roofs_measured() -> None:
    r = measure_roofs(
        "cuda", shapes=(GemmShape(1024, 1024, 1024),), array_bytes=64 * 2**20, min_run_time=0.05
    )
    assert r["matmul_gflops"] == max(
        s["rate"] for s in r["samples"] if s["kind"] == "matmul" and s["dtype"] == "float32"
    )
    assert r["matmul_bf16_gflops"] > 0 and r["bandwidth_gbs"] > 0


def test_record_machine_keys_roofs_by_machine_id(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine A")
    first = record_machine(tmp_path, n=32)
    assert [m["machine"] for m in first["machines"]] == ["machine A"]
    assert record_machine(tmp_path, n=32) == first  # the same machine: not measured again
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine B")  # same host name, another machine: measured
    second = record_machine(tmp_path, n=32)
    assert [m["machine"] for m in second["machines"]] == ["machine A", "machine B"]
    assert {m["host"] for m in second["machines"]} == {socket.gethostname()}
    assert schema.machine_entry(second, "cpu", "machine B") is second["machines"][1]
    assert schema.machine_entry(second, "cpu", "machine C") is None


def test_contended_measurement_is_repeated_marked_and_never_reused(tmp_path, monkeypatch) -> None:
    """A low CPU share (steady load the probe cannot see) or a probe change above 20% marks a measurement
    contended: it is measured again once, kept marked if still contended, and a cache of it is not reused."""
    r = measure_roofs("cpu", **TINY)
    assert {"probe_change", "cpu_share", "contended"} <= set(r) and isinstance(r["contended"], bool)
    busy = r["cpu_share"] < roofs.MIN_CPU_SHARE or contended(r["probe_change"])
    assert 0 < r["cpu_share"] and r["contended"] == busy
    sample = Sample("matmul", "mm", "s", "", "float32", 1, "FLOP", 5.0, 0.0, 1.0, 1)
    runs: list[int] = []
    for share, change, attempts, busy in ((0.5, 0.0, 2, True), (0.95, 0.3, 2, True), (0.95, 0.05, 1, False)):
        runs.clear()
        monkeypatch.setattr(
            roofs, "_measured", lambda *a, s=share, c=change: runs.append(1) or ([sample], c, s)
        )
        got = measure_roofs("cpu", **TINY)
        assert (len(runs), got["contended"], got["cpu_share"]) == (attempts, busy, share)
    calls: list[str] = []
    monkeypatch.setattr(
        roofs, "measure_roofs", lambda d, **kw: calls.append(d) or {**_fake(7.0), "contended": True}
    )
    monkeypatch.setattr(roofs, "available_devices", lambda: ("cpu",))
    path = tmp_path / "m.json"
    machine_roofs(cache=path)
    machine_roofs(cache=path)  # the cached roofs were contended: measured again, not reused
    assert calls == ["cpu", "cpu"]


def test_record_machine_measures_a_contended_entry_again(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ISAPROF_MACHINE_ID", "machine C")
    marks = iter([True, False])
    monkeypatch.setattr(
        roofs, "machine_roofs", lambda: {"cpu": {**_fake(7.0), "contended": next(marks)}}, raising=True
    )
    first = record_machine(tmp_path, devices=("cpu",))
    assert schema.machine_entry(first, "cpu", "machine C")["contended"] is True
    second = record_machine(tmp_path, devices=("cpu",))  # measured again: now uncontended, and kept
    assert schema.machine_entry(second, "cpu", "machine C")["contended"] is False
    assert record_machine(tmp_path, devices=("cpu",)) == second  # an uncontended entry is reused
