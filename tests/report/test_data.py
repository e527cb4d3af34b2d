"""Slicing tidy rows into the report's scaling lines (:func:`isaprof.report.data.series`)."""

from __future__ import annotations

import pandas as pd

from isaprof.report import data
from tests.report.synthetic import synthetic


def _reference(rows: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
    """series' contract written the slow way: a groupby, each group's first row per N sorted by N, then
    a block's one-size option sets dropped where another of its lines spans several sizes."""
    lines = {
        k: g.drop_duplicates("N").sort_values("N")
        for k, g in rows.groupby([*data.SERIES, "options"], sort=True)
    }
    spans: dict[str, int] = {}
    for k, g in lines.items():
        spans[k[0]] = max(spans.get(k[0], 0), len(g))
    return {k: g for k, g in lines.items() if len(g) >= 2 or spans[k[0]] < 2}


def _rows() -> pd.DataFrame:
    df = synthetic()
    df["N"] = df["height"] * df["width"]
    for col in data.TEXT:
        df[col] = df[col].fillna("").astype(str)
    return df[(df["metric"] == "macs") & (df["status"] == "ok")]


def test_series_is_one_line_per_configuration_sorted_by_size_first_row_wins() -> None:
    rows = _rows()
    again = rows[rows["block"] == "dense"].assign(measured=-1.0)  # a second row at every dense size
    mixed = pd.concat([rows, again]).sample(frac=1.0, random_state=3)  # any order in, sorted out
    got, want = data.series(mixed), _reference(mixed)
    assert list(got) == list(want)
    for k in want:
        pd.testing.assert_frame_equal(got[k], want[k])
    dense = next(g for k, g in got.items() if k[0] == "dense")
    assert list(dense["N"]) == sorted(h * w for h, w in [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64),
                                                          (96, 96), (128, 128)])  # fmt: skip
    # isa's factor grid (one size each) is left out: its 4x4 line spans every size
    assert [data.variant(g) for k, g in got.items() if k[0] == "isa"] == ["4x4"]


def test_series_drops_rows_with_an_empty_key_like_a_groupby() -> None:
    rows = _rows().astype({"key_channels": float})
    rows.loc[rows.index[::5], "key_channels"] = float("nan")
    got, want = data.series(rows), _reference(rows)
    assert list(got) == list(want)
    for k in want:
        pd.testing.assert_frame_equal(got[k], want[k])
    assert data.series(rows.iloc[:0]) == {}
