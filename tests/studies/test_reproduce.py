"""`isaprof reproduce` on meta: a row per published figure with ours beside it; source formulas re-evaluated.

One full run (fake tensors only: about 7 s of CPU) is shared by the tests of this module.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
from pathlib import Path

import pytest

from isaprof.cli import main
from isaprof.results import reproduction
from isaprof.studies import reproduce as rp


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """``isaprof reproduce --out DIR`` (meta, the default) once for the module: DIR and its stdout lines."""
    out, printed = tmp_path_factory.mktemp("rep"), io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["reproduce", "--out", str(out), "--no-training"]) == 0  # networks: the slow test
    return out, printed.getvalue().splitlines()


@pytest.fixture(scope="module")
def table(run: tuple[Path, list[str]]) -> dict[str, dict[str, str]]:
    with (run[0] / "reproduction.csv").open() as f:
        return {r["id"]: r for r in csv.DictReader(f)}


def test_one_row_per_published_figure(table: dict[str, dict[str, str]]) -> None:
    figures, ratios = rp.load_published()
    assert list(table) == [f["id"] for f in figures] + [r["id"] for r in ratios]
    for fig in figures:
        row = table[fig["id"]]
        assert float(row["published"]) == fig["value"]
        assert row["ours"] != "" and float(row["ours"]) > 0, fig["id"]
        assert float(row["ratio"]) == pytest.approx(float(row["ours_as_source"]) / fig["value"], rel=1e-5)
        assert row["provenance"] in ("read", "recalled", "analytic")


def test_measured_values_from_shapes(table: dict[str, dict[str, str]]) -> None:
    # 3x3 conv 2048->512 at 128x128: 2 x 16384 x 2048 x 9 x 512 FLOPs = 309.237645312 GFLOP (bias not counted)
    assert float(table["openseg-conv3x3"]["ours"]) == pytest.approx(309.2376, abs=1e-3)
    # affinities at 128x128, fp32 (MiB): dense 16384^2 x 4; ISA (8,8): (64 x 256^2 + 256 x 64^2) x 4
    assert float(table["affinity-dense-128"]["ours"]) == 1024.0
    assert float(table["affinity-isa-128"]["ours"]) == 20.0
    assert float(table["affinity-cc-128"]["ours"]) == 16384 * 255 * 4 / 2**20  # 15.9375
    # CCNet: R=2 criss-cross at 97x97, Ck=64, Cv=512 per pass: projections 9409 x 512 x (64+64+512) MACs,
    # energies and aggregation 9409 x 194 x (64 + 512) MACs (H + W energies, the centre masked)
    per_pass = 9409 * 512 * 640 + 9409 * 194 * 576
    assert float(table["ccnet-cc-flops"]["ours"]) == pytest.approx(2 * 2 * per_pass / 1e9, rel=1e-5)


def test_source_formula_reproduces_published(table: dict[str, dict[str, str]]) -> None:
    # openseg cost_helper.py prints these with one decimal: our re-evaluation must round to the same
    for fid in ("openseg-conv3x3", "openseg-sa", "openseg-isa", "openseg-cc"):
        row = table[fid]
        assert round(float(row["source_formula"]), 1) == float(row["published"]), fid


def test_ratios_in_same_run(table: dict[str, dict[str, str]]) -> None:
    nl, cc = float(table["ccnet-nl-memory"]["ours"]), float(table["ccnet-cc-memory"]["ours"])
    assert float(table["ccnet-memory-ratio"]["ours"]) == pytest.approx(nl / cc, rel=1e-5)
    f_nl, f_cc = float(table["ccnet-nl-flops"]["ours"]), float(table["ccnet-cc-flops"]["ours"])
    assert float(table["ccnet-flops-reduction"]["ours"]) == pytest.approx(100 * (1 - f_cc / f_nl), rel=1e-5)


def test_prints_its_summary(run: tuple[Path, list[str]], table: dict[str, dict[str, str]]) -> None:
    out_dir, out = run
    rows = list(table.values())
    matched = sum(abs(float(r["ratio"]) - 1) <= 0.1 for r in rows)
    exact = sum(abs(float(r["ratio"]) - 1) <= 0.01 for r in rows)
    head = f"{matched} of {len(rows)} published figures are matched within 10% ({exact} within 1%)"
    assert out[0].startswith(head)
    # the same sentence the report quotes, then one line per miss, then the table's path
    assert out[0] == reproduction.read(out_dir / "reproduction.csv").sentence()
    assert len(out) == 1 + (len(rows) - matched) + 1 and out[-1] == f"table: {out_dir / 'reproduction.csv'}"
    assert any(line.startswith("  ccnet-nl-memory: ours ") and "(ratio 0.497)" in line for line in out)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="device must be"):
        rp.reproduce(tmp_path, device="cuda")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[figure]]\nid = "x"\nsource = "s"\n')
    with pytest.raises(ValueError, match="lacks metric"):
        rp.load_published(bad)
    with pytest.raises(ValueError, match="build.kind must be one of"):
        rp.make_model({"kind": "resnet", "size": [8, 8], "channels": 8})
    with pytest.raises(ValueError, match="unknown rough formula"):
        rp.rough_flops("aspp", {"size": [8, 8], "channels": 8})


def test_training_memory_side_table(tmp_path) -> None:  # noqa: ANN001
    """A [[training_memory]] entry of the tests' own small network: predicted, its parts summing to it."""
    toml = tmp_path / "published.toml"
    toml.write_text(
        '[[training_memory]]\nid = "tiny"\nsource = "here"\ntarget = "tests.measure.test_training:Logits"\n'
        'size = [16, 16]\nchannels = 3\nbatch = 2\nunit = "MiB"\nvalue = 1\nprovenance = "read"\n'
        'recipe = "mmseg-2020"\n'
        "options = {}\n"
    )
    path = rp.write_training_memory(tmp_path, toml)
    with path.open() as f:
        (row,) = list(csv.DictReader(f))
    parts = ("resident", "backbone", "heads", "logits_loss", "backward", "allocator")
    assert abs(sum(float(row[k]) for k in parts) - float(row["predicted"])) < 1e-4
    assert float(row["ratio"]) == pytest.approx(float(row["predicted"]) / 1)
    assert row["phase"] == "backward"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert rp.write_training_memory(tmp_path, empty) is None


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ISAPROF_TEST_SLOW"), reason="published sizes: ISAPROF_TEST_SLOW=1")
def test_published_training_memory_within_ten_percent(tmp_path) -> None:  # noqa: ANN001
    path = rp.write_training_memory(tmp_path)
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["target"] for r in rows] == ["fcn_r50_d8", "pspnet_r50_d8", "deeplabv3_r50_d8", "isanet_r50_d8"]
    for r in rows:
        assert abs(float(r["ratio"]) - 1) <= 0.10, r["id"]
        assert abs(float(r["ratio"]) - 1) <= 0.05 or r["reason"], r["id"]  # a miss above 5% is explained
