"""Sweep specs: TOML grids -> ordered, duplicate-free configurations; overrides, shards, errors."""

from __future__ import annotations

import pytest

from isaprof import targets as blocks
from isaprof.config import Config
from isaprof.studies.factorize import candidate_factors
from isaprof.studies.sweep import expand, load_configs, parse_shard, select, shard
from isaprof.studies.sweep.spec import SweepConfig, parse_size
from tests import REPO

SWEEPS = REPO / "reference" / "sweeps"


def grid(**kw):
    return {"blocks": ["dense"], "sizes": ["8x8"], "channels": [16], **kw}


def test_product_size_and_order():
    cfgs = expand([grid(blocks=["dense", "axial"], sizes=["8x8", "4x6"], modes=["inference", "train"])])
    # 2 blocks x 2 sizes x 2 impls (both offer naive, sdpa) x 2 modes
    assert len(cfgs) == 16
    assert [c.block for c in cfgs[:8]] == ["dense"] * 8  # blocks outermost, in the grid's order
    assert [(c.height, c.width) for c in cfgs[:8:4]] == [(8, 8), (4, 6)]
    assert cfgs == expand(
        [grid(blocks=["dense", "axial"], sizes=["8x8", "4x6"], modes=["inference", "train"])]
    )


def test_options_only_for_blocks_that_take_them():
    cfgs = expand([grid(blocks=["dense", "isa", "criss_cross"], factors=["2x2", "4x2"], recurrences=[1, 2])])
    by = {b: [c for c in cfgs if c.block == b] for b in ("dense", "isa", "criss_cross")}
    assert all(c.options == () for c in by["dense"])
    assert sorted({dict(c.options)["factor"] for c in by["isa"]}) == [(2, 2), (4, 2)]
    assert {dict(c.options)["recurrence"] for c in by["criss_cross"]} == {1, 2}
    # every option of the block is present (defaults filled): the store key sees one spelling
    assert all(set(dict(c.options)) == set(blocks.spec("isa").options) for c in by["isa"])
    assert all("factor" not in dict(c.options) for c in by["criss_cross"])
    # criss_cross offers naive only: the impls default ("all") gives it naive only, isa both
    assert {c.impl for c in by["criss_cross"]} == {"naive"}
    assert {c.impl for c in by["isa"]} == {"naive", "sdpa"}


def test_defaults_resolved_and_duplicates_removed():
    s = blocks.spec("dense")
    a = grid(impls=["naive"])
    b = grid(impls=["naive"], key_channels=[s.default_key_channels(16)], latency="fixed")
    cfgs = expand([a, b])
    assert len(cfgs) == 1  # same configuration spelled twice
    assert cfgs[0].key_channels == s.default_key_channels(16)
    assert cfgs[0].value_channels == s.default_value_channels(16)
    assert cfgs[0].latency == "quick"  # first occurrence kept


def test_backends_apply_to_sdpa_only():
    cfgs = expand([grid(backends=["math", "flash"])])
    assert sorted((c.impl, c.backend or "") for c in cfgs) == [
        ("naive", ""),
        ("sdpa", "flash"),
        ("sdpa", "math"),
    ]


def test_all_factors_is_the_factorize_listing():
    cfgs = expand([grid(blocks=["isa"], sizes=["13x7"], factors="all", impls=["naive"])])
    assert [dict(c.options)["factor"] for c in cfgs] == candidate_factors((13, 7))


def test_skip_if_unavailable_marks_real_devices_only():
    cfgs = expand([grid(devices=["meta", "cuda"], skip_if_unavailable=True, impls=["naive"])])
    assert [(c.device, c.optional) for c in cfgs] == [("meta", False), ("cuda", True)]


@pytest.mark.parametrize(
    "bad, needle",
    [
        (grid(blocks=["nope"]), "unknown block 'nope'"),
        (grid(sizes=["8by8"]), "size must look like 'HxW'"),
        (grid(sizes=["0x8"]), "positive"),
        (grid(channels=[0]), "'channels' must hold positive integers"),
        (grid(devices=["tpu"]), "'devices': 'tpu' not allowed"),
        (grid(modes=["eval"]), "'modes': 'eval' not allowed"),
        (grid(impls=["flash"]), "impl(s) flash not offered"),
        (grid(factor=["2x2"]), "unknown key(s) factor"),
        (grid(latency="slow"), "latency must be one of fixed, quick or 'none'"),
        (grid(backends=["fast"]), "'backends': 'fast' unknown; allowed: math, flash"),
        (grid(options={"factr": [1]}), "no registered block takes option 'factr'"),
        (grid(blocks=["isa"], factors=["2"]), None),  # "2" = 2x2: fine
        ({"blocks": ["dense"], "sizes": ["8x8"]}, "needs 'blocks', 'sizes' and 'channels'"),
    ],
)
def test_spec_errors_name_the_problem(bad, needle):
    if needle is None:
        assert dict(expand([bad])[0].options)["factor"] == (2, 2)
        return
    with pytest.raises(ValueError, match="grid 1: .*" + needle.replace("(", r"\(").replace(")", r"\)")):
        expand([bad])


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_configs(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[[grid]\n")
    with pytest.raises(ValueError, match="invalid TOML"):
        load_configs(tmp_path / "bad.toml")
    (tmp_path / "empty.toml").write_text("[sweep]\nname = 'x'\n")
    with pytest.raises(ValueError, match=r"at least one \[\[grid\]\]"):
        load_configs(tmp_path / "empty.toml")


def test_select_filters_and_rejects_absent_values():
    cfgs = expand([grid(blocks=["dense", "isa"], sizes=["8x8", "4x4"], impls=["naive"])])
    kept = select(cfgs, blocks=["isa"], sizes=[(4, 4)])
    assert [(c.block, c.height) for c in kept] == [("isa", 4)]
    with pytest.raises(ValueError, match=r"--sizes 5x5: not in the sweep \(it has 8x8, 4x4\)"):
        select(cfgs, sizes=[(5, 5)])
    with pytest.raises(ValueError, match="--devices cuda"):
        select(cfgs, devices=["cuda"])


def test_shards_partition_the_sweep():
    cfgs = [
        SweepConfig(
            Config(block="dense", batch=1, channels=8, key_channels=4, value_channels=4, height=i, width=i)
        )
        for i in range(1, 12)
    ]
    parts = [shard(cfgs, k, 3) for k in (1, 2, 3)]
    assert sorted((c for p in parts for c in p), key=cfgs.index) == cfgs  # disjoint, complete
    assert [len(p) for p in parts] == [4, 4, 3]
    assert parts[1][0] == cfgs[1]
    assert parse_shard("2/3") == (2, 3)
    for text in ("0/3", "4/3", "2-3", "a/b"):
        with pytest.raises(ValueError, match="K/N with 1 <= K <= N"):
            parse_shard(text)


def test_parse_size_forms():
    assert parse_size("97x65") == (97, 65)
    assert parse_size(32) == (32, 32)
    assert parse_size([3, 5]) == (3, 5)
    with pytest.raises(ValueError, match="positive"):
        parse_size([3, -5])


@pytest.mark.parametrize("name", ["tiny.toml", "report.toml"])
def test_reference_sweeps_expand(name):
    cfgs = load_configs(SWEEPS / name)
    assert len(cfgs) == len(set(cfgs)) > 0
    if name == "report.toml":
        meta = {c.block for c in cfgs if c.device == "meta"}
        assert meta == set(blocks.names())  # covers every registered block
        assert max(c.height for c in cfgs if c.device == "meta") >= 256
        assert max(c.height for c in cfgs if c.device == "cpu") >= 96
