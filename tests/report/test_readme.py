"""The README's generated performance figures and the report's provenance line (no torch, no timing)."""

from __future__ import annotations

import json

import pytest

from isaprof.report import data, page, readme
from isaprof.roofline import schema
from tests import REPO

DATA = REPO / "reports" / "data"


def test_performance_table_from_the_committed_results_names_machine_and_date() -> None:
    df = data.read_results(DATA / "results.csv")
    machine, _ = data.roofs_for_latencies(schema.read_machine(DATA / schema.MACHINE), df)  # as the page
    text = readme.performance(df, machine)
    cpu = sorted(set(df.loc[df["metric"] == "latency_ms", "device_name"]))[0]
    assert text.startswith("| block, shape | reference naive | reference sdpa | fast path |")
    assert f"Measured on {cpu} on 20" in text and "GFLOP/s" in text
    assert (
        readme.splice(REPO.joinpath("README.md").read_text(), text) == REPO.joinpath("README.md").read_text()
    )


def test_splice_replaces_between_markers_only() -> None:
    doc = f"a\n{readme.BEGIN}\nold\n{readme.END}\nb\n"
    assert readme.splice(doc, "new\n") == f"a\n{readme.BEGIN}\nnew\n{readme.END}\nb\n"
    with pytest.raises(ValueError, match="markers"):
        readme.splice("no markers", "x")


def test_same_json_ignores_run_timings(tmp_path) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"blocks": [{"block": "isa", "macs": "N", "seconds": 1.2}], "seconds": 3}))
    new.write_text(json.dumps({"blocks": [{"block": "isa", "macs": "N", "seconds": 0.9}], "seconds": 4}))
    before = old.read_text()
    assert readme.same_json(new, old) and not readme.keep_unless_changed(new, old)
    assert old.read_text() == before and not new.exists()
    new.write_text(json.dumps({"blocks": [{"block": "isa", "macs": "N^2", "seconds": 0.9}]}))
    assert readme.keep_unless_changed(new, old) and "N^2" in old.read_text()


def test_provenance_names_the_cpu_model_and_the_machine_id() -> None:
    df = data.read_results(DATA / "results.csv")
    lat = df["metric"] == "latency_ms"
    df.loc[lat, "machine"], df.loc[lat, "samples"], df.loc[lat, "flags"] = "node A", 7, ""
    df.loc[lat & (df["block"] == "dense"), "flags"] = "noisy"
    entry = {"device": "cpu", "machine": "node A", "matmul_gflops": 50.0, "bandwidth_gbs": 5.0}
    entry["device_name"] = "toy CPU"
    machine = {"machines": [entry], "cpu": {"matmul_gflops": 300.0, "bandwidth_gbs": 9.0}}
    view, notes = data.roofs_for_latencies(machine, df)
    assert view["cpu"]["matmul_gflops"] == 50.0 and not notes  # the latencies' own machine's roofs
    text = page.provenance(df, view)
    name = sorted(set(df.loc[lat, "device_name"]))[0]
    assert f"**{name}** (machine `node A`" in text and "at least 7 timed samples" in text
    n_noisy = int((lat & (df["block"] == "dense")).sum())
    assert f"{n_noisy} of {int(lat.sum())} {'is' if n_noisy == 1 else 'are'} noisy" in text
    assert "0 were taken while the machine was contended" in text
    assert "50.00 GFLOP/s" in text and "toy CPU" in text and "contended" not in text.split("CPU roofs")[1]
    entry.update(contended=True, probe_change=0.02, cpu_share=0.54)  # steady load: roofs said to be low
    text = page.provenance(df, data.roofs_for_latencies(machine, df)[0])
    assert "**These roofs were measured while the machine was contended**" in text and "got 54% of" in text
    df.loc[lat, "machine"] = "node B"  # no roofs recorded on the latencies' machine: said so
    assert (
        "none measured on the machine of the latencies (node B)"
        in data.roofs_for_latencies(machine, df)[1][0]
    )


def test_flow_table_names_each_stage_share_in_percent(tmp_path) -> None:  # noqa: ANN001
    row = {"block": "isa", "size": [12, 10], "options": {}, "stage_names": ["long-range", "short-range"],
           "fractions": [0.019444, 1.0], "paths_min": 1, "paths_max": 1, "stages_needed": 2,
           "empirical": [["whole block", 1.0]], "agree": True, "ok": True}  # fmt: skip
    (tmp_path / "verify.json").write_text(json.dumps([row, {**row, "stage_names": [], "fractions": [0.5]}]))
    text = page._flow_section(tmp_path, tmp_path, [])
    assert (
        "| 1.9% (long-range) -> 100.0% (short-range) |" in text and "| 50.0% |" in text and " > " not in text
    )
