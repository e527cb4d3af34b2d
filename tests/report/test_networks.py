"""report.networks: the whole-networks section from a synthetic networks.csv."""

from __future__ import annotations

from pathlib import Path

import pytest

from isaprof.report.networks import networks_section

CSV = """network,dataset,height,width,num_classes,params,flops,peak_bytes,head_share
isanet_r50_d8,cityscapes,1024,2048,19,37707398,2417462607872,1207959552,0.332
fcn_r50_d8,cityscapes,1024,2048,19,49497734,3161565691904,2415919104,0.489
isanet_r50_d8,ade20k,512,512,150,37808268,299913707520,316669952,0.327
"""


def test_section_tables(tmp_path: Path) -> None:
    (tmp_path / "networks.csv").write_text(CSV)
    notes: list[str] = []
    text = networks_section(tmp_path, tmp_path / "out", notes)
    assert notes == [] and (tmp_path / "out" / "tables" / "networks.csv").is_file()
    assert text.startswith("## Whole networks at the published test sizes")
    city = text.index("### Cityscapes, 1024x2048 whole image, 19 classes")
    ade = text.index("### ADE20K, 512x512 whole image, 150 classes")
    assert city < ade
    # params in millions, GFLOP (FLOPs / 1e9), MiB (2^20 B), head share in percent; 3 significant digits
    assert "| isanet_r50_d8 | 37.7 | 2,417 | 1,152 | 33.2 |" in text[city:ade]
    assert "| fcn_r50_d8 | 49.5 | 3,162 | 2,304 | 48.9 |" in text[city:ade]
    assert "| isanet_r50_d8 | 37.8 | 300 | 302 | 32.7 |" in text[ade:]
    assert "fcn_r50_d8" not in text[ade:]


def test_section_missing_or_bad(tmp_path: Path) -> None:
    notes: list[str] = []
    assert networks_section(tmp_path, tmp_path, notes) == "" and "networks.csv" in notes[0]
    assert f"`isaprof networks {tmp_path}`" in notes[0]  # the command that writes it
    (tmp_path / "networks.csv").write_text("network,dataset\nx,y\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        networks_section(tmp_path, tmp_path, notes)
