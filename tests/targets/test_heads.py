"""targets.heads (the published heads), studies.heads (heads.csv, `isaprof heads`) and the report's heads
section."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from isaprof.measure import count_flops, step
from isaprof.report.heads import heads_section
from isaprof.studies.heads import head_share, measure_head_shares
from isaprof.targets import build, registry
from isaprof.targets.heads import HEADS, build_head, register_heads

B, CIN, C, H, W = 1, 12, 8, 6, 4
N = H * W


def _params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(c_in: int, c_out: int, k: int) -> int:
    """MACs of a k x k same-padded conv over the H x W map (every tap counted, padding included)."""
    return N * c_in * c_out * k * k


# Each head's MACs beyond its block, by hand (B = 1, in = 12, C = 8, 6x4 map):
# isa / dense (openseg): 3x3 in->C, 1x1 fusion 2C->C.  rcca: conva 3x3 in->C, convb 3x3 C->C,
# bottleneck 3x3 (in+C)->C.  nl (mmseg): convs 3x3 in->C, 3x3 C->C, conv_cat 3x3 (in+C)->C.
EXTRA_MACS = {
    "isa_head": conv(CIN, C, 3) + conv(2 * C, C, 1),
    "dense_head": conv(CIN, C, 3) + conv(2 * C, C, 1),
    "rcca_head": conv(CIN, C, 3) + conv(C, C, 3) + conv(CIN + C, C, 3),
    "nl_head": conv(CIN, C, 3) + conv(C, C, 3) + conv(CIN + C, C, 3),
}
# conv weights (+ the openseg 3x3 conv's bias) + BN (2 per channel, per conv)
EXTRA_PARAMS = {
    "isa_head": CIN * C * 9 + C + 2 * C * C + 2 * 2 * C,
    "dense_head": CIN * C * 9 + C + 2 * C * C + 2 * 2 * C,
    "rcca_head": CIN * C * 9 + C * C * 9 + (CIN + C) * C * 9 + 3 * 2 * C,
    "nl_head": CIN * C * 9 + C * C * 9 + (CIN + C) * C * 9 + 3 * 2 * C,
}
OPTIONS = {"isa_head": {"factor": (2, 2)}, "rcca_head": {"recurrence": 2}}


@pytest.mark.parametrize("name", list(HEADS))
def test_head_is_block_plus_its_convs(name: str) -> None:
    torch.manual_seed(0)
    inner, _ = HEADS[name]
    head = build_head(name, C, in_channels=CIN, **OPTIONS.get(name, {}))
    block = build(inner, C, **OPTIONS.get(name, {}))
    x = torch.randn(B, CIN, H, W)  # (B, C_in, H, W)
    assert head.in_channels == CIN
    assert head(x).shape == (B, C, H, W)
    assert _params(head) == _params(block) + EXTRA_PARAMS[name]
    assert head.get_submodule(head.block_module).block_name == inner  # what studies.heads attributes
    head_macs = count_flops(step(head, x, "inference")).macs
    block_macs = count_flops(step(block, torch.randn(B, C, H, W), "inference")).macs
    assert head_macs == block_macs + EXTRA_MACS[name]


def test_default_in_channels_keeps_the_block_contract() -> None:
    head = build_head("isa_head", C, factor=(2, 2))
    assert head(torch.randn(2, C, H, W)).shape == (2, C, H, W)
    with pytest.raises(ValueError, match="value_channels"):
        build_head("rcca_head", C, value_channels=C // 2)
    with pytest.raises(ValueError, match="known heads"):
        build_head("nope", C)


def test_register_heads_makes_them_targets() -> None:
    assert register_heads() == list(HEADS) and register_heads() == list(HEADS)  # idempotent
    s = registry.spec("isa_head")
    assert s.impls == registry.spec("isa").impls
    assert s.options == {"in_channels": None, "factor": (8, 8), "masked": False}
    assert registry.spec("rcca_head").default_key_channels(512) == 64
    m = registry.build("nl_head", C, in_channels=CIN)
    assert m(torch.randn(1, CIN, H, W)).shape == (1, C, H, W)


def test_head_share_rows_and_csv(tmp_path: Path) -> None:
    cfg = {"head": "isa_head", "size": (H, W), "in_channels": CIN, "channels": C, "key_channels": 4,
           "value_channels": 8, "options": {"factor": (2, 2)}, "source": "test"}  # fmt: skip
    rows = {(r["mode"], r["metric"]): r for r in head_share(cfg, "inference")}
    macs = rows[("inference", "macs")]
    block = count_flops(step(build("isa", C, 4, 8, factor=(2, 2)), torch.randn(1, C, H, W), "inference")).macs
    assert macs["block_value"] == block
    assert macs["head_value"] == block + EXTRA_MACS["isa_head"]
    assert macs["share"] == block / macs["head_value"]
    peak = rows[("inference", "peak_bytes")]
    # inference: the head's peak is its first conv (3x3, 12 -> 8 on the 6x4 map) inside ATen's native kernel:
    # its unfolding (12 * 9, 24) fp32 = 10368 B beside its (8, 24) output = 768 B, before the block runs
    assert (peak["head_value"], peak["block_value"], peak["share"]) == (10368 + 768, 0, 0.0)
    trained = {r["metric"]: r for r in head_share(cfg, "train")}["peak_bytes"]
    assert 0 < trained["share"] <= 1  # train: the block's saved activations are live at the head's peak
    path = measure_head_shares(tmp_path, (cfg,))
    df = pd.read_csv(path)
    assert len(df) == 2 * 3 and set(df["metric"]) == {"macs", "flops", "peak_bytes"}
    notes: list[str] = []
    text = heads_section(tmp_path, tmp_path / "out", notes)
    assert "## Blocks in their heads" in text and "| isa_head | isa | 12x6x4 |" in text and notes == []
    assert (tmp_path / "out" / "tables" / "heads.csv").is_file()


def test_heads_command_writes_heads_csv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from isaprof.cli import main
    from isaprof.studies import heads

    cfg = {"head": "nl_head", "size": (H, W), "in_channels": CIN, "channels": C, "key_channels": 4,
           "value_channels": 4, "options": {}, "source": "test"}  # fmt: skip
    monkeypatch.setattr(heads, "HEAD_CONFIGS", (cfg,))
    assert main(["heads", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "heads.csv")
    df = pd.read_csv(tmp_path / "heads.csv")
    assert list(df["mode"]) == ["inference"] * 3 + ["train"] * 3 and set(df["block"]) == {"non_local"}
    at_conv = (df["mode"] == "inference") & (df["metric"] == "peak_bytes")  # a head conv's unfolding
    assert (df.loc[~at_conv, "share"] > 0).all() and (df["share"] <= 1).all()
    assert (df.loc[at_conv, "share"] == 0).all()


def test_heads_section_missing_or_bad(tmp_path: Path) -> None:
    notes: list[str] = []
    assert heads_section(tmp_path, tmp_path, notes) == "" and "heads.csv" in notes[0]
    assert f"`isaprof heads {tmp_path}`" in notes[0]  # the command that writes it
    (tmp_path / "heads.csv").write_text("head,block\nx,y\n")
    with pytest.raises(ValueError, match="lacks the columns"):
        heads_section(tmp_path, tmp_path, notes)
