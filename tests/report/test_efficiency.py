"""The report's opening section: the efficiency tables from ``table_<H>x<W>.json`` and findings computed
from the results (crossovers, ISA factor optimum, claims), none typed. Torch-free, synthetic files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from isaprof.report import efficiency, tables
from isaprof.report.data import COLUMNS, read_results
from isaprof.results import reproduction
from isaprof.studies import table as tbl


def _rows(block: str, metric: str, sizes: list[int], values: list[float], **extra: object) -> list[dict]:
    base = {c: "" for c in COLUMNS}
    base.update(batch=1, channels=512, key_channels=256, value_channels=256, impl="naive", dtype="float32",
                device="meta", mode="inference", status="ok", options="{}", path="reference")  # fmt: skip
    return [
        {
            **base,
            "block": block,
            "height": n,
            "width": n,
            "metric": metric,
            "measured": v,
            "analytic": v,
            **extra,
        }
        for n, v in zip(sizes, values, strict=True)
    ]


def _results(tmp: Path) -> pd.DataFrame:
    sizes = [16, 32, 64, 128]
    rows = _rows("dense", "macs", sizes, [10, 40, 160, 640])
    rows += _rows("isa", "macs", sizes, [20, 45, 100, 200], factor="8x8")  # cheaper from 64x64
    rows += _rows("linear", "macs", sizes, [1, 2, 4, 8])  # always
    grid = {"8x8": 300e9, "4x4": 240e9, "2x2": 400e9, "1x1": 900e9}  # 4x4 saves 20% over 8x8
    for f, v in grid.items():  # options carry the factor, as profile writes them (one configuration each)
        ph, pw = f.split("x")
        opts = f'{{"factor": [{ph}, {pw}], "masked": false}}'
        rows += _rows("isa", "macs", [97], [v], factor=f, options=opts)
    path = tmp / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return read_results(path)


def _write_tables(tmp: Path) -> list[dict]:
    meas = [
        {"target": "dense", "params": 100, "flops_inference": 4e9, "peak_bytes_inference": 2**21},
        {
            "target": "isa",
            "options": {"factor": (8, 8)},
            "params": 200,
            "flops_inference": 1e9,
            "peak_bytes_inference": 2**20,
        },  # fmt: skip
    ]
    rows = tbl.rows(meas, meas[0], "inference")
    for n in (97, 128):
        setting = {"size": [n, n], "channels": 512, "batch": 1, "mode": "inference", "device": "meta"}
        (tmp / f"table_{n}x{n}.json").write_text(tbl.to_json(rows, setting))
    return rows


def test_section_tables_then_findings_from_data(tmp_path: Path) -> None:
    df = _results(tmp_path)
    rows = _write_tables(tmp_path)
    cc = "Huang et al., CCNet (ICCV 2019), abstract: "
    rep = pd.DataFrame(
        [
            {"id": "claim-a", "metric": "ratio", "unit": "x", "published": 11, "ours": 5.95, "ratio": 0.541,
             "reason": "the CUDA op stores less", "source": cc + "'needs 11x less'"},
            {"id": "claim-b", "metric": "reduction", "unit": "%", "published": 85, "ours": 85.4,
             "ratio": 1.004,
             "reason": "", "source": cc + "'about 85% fewer'"},
            {"id": "fig-a", "metric": "flops", "unit": "GFLOP", "published": 16.5, "ours": 16.54,
             "ratio": 1.002, "reason": "", "source": "x"},
        ]
    )  # fmt: skip
    rep.to_csv(tmp_path / "reproduction.csv", index=False)
    notes: list[str] = []
    text = efficiency.section(tmp_path, df, notes)
    assert notes == []
    assert text.index("### 97x97") < text.index("### 128x128") < text.index("### Findings")
    assert tbl.markdown(rows) in text and "FLOPs = 2 x MACs" in text
    assert "1x512x97x97: CCNet's feature map of a 769x769 crop" in text
    # crossovers as tables.crossovers computes them
    assert "**isa 8x8**: FLOPs from 64x64" in text and "**linear**: FLOPs at every size swept" in text
    cx = tables.crossovers(df)
    assert cx[cx["block"] == "isa 8x8"]["crossover_hw"].iloc[0] == "64x64"
    # the factor optimum and its saving over 8x8, from the grid
    assert "at 97x97 (C=512)" in text and "by FLOPs 4x4: 480 GFLOP, 20.0% less than 8x8's 600 GFLOP" in text
    # claims: the one outside 10% with its reason, the one inside
    assert 'Does not hold here: Huang et al., CCNet (ICCV 2019): "needs 11x less"' in text
    assert "the CUDA op stores less" in text
    assert 'Holds here: Huang et al., CCNet (ICCV 2019): "about 85% fewer"' in text
    # the reproduction's one summary, over every row (claims included), quoted as results.reproduction has it
    summary = reproduction.summarize(rep.to_dict("records"))
    assert summary.sentence() == (
        "2 of 3 published figures are matched within 10% (2 within 1%); not: claim-a (ratio 0.54)."
    )
    assert summary.sentence()[:-1] + " (reasons in the reproduction section)." in text


def test_section_missing_files_is_a_note_not_an_error(tmp_path: Path) -> None:
    notes: list[str] = []
    assert efficiency.section(tmp_path, None, notes) == ""
    assert len(notes) == 2 and "table_97x97.json" in notes[0]


def test_palette_one_style_per_block_and_hidden_curves_detected() -> None:
    import numpy as np

    from isaprof.report import plots

    styles = [plots.style(b) for b in plots.STYLES]
    assert len(set(styles)) == len(styles)  # every built-in block its own colour AND marker
    assert len({c for c, _ in styles}) == len(styles) and len({m for _, m in styles}) == len(styles)
    assert plots.style("my_block") == plots.style("my_block") and plots.colour("isa") == plots.style("isa")[0]
    n = np.array([256, 1024, 4096, 9409])
    dense = np.array([0.41, 2.4, 22.0, 103.0])
    close = np.array([0.40, 2.35, 21.4, 100.5])  # within 3% at every size: drawn beside dense
    assert plots.overlaps(n, close, n, dense)
    non_local = np.array([0.34, 2.2, 21.4, 100.5])  # 17% and 9% below dense at the two smallest sizes
    assert not plots.overlaps(n, non_local, n, dense)
    assert not plots.overlaps(n, dense / 2, n, dense)
