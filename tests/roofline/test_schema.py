"""The one roofs type and the machine.json schema: round trip, old layouts read in one place, no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from isaprof.roofline import devices, schema
from isaprof.roofline.schema import Roofs
from tests import REPO

ENTRY = {"matmul_gflops": 200.0, "matmul_gflops_iqr": 1.0, "matmul_shape": "(8,8)x(8,8)",
         "bandwidth_gbs": 10.0, "bandwidth_gbs_iqr": 0.5, "threads": 2, "host": "h", "device_name": "toy CPU",
         "samples": []}  # fmt: skip


def test_machine_json_round_trip(tmp_path) -> None:
    path = tmp_path / schema.MACHINE
    assert schema.read_machine(path) == {"machines": []}  # absent: empty, not an error
    data = schema.read_machine(path)
    schema.add_measured(data, "h", "cpu", ENTRY, {"torch": "2.13.0"})
    schema.add_measured(data, "h", "cpu", {**ENTRY, "bandwidth_gbs": 12.0}, {})  # same host: replaced
    schema.add_measured(data, "g", "cpu", {**ENTRY, "bandwidth_gbs": 30.0}, {})  # another host: appended
    schema.write_machine(path, data)
    back = schema.read_machine(path)
    assert back == json.loads(json.dumps(data)) and not list(tmp_path.glob("*.tmp*"))
    assert [(m["host"], m["bandwidth_gbs"]) for m in back["machines"]] == [("h", 12.0), ("g", 30.0)]
    assert back["cpu"]["bandwidth_gbs"] == 10.0  # the first host with a bandwidth keeps the top entry
    assert "samples" not in back["cpu"] and "samples" in back["machines"][0]
    assert schema.recorded(back, "h") == {"cpu"} and schema.recorded(back, "x") == set()
    assert schema.matmul_peak_gflops(back, "cpu") == 200.0 and schema.bandwidth_gbs(back, "cpu") == 10.0
    assert schema.device_roofs(back, "cpu") == back["cpu"] and schema.device_roofs(back, "cuda") is None
    roofs = Roofs.measured(schema.device_roofs(back, "cpu"), "cpu (measured)", "measured")
    assert (roofs.matrix_flops, roofs.bandwidth, roofs.ridge) == (200e9, 10e9, 20.0)


def test_bad_machine_json_names_file_and_line(tmp_path) -> None:
    path = tmp_path / schema.MACHINE
    path.write_text('{"machines": [],\n garbage')
    with pytest.raises(ValueError, match=r"machine.json:2: not valid JSON"):
        schema.read_machine(path)
    path.write_text('{"machines": 3}')
    with pytest.raises(ValueError, match="not a machine.json"):
        schema.read_machine(path)
    with pytest.raises(ValueError, match="lack matmul_gflops"):
        Roofs.measured({"matmul_gflops": 1.0}, "cpu", "measured")


def test_every_machine_layout_is_read_in_one_place() -> None:
    assert schema.matmul_peak_gflops({"cpu": {"matmul_gflops": 3.0}}, "cpu") == 3.0
    # deprecated layouts (files written before the bandwidth was measured)
    assert schema.matmul_peak_gflops({"cpu": {"matmul_peak_gflops": 4.0}}, "cpu") == 4.0
    assert schema.matmul_peak_gflops({"machines": [{"device": "cpu", "peak_gflops": 5.0}]}, "cpu") == 5.0
    assert schema.matmul_peak_gflops({"peak_gflops": {"cpu": 6.0}}, "cpu") == 6.0
    assert schema.bandwidth_gbs({"peak_gflops": {"cpu": 6.0}}, "cpu") is None
    old_env = {"environment": {"torch": "2.0"}, "machines": [{"env": {"torch": "x", "a": 1}}]}
    assert schema.environment(old_env) == {"torch": "2.0", "a": 1}
    # bf16: its own peak, never the fp32 one
    assert schema.matmul_peak_gflops({"cuda": {"matmul_gflops": 1.0}}, "cuda", "bfloat16") is None
    assert schema.matmul_peak_gflops({"cuda": {"matmul_bf16_gflops": 2.0}}, "cuda", "bfloat16") == 2.0
    assert schema.bandwidth_gbs({"cpu": {"bandwidth_gbs": 9.0}}, "cpu") == 9.0


def test_the_committed_machine_json_is_the_current_layout() -> None:
    committed = schema.read_machine(REPO / "reports" / "data" / schema.MACHINE)
    assert set(committed) == {"cpu", "machines"} and schema.device_roofs(committed, "cpu") is committed["cpu"]
    assert all(set(schema.ROOF_KEYS) <= set(m) for m in committed["machines"])


def test_catalogue_and_measured_roofs_share_one_type() -> None:
    h100 = devices.get("h100-sxm").roofs("float32")
    assert isinstance(h100, Roofs) and h100.matrix_flops == 67e12 and h100.conv_flops == 494.5e12
    assert h100.columns() == {"peak_used": h100.peak, "matrix_tflops": 67.0, "conv_tflops": 494.5,
                              "bandwidth_gbs": 3350.0}  # fmt: skip
    assert h100.flops_of("aten.mm") == 67e12 and h100.flops_of("aten.convolution") == 494.5e12
    with pytest.raises(ValueError, match="no BF16"):
        devices.get("v100").roofs("bfloat16")


def test_schema_imports_no_torch() -> None:
    code = "import sys; sys.modules['torch'] = None\nimport isaprof.roofline.schema, isaprof.roofline.devices"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert res.returncode == 0, res.stderr
