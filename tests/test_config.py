"""The one configuration type: defaults, one-line validation, the keyword round trip, the row schema, and
the Python API's device / dtype / latency spellings."""

from __future__ import annotations

import pytest
import torch

import isaprof
from isaprof.config import COLUMNS, UNITS, Config, row


def test_make_fills_every_default_and_two_spellings_are_equal():
    a = Config.make("isa", size=(97, 97), channels=512)
    b = Config.make("isa", size=[97, 97], channels=512, key_channels=256, factor=[8, 8], masked=False)
    assert a == b and hash(a) == hash(b)
    assert (a.key_channels, a.value_channels, a.option("factor"), a.batch) == (256, 256, (8, 8), 1)
    assert Config.make("criss_cross", size=(8, 8), channels=64).key_channels == 8  # the block's C / 8
    assert Config.make(**a.kwargs()) == a  # the keyword form round-trips
    assert a.replace(height=33, factor=(4, 4)).size == (33, 97)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(size=(0, 4)), "size must be two positive integers"),
        (dict(batch=0), "batch must be a positive integer"),
        (dict(mode="fast"), "unknown mode 'fast'; allowed: inference, train"),
        (dict(device="tpu"), "unknown device 'tpu'; allowed: meta, cpu, cuda, cuda:N"),
        (dict(dtype="int8"), "unknown dtype 'int8'; allowed: float32, float64, float16, bfloat16"),
        (dict(impl="flash"), "unknown impl of block 'isa' 'flash'; allowed: naive, sdpa"),
        (dict(backend="math"), "backend 'math' applies to impl 'sdpa' only"),
        (dict(impl="sdpa", backend="efficient"), "sdpa backend 'efficient' needs cuda"),
        (dict(path="fast", mode="train"), "the fast path is inference-only"),
        (dict(groups=4), "block 'isa' has no option(s) groups; its options: factor (default (8, 8))"),
        (dict(channels=-1), "channels must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_naming_what_is_allowed(kw, words):
    with pytest.raises(ValueError) as e:
        Config.make("isa", **{"size": (8, 8), "channels": 16, **kw})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_torch_spellings_and_gpu_index_are_accepted():
    cfg = Config.make("dense", size=(4, 4), channels=8, device=torch.device("cpu"), dtype=torch.float16)
    assert (cfg.device, cfg.dtype) == ("cpu", "float16")
    gpu = Config.make("dense", size=(4, 4), channels=8, device="cuda:1")
    assert gpu.device == "cuda:1" and gpu.device_type == "cuda"
    rec = isaprof.profile("dense", size=(4, 4), channels=8, device=torch.device("cpu"), dtype=torch.float64,
                          latency="none")  # fmt: skip
    assert rec.latency is None and rec.config.dtype == "float64"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA requested but torch reports no CUDA device"):
            isaprof.profile("dense", size=(4, 4), channels=8, device="cuda:0")


def test_row_follows_the_schema_with_units_from_one_place():
    cfg = Config.make("isa", size=(9, 11), channels=16, factor=(2, 2))
    r = row(cfg, "macs", 10, 10, env={"torch": "x", "host": "h"}, padded=(10, 12))
    assert list(r) == COLUMNS and r["unit"] == UNITS["macs"] == "MAC"
    assert (r["factor"], r["padded_height"], r["host"], r["device_name"]) == ("2x2", 10, "h", None)
    with pytest.raises(ValueError, match="allowed: ok, oom, error, skipped"):
        row(cfg, "macs", 1, 1, env={}, status="failed")


def test_profile_takes_a_config_alone():
    cfg = Config.make("dense", size=(6, 5), channels=8)
    assert isaprof.profile(cfg).macs == isaprof.profile("dense", size=(6, 5), channels=8).macs
    with pytest.raises(ValueError, match="give a Config or keyword arguments, not both"):
        isaprof.profile(cfg, mode="train")
