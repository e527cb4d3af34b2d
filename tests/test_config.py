"""The one configuration type: defaults, one-line validation, the keyword round trip, the row schema, and
the Python API's device / dtype / latency spellings."""

from __future__ import annotations

import argparse
import ast
import csv
import dataclasses

import pytest
import torch

import isaprof
from isaprof.cli import _args
from isaprof.config import COLUMNS, SIZE_FIELDS, STATUSES, UNITS, Config, RunSettings, row, select, setting
from isaprof.profiling import guard
from isaprof.report import bounds as report_bounds
from isaprof.report import data as report_data
from isaprof.results import reader
from isaprof.results.reader import config_key, row_key
from isaprof.studies import baseline, gpu_check, heads
from isaprof.targets import configure, spec
from tests import REPO


def test_make_fills_every_default_and_two_spellings_are_equal():
    a = configure("isa", size=(97, 97), channels=512)
    b = configure("isa", size=[97, 97], channels=512, key_channels=256, factor=[8, 8], masked=False)
    assert a == b and hash(a) == hash(b)
    assert (a.key_channels, a.value_channels, a.option("factor"), a.batch) == (256, 256, (8, 8), 1)
    assert configure("criss_cross", size=(8, 8), channels=64).key_channels == 8  # the block's C / 8
    assert configure(**a.kwargs()) == a  # the keyword form round-trips
    assert Config.make(spec("isa"), **{k: v for k, v in a.kwargs().items() if k != "block"}) == a
    assert a.replace(spec("isa"), height=33, factor=(4, 4)).size == (33, 97)
    assert configure(a, height=33, factor=(4, 4)) == a.replace(spec("isa"), height=33, factor=(4, 4))


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
        configure("isa", **{"size": (8, 8), "channels": 16, **kw})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_torch_spellings_and_gpu_index_are_accepted():
    cfg = configure("dense", size=(4, 4), channels=8, device=torch.device("cpu"), dtype=torch.float16)
    assert (cfg.device, cfg.dtype) == ("cpu", "float16")
    gpu = configure("dense", size=(4, 4), channels=8, device="cuda:1")
    assert gpu.device == "cuda:1" and gpu.device_type == "cuda"
    rec = isaprof.profile("dense", size=(4, 4), channels=8, device=torch.device("cpu"), dtype=torch.float64,
                          latency="none")  # fmt: skip
    assert rec.latency is None and rec.config.dtype == "float64"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA requested but torch reports no CUDA device"):
            isaprof.profile("dense", size=(4, 4), channels=8, device="cuda:0")


def test_row_follows_the_schema_with_units_from_one_place():
    cfg = configure("isa", size=(9, 11), channels=16, factor=(2, 2))
    r = row(cfg, "macs", 10, 10, env={"torch": "x", "host": "h"}, padded=(10, 12))
    assert list(r) == COLUMNS and r["unit"] == UNITS["macs"] == "MAC"
    assert (r["factor"], r["padded_height"], r["host"], r["device_name"]) == ("2x2", 10, "h", None)
    with pytest.raises(ValueError, match="allowed: ok, oom, error, skipped"):
        row(cfg, "macs", 1, 1, env={}, status="failed")


def test_profile_takes_a_config_alone():
    cfg = configure("dense", size=(6, 5), channels=8)
    assert isaprof.profile(cfg).macs == isaprof.profile("dense", size=(6, 5), channels=8).macs
    with pytest.raises(ValueError, match="give a Config or keyword arguments, not both"):
        isaprof.profile(cfg, mode="train")


# -- one schema: every list of configuration fields is derived from the dataclass -------------------------
SCHEMA_NAMES = {f.name for f in dataclasses.fields(Config)} | {"size"}  # "size": height and width's keyword


def _is_split(node: ast.AST) -> bool:
    func = getattr(node, "func", None)
    return (
        isinstance(node, ast.Call)
        and isinstance(func, ast.Attribute)
        and func.attr == "split"
        and isinstance(func.value, ast.Constant)
        and isinstance(func.value.value, str)
    )


def _field_literals(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, schema names) of each list / tuple / set / dict literal (or "...".split()) naming five or
    more."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            words = [e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        elif isinstance(node, ast.Dict):
            words = [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
        elif _is_split(node):
            words = node.func.value.value.split()
        else:
            continue
        named = sorted(set(words) & SCHEMA_NAMES)
        if len(named) >= 5:
            out.append((node.lineno, named))
    return out


def test_no_module_but_config_lists_five_configuration_fields():
    package = REPO / "isaprof"
    found = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel != "config.py":
            hits = _field_literals(ast.parse(path.read_text(), filename=str(path)))
            if hits:
                found[rel] = hits
    assert not found, f"derive these from isaprof.config (dataclasses.fields, select): {found}"
    # the scan sees what it must: config.py itself holds the one list (the tidy row's other columns aside)
    assert _field_literals(ast.parse("KEYS = ['block', 'batch', 'channels', 'height', 'width']"))


@dataclasses.dataclass(frozen=True)
class StepConfig(Config):
    """A copy of the schema with one more field, as the training-step mode would add it."""

    optimizer: str = setting("sgd", grid="optimizers", flag=dict(flag="--optimizer", choices=("sgd", "adam")))


def test_a_new_field_reaches_the_columns_the_flags_the_reader_and_the_keyword_form():
    assert StepConfig.column_names() == [*Config.column_names(), "optimizer"]
    assert StepConfig.key_names() == [*Config.key_names(), "optimizer"]
    assert StepConfig.keywords() == [*Config.keywords(), "optimizer"]
    cfg = StepConfig.make(spec("isa"), size=(9, 11), channels=16, optimizer="adam", factor=(2, 2))
    r = row(cfg, "macs", 1, 1, env={})
    assert list(r) == [*StepConfig.column_names(), *COLUMNS[len(Config.column_names()) :]]
    assert r["optimizer"] == "adam" and cfg.kwargs()["optimizer"] == "adam"
    text = {k: "" if v is None else str(v) for k, v in r.items()}  # as csv reads it back
    assert StepConfig.from_row(text) == cfg
    assert Config.from_row(text) == Config(
        **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)}
    )
    assert StepConfig.from_row({**text, "optimizer": ""}).optimizer == "sgd"  # an older file: the default
    with pytest.raises(ValueError, match="unknown mode 'fast'"):
        StepConfig.make(spec("isa"), size=(9, 11), channels=16, optimizer="adam", mode="fast")
    parser = argparse.ArgumentParser()
    _args.add_schema_flags(parser, StepConfig)
    args = parser.parse_args(["--size", "9x11", "--channels", "16", "--optimizer", "adam", "--factor", "2x2"])
    got = StepConfig.from_args(args)
    assert list(got) == StepConfig.keywords() and (got["optimizer"], got["size"]) == ("adam", (9, 11))
    with pytest.raises(SystemExit):
        parser.parse_args(["--size", "9x11", "--channels", "16", "--optimizer", "lbfgs"])
    again = parser.parse_args(cfg.to_argv()[1:])  # the argv written from the configuration parses back
    assert StepConfig.make(spec("isa"), **StepConfig.from_args(again), factor=again.factor) == cfg
    assert "optimizers" in {f.metadata["grid"] for f in dataclasses.fields(StepConfig)}


def test_rows_of_the_committed_results_read_back_to_their_configuration():
    with (REPO / "reports" / "data" / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    seen = set()
    for r in rows:
        cfg = Config.from_row(r)
        assert row_key(cfg.to_row()) == row_key(r) == config_key(cfg)
        written = {k: "" if v is None else str(v) for k, v in cfg.to_row().items()}
        assert {k: written[k] for k in ("factor", "options", "backend", "path")} == {
            k: r[k] for k in ("factor", "options", "backend", "path")
        }
        seen.add(cfg.block)
    assert len(seen) >= 5
    with pytest.raises(ValueError, match="row has no 'channels'"):
        Config.from_row({**rows[0], "channels": ""})
    with pytest.raises(ValueError, match="column 'options'"):
        Config.from_row({**rows[0], "options": "{not json"})


def test_select_orders_leaves_out_and_names_an_unknown_column():
    assert SIZE_FIELDS == ["height", "width"] and STATUSES is reader.STATUSES
    keys = Config.key_names()
    got = select(keys, "key_channels", "value_channels", "path", "dtype", first=["block", "impl", "device"])
    assert got[:3] == ["block", "impl", "device"] and got[3:] == [
        k
        for k in keys
        if k not in {"block", "impl", "device", "key_channels", "value_channels", "path", "dtype"}
    ]
    assert (
        select(StepConfig.key_names(), *SIZE_FIELDS, first=["mode"])[-1] == "optimizer"
    )  # a new field joins
    with pytest.raises(ValueError, match="no configuration column.s. optimiser"):
        select(keys, "optimiser")
    with pytest.raises(ValueError, match="no configuration column.s. size"):
        select(keys, first=["size"])


def test_tables_keep_their_columns_and_a_new_field_splits_the_groups():
    """The side tables' columns as written; selections derived from the schema."""
    assert gpu_check.COLUMNS[:9] == "block impl backend factor recurrence height width dtype mode".split()
    assert heads.COLUMNS[8:] == [
        "height", "width", "in_channels", "channels", "key_channels", "value_channels", "options", "source",
    ]  # fmt: skip
    assert baseline.DESCRIBED == ["block", "impl", "batch", "channels", "height", "width", "options"]
    assert report_data.SERIES[:3] == ["block", "impl", "backend"]
    assert not {"height", "width", "options"} & set(report_data.SERIES)
    assert {"scope", *Config.key_names(), "metric", "value"} <= report_bounds.REQUIRED


def test_run_settings_are_a_schema_too():
    step = ["optimizer", "keep_grads", "foreach", "bucket_mib", "softmax_saves_input", "recipe"]
    assert RunSettings.names() == list(guard.RUN_SETTINGS) == ["latency", "by_module", *step]
    assert RunSettings(keep_grads="yes", bucket_mib=25).step_settings() == {
        "keep_grads": True,
        "bucket_mib": 25.0,
    }
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        RunSettings(optimizer="lion")
    assert RunSettings(latency="none").latency is None
    with pytest.raises(ValueError, match="unknown latency protocol 'slow'"):
        RunSettings(latency="slow")
    parser = argparse.ArgumentParser()
    _args.add_schema_flags(parser, RunSettings)
    assert RunSettings.from_args(parser.parse_args(["--by-module"])) == RunSettings(by_module=True)


def test_config_is_a_plain_value_and_targets_resolve_it():
    source = (REPO / "isaprof" / "config.py").read_text()
    assert "isaprof.targets" not in {
        n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom) and n.module
    }
    with pytest.raises(TypeError, match="use isaprof.targets.configure"):
        Config.make("isa", size=(8, 8), channels=16)


def test_one_build_per_profile_and_one_on_meta_for_the_guard(monkeypatch):
    """The CLI's profile off meta: the guard's prediction builds on meta once, the profile builds on the
    device once (before: four builds); on meta the profile builds once, its breakdown included."""
    from isaprof import targets
    from isaprof.cli import main

    calls = []
    real = targets.build
    monkeypatch.setattr(
        targets, "build", lambda *a, **k: calls.append(str(torch.empty(0).device)) or real(*a, **k)
    )
    monkeypatch.setattr(guard, "available_bytes", lambda device: 1 << 40)
    assert (
        main(["profile", "dense", "--size", "6x5", "--channels", "8", "--device", "cpu", "--latency", "none"])
        == 0
    )
    assert calls == ["meta", "cpu"]
    calls.clear()
    assert main(["profile", "isa", "--size", "6x5", "--channels", "8", "--factor", "2x2", "--by-module"]) == 0
    assert calls == ["meta"]
