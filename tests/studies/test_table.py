"""``isaprof table`` and :mod:`isaprof.studies.table`: numbers equal ``isaprof.profile``'s, CSV/JSON
round-trip,
LaTeX well-formed and escaped, ratios to dense exact to the printed digits, one-line bad input.

Small: meta device, 16x16, C = 32 (a few seconds); one cpu run at 8x8 for the latency columns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import isaprof
from isaprof.cli import main
from isaprof.studies import table as tbl

SMALL = ["--size", "16x16", "--channels", "32"]
TARGETS = ["isa", "dense", "criss_cross"]


def _run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = int(e.code)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def both_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    path = tmp_path_factory.mktemp("table") / "t.json"
    assert main(["table", *TARGETS, *SMALL, "--mode", "both", "--format", "json", "--out", str(path)]) == 0
    return json.loads(path.read_text())


# --- every number is isaprof.profile's ------------------------------------------------------------------


def test_numbers_equal_profile_fields(both_json: dict) -> None:
    rows = {r["target"]: r for r in both_json["rows"]}
    assert [r["target"] for r in both_json["rows"]] == TARGETS  # the order asked for
    opts = {"isa": {"factor": (8, 8)}, "criss_cross": {"recurrence": 2}, "dense": {}}
    for t in TARGETS:
        inf = isaprof.profile(t, size=(16, 16), channels=32, mode="inference", **opts[t])
        tr = isaprof.profile(t, size=(16, 16), channels=32, mode="train", **opts[t])
        r = rows[t]
        assert r["status"] == "ok" and r["params"] == inf.params
        assert r["gflops"] == 2 * inf.macs / 1e9  # FLOPs = 2 x MACs, exactly
        assert r["gflops_train"] == 2 * tr.macs / 1e9
        assert r["peak_mib_inference"] == inf.peak_bytes / 2**20
        assert r["peak_mib_train"] == tr.peak_bytes / 2**20
        assert (r["key_channels"], r["value_channels"]) == (
            inf.to_json()["config"]["key_channels"],
            inf.to_json()["config"]["value_channels"],
        )
    dense = rows["dense"]
    for c in ("params", "gflops", "gflops_train", "peak_mib_inference", "peak_mib_train"):
        assert dense[f"{c}_vs_dense"] == 1.0
        assert rows["isa"][f"{c}_vs_dense"] == rows["isa"][c] / dense[c]
    assert rows["criss_cross"]["options"] == "recurrence=2" and rows["isa"]["options"] == "factor=8x8"
    assert "latency_ms" not in both_json["columns"]  # meta: no timing, no empty latency column
    assert both_json["setting"]["size"] == [16, 16] and both_json["setting"]["mode"] == "both"


def test_dense_measured_for_ratios_even_when_not_a_row(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["table", "isa", *SMALL, "--format", "json"])
    assert code == 0
    (row,) = json.loads(out)["rows"]
    dense = isaprof.profile("dense", size=(16, 16), channels=32)
    isa = isaprof.profile("isa", size=(16, 16), channels=32, factor=(8, 8))
    assert row["gflops_vs_dense"] == isa.macs / dense.macs
    assert row["peak_mib_inference_vs_dense"] == isa.peak_bytes / dense.peak_bytes


def test_default_targets_are_every_block_in_registry_order(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["table", "--size", "8x8", "--channels", "16", "--format", "csv"])
    assert code == 0
    assert [r["target"] for r in tbl.read_csv(out)] == isaprof.names()


# --- formats ----------------------------------------------------------------------------------------------


def test_csv_and_json_round_trip(both_json: dict, capsys: pytest.CaptureFixture[str]) -> None:
    rows = both_json["rows"]
    text = tbl.to_csv(rows, both_json["columns"])
    assert tbl.read_csv(text) == rows
    setting, back = tbl.read_json(tbl.to_json(rows, both_json["setting"], both_json["columns"]))
    assert back == rows and setting == both_json["setting"]
    code, out, _ = _run(capsys, ["table", *TARGETS, *SMALL, "--mode", "both", "--format", "csv"])
    assert code == 0 and tbl.read_csv(out) == rows  # the CLI's CSV holds the JSON's rows
    header = out.splitlines()[0].split(",")
    assert header[:1] == ["target"] and {"params", "gflops", "peak_mib_inference", "peak_mib_train"} <= set(
        header
    )
    assert len(out.strip().splitlines()) == 1 + len(TARGETS)


def test_ratios_exact_to_the_printed_digits(both_json: dict, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, ["table", *TARGETS, *SMALL, "--mode", "both"])
    assert code == 0
    lines = [ln for ln in out.splitlines() if ln.startswith("| isa")]
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    isa = next(r for r in both_json["rows"] if r["target"] == "isa")
    shown = [
        ("params", 2),
        ("gflops", 4),
        ("gflops_train", 6),
        ("peak_mib_inference", 8),
        ("peak_mib_train", 10),
    ]
    for col, i in shown:
        assert cells[i] == tbl.fmt_value(col, isa[col])
        ratio = isa[col] / next(r for r in both_json["rows"] if r["target"] == "dense")[col]
        m = re.fullmatch(r"([0-9.]+)x \(([0-9.]+)% (saved|more)\)", cells[i + 1])
        assert m, cells[i + 1]
        assert float(m.group(1)) == float(f"{ratio:.3g}")
        assert float(m.group(2)) == round(abs(1 - ratio) * 100, 1)
        assert m.group(3) == ("saved" if ratio < 1 else "more")


def test_fmt_ratio_by_hand() -> None:
    assert tbl.fmt_ratio(0.14625) == "0.146x (85.4% saved)"
    assert tbl.fmt_ratio(3.2) == "3.20x (220.0% more)"
    assert tbl.fmt_ratio(1.0) == "1.00x"
    assert tbl.fmt_ratio(0.05, latex=True) == r"0.0500$\times$ (95.0\% saved)"
    assert tbl.fmt_value("params", 1050112) == "1,050,112" and tbl.fmt_value("gflops", 113.0854) == "113.1"
    assert tbl.fmt_value("gflops", 0.00049) == "0.0004900" and tbl.fmt_value("gflops", None) == ""


SPECIAL = "my_blk&50%$#{x}~^\\"


def _fake_rows() -> tuple[list[dict], dict]:
    meas = [
        {"target": "dense", "params": 100, "flops_inference": 4e9, "peak_bytes_inference": 2**21},
        {
            "target": SPECIAL,
            "options": {"factor": (4, 4)},
            "params": 50,
            "flops_inference": 1e9,
            "peak_bytes_inference": 2**20,
            "key_channels": 8,
            "value_channels": 16,
        },  # fmt: skip
        {"target": "broken_one", "status": "error", "error": "RuntimeError: boom &\n second line"},
    ]
    return tbl.rows(meas, meas[0], "inference"), {"size": [16, 16], "channels": 32, "mode": "inference"}


def test_latex_booktabs_balanced_escaped_one_row_per_target() -> None:
    rows, setting = _fake_rows()
    text = tbl.latex(rows, setting)
    for env in ("table", "tabular"):
        assert text.count(f"\\begin{{{env}}}") == text.count(f"\\end{{{env}}}") == 1
    assert text.index("\\toprule") < text.index("\\midrule") < text.index("\\bottomrule")
    body = text[text.index("\\midrule") : text.index("\\bottomrule")].splitlines()[1:]
    assert len(body) == len(rows) and all(ln.endswith("\\\\") for ln in body)
    escaped = r"my\_blk\&50\%\$\#\{x\}\textasciitilde{}\textasciicircum{}\textbackslash{}"
    assert body[1].startswith(escaped + " (factor=4x4) & 8/16 & 50 & 0.500$\\times$ (50.0\\% saved)")
    assert "\\multicolumn{6}{l}{error: RuntimeError: boom \\& second line}" in body[2]
    cols = re.search(r"\\begin\{tabular\}\{(\w+)\}", text).group(1)
    assert all(ln.count(" & ") + 1 == len(cols) for ln in body[:2])  # every cell has its column
    # braces balance outside escaped ones; the caption states the conventions
    assert text.replace("\\{", "").replace("\\}", "").count("{") == text.replace("\\{", "").replace(
        "\\}", ""
    ).count("}")
    cap = re.search(r"\\caption\{(.*)\}", text).group(1)
    for words in (
        "FLOPs = 2 x MACs",
        "above inputs and parameters",
        "float32",
        "batch 1",
        "inference",
        "meta",
    ):
        assert words in cap


def test_failed_row_in_markdown_and_csv() -> None:
    rows, _ = _fake_rows()
    md = tbl.markdown(rows).splitlines()
    assert len(md) == 2 + len(rows)
    assert md[-1].startswith("| broken_one |  | **error**: RuntimeError: boom & second line |")
    back = tbl.read_csv(tbl.to_csv(rows))
    assert back == rows and back[2]["gflops"] is None and back[2]["status"] == "error"


# --- the CLI: failures and bad input ------------------------------------------------------------------------


def test_a_failing_target_is_its_row_the_others_print(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = isaprof.profile

    def flaky(name: str, **kw: object) -> object:
        if name == "axial":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return real(name, **kw)

    monkeypatch.setattr(isaprof, "profile", flaky)
    code, out, err = _run(capsys, ["table", "dense", "axial", "isa", *SMALL, "--format", "json"])
    assert code == 1 and "1 target(s) failed: axial" in err and "Traceback" not in err
    rows = json.loads(out)["rows"]
    assert [r["status"] for r in rows] == ["ok", "oom", "ok"]
    assert rows[1]["gflops"] is None and "out of memory" in rows[1]["error"]
    assert rows[2]["gflops"] == 2 * real("isa", size=(16, 16), channels=32).macs / 1e9


@pytest.mark.parametrize(
    "argv, words",
    [
        (["table", "nope", *SMALL], "unknown block 'nope'"),
        (["table", "isa", *SMALL, "--format", "xml"], "unknown format 'xml'"),
        (["table", "isa", *SMALL, "--gpu", "b999"], "unknown GPU 'b999'"),
        (["table", "criss_cross", *SMALL, "--value-channels", "8"], "criss_cross needs value_channels"),
        (["table", "isa", "--size", "0x4", "--channels", "32"], "size must be positive"),
        (["table", "isa", "--size", "16x16", "--channels", "32", "--mode", "eval"], "invalid choice"),
    ],
)
def test_bad_input_one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = _run(capsys, argv)
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and words in err, err


def test_out_file_and_cpu_latency_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sub" / "t.csv"
    code, out, _ = _run(
        capsys,
        [
            "table",
            "dense",
            "isa",
            "--size",
            "8x8",
            "--channels",
            "16",
            "--device",
            "cpu",
            "--format",
            "csv",
            "--out",
            str(path),
        ],  # fmt: skip
    )
    assert code == 0 and out == ""
    rows = tbl.read_csv(path.read_text())
    for r in rows:  # never a timing assertion: present, positive, with its spread
        assert r["latency_ms"] > 0 and r["latency_iqr_ms"] >= 0 and r["latency_ms_vs_dense"] > 0
    assert rows[0]["latency_ms_vs_dense"] == 1.0
    for r in rows:  # at least 7 samples behind each latency; isa's ratio to dense timed interleaved
        assert r["latency_samples"] >= 7 and isinstance(r["latency_flags"], str)
    assert rows[0]["latency_ms_vs_dense_iqr"] == 0.0 and rows[1]["latency_ms_vs_dense_iqr"] >= 0


def test_interleaved_ratio_and_flags_rendered() -> None:
    m = {"target": "isa", "options": {}, "latency_ms_inference": 2.0, "latency_iqr_ms_inference": 0.5,
         "latency_samples_inference": 7, "latency_flags_inference": "noisy contended",
         "latency_ratio_inference": 0.25, "latency_ratio_iqr_inference": 0.05}  # fmt: skip
    base = {"target": "dense", "options": {}, "latency_ms_inference": 4.0, "latency_iqr_ms_inference": 0.1,
            "latency_samples_inference": 7, "latency_flags_inference": ""}  # fmt: skip
    rows = tbl.rows([base, m], base, "inference", latency=True)
    assert rows[1]["latency_ms_vs_dense"] == 0.25  # the per-round ratio's median, not 2.0 / 4.0 = 0.5
    assert rows[1]["latency_ms_vs_dense_iqr"] == 0.05 and rows[1]["latency_samples"] == 7
    text = tbl.markdown(rows)
    assert "2.000 (noisy contended)" in text and "IQR 0.050 (noisy: > 10%)" in text
    assert tbl.read_csv(tbl.to_csv(rows))[1]["latency_flags"] == "noisy contended"
