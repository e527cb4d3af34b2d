"""studies.networks (networks.csv, `isaprof networks`): whole networks at the test sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from isaprof.studies import networks
from isaprof.studies.networks import SETTINGS, default_names, measure_networks, network_row

TINY = ({"dataset": "tiny", "size": (64, 64), "num_classes": 150},)
FEAT = 8 * 8  # the 64x64 input at output stride 8


def fcn_head_macs(classes: int) -> int:
    """FCNHead by hand at 8x8: convs 3x3 2048->512->512, conv_cat 3x3 (2048+512)->512, conv_seg 1x1."""
    return (2048 * 512 * 9 + 512 * 512 * 9 + 2560 * 512 * 9 + 512 * classes) * FEAT


def test_settings_and_names() -> None:
    assert [(s["dataset"], s["size"], s["num_classes"]) for s in SETTINGS] == [
        ("cityscapes", (1024, 2048), 19),
        ("ade20k", (512, 512), 150),
    ]
    names = default_names()
    assert len(names) == 16 and "isanet_r50_d8" in names and "ocrnet_r101_d8" in names
    assert all("_r50_" in n or "_r101_" in n for n in names)


def test_fcn_row_by_hand() -> None:
    row = network_row("fcn_r50_d8", TINY[0])
    assert row["head_macs"] == fcn_head_macs(150)
    assert row["head_share"] == row["head_macs"] / row["macs"] and 0.3 < row["head_share"] < 0.7
    assert row["flops"] == 2 * row["macs"] and row["head_modules"] == "decode_head"
    assert row["peak_bytes"] > 0 and (row["height"], row["width"], row["num_classes"]) == (64, 64, 150)
    cityscapes = network_row("fcn_r50_d8", {"dataset": "c", "size": (64, 64), "num_classes": 19})
    # 131 more classes: an output channel each in conv_seg (512 + bias) and the aux head's (256 + bias)
    assert row["params"] - cityscapes["params"] == 131 * (513 + 257)
    assert row["head_macs"] - cityscapes["head_macs"] == 131 * 512 * FEAT


def test_csv_and_cascade(tmp_path: Path) -> None:
    path = measure_networks(tmp_path, ["fcn_r50_d8", "ocrnet_r50_d8"], TINY)
    df = pd.read_csv(path)
    assert path == tmp_path / "networks.csv" and list(df.columns) == networks.COLUMNS
    assert list(df["network"]) == ["fcn_r50_d8", "ocrnet_r50_d8"]
    ocr = df.iloc[1]
    assert ocr["head_modules"] == "decode_head.0+decode_head.1"  # the FCN stage and the OCR stage, summed
    assert 0 < ocr["head_share"] < 1 and ocr["head_macs"] < ocr["macs"]
    # the backbone is the same: the rest of the network differs by the heads' MACs only (plus the resize)
    rest = df["macs"] - df["head_macs"]
    assert rest.iloc[0] == rest.iloc[1]


def test_networks_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from isaprof.cli import main

    monkeypatch.setattr(networks, "default_names", lambda: ["isanet_r50_d8"])
    monkeypatch.setattr(networks, "SETTINGS", TINY)
    assert main(["networks", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "networks.csv")
    df = pd.read_csv(tmp_path / "networks.csv")
    assert list(df["network"]) == ["isanet_r50_d8"] and (df["head_share"] > 0).all()
