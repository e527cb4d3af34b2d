"""Targets as people write them (the current folder, factories, token layouts, any output) and one clear
line for every bad input the front door used to get wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isaprof.cli import main
from isaprof.config import Config
from tests import REPO

MINE = '''
import torch
from torch import nn


class GatedAttention(nn.Module):
    """Attention gated per position; takes channels and a reduction, no key/value widths."""

    def __init__(self, channels, reduction=4):
        super().__init__()
        ck = channels // reduction
        self.q = nn.Conv2d(channels, ck, 1)
        self.k = nn.Conv2d(channels, ck, 1)
        self.gate = nn.Conv2d(channels, 1, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)
        a = torch.softmax(q @ self.k(x).flatten(2), -1)
        out = (a @ x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        return x + torch.sigmoid(self.gate(x)) * out


class Pair(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.c = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        y = self.c(x)
        return y, {"aux": y.mean(), "index": torch.tensor(3)}, None


class Positive(nn.Module):
    def __init__(self, channels):
        super().__init__()

    def forward(self, x):
        return x[x > 0]


class Tokens(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        return self.proj(x)


class Wide(nn.Module):
    in_channels = 64

    def __init__(self, channels):
        super().__init__()
        self.c = nn.Conv2d(64, 64, 1)

    def forward(self, x):
        return self.c(x)


def model(**kwargs):
    """A torchvision-style factory: takes only keyword options."""
    assert "channels" not in kwargs, kwargs
    return nn.Conv2d(kwargs.get("width", 8), 8, 1)
'''


@pytest.fixture
def mine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module file in the current folder (a name of its own per test), as a user's repository has."""
    name = f"mine_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(MINE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    yield name
    sys.modules.pop(name, None)


def _one_line(capsys: pytest.CaptureFixture[str], code: int, command: str, words: str) -> None:
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"isaprof {command}: error:") and words in err, err


# -- targets as people write them ------------------------------------------------------------------------
def test_readme_example_runs_as_written_from_the_folder_holding_mine(tmp_path: Path) -> None:
    """The console script's sys.path starts with its own folder, not the current one: run one like it."""
    (tmp_path / "mine.py").write_text(MINE)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "isaprof"
    script.write_text("import sys\nfrom isaprof.cli import main\nsys.exit(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)  # this checkout's isaprof, nothing of the user's folder
    argv = "profile mine:GatedAttention --size 64x64 --channels 256 --option reduction=8".split()
    done = subprocess.run(
        [sys.executable, str(script), *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # the widths it really took: C, and no Ck/Cv (its constructor takes neither)
    assert done.stdout.startswith('mine:GatedAttention  B=1 C=256  64x64 options={"reduction": 8}\n')
    assert "macs" in done.stdout and done.stderr == ""


def test_an_import_that_fails_is_named_not_blamed_on_the_option(capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code = main(["profile", "nosuch_mod:Block", "--size", "8x8", "--channels", "8", "--option", "a=1"])
    _one_line(capsys, code, "profile", "cannot import target 'nosuch_mod:Block': ModuleNotFoundError")


def test_a_kwargs_factory_gets_only_the_users_options(mine, capsys) -> None:
    assert (
        main(["profile", f"{mine}:model", "--size", "4x4", "--channels", "16", "--option", "width=16"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(f'{mine}:model  B=1 C=16  4x4 options={{"width": 16}}')
    assert "params                        136" in out  # Conv2d(16, 8, 1): 16*8 + 8


def test_header_shows_the_width_the_module_took(mine, capsys) -> None:
    assert main(["profile", f"{mine}:Wide", "--size", "4x4", "--channels", "16"]) == 0
    assert capsys.readouterr().out.startswith(f"{mine}:Wide  B=1 C=64  4x4")


TRANSFORMER = ["torch.nn:TransformerEncoderLayer", "--layout", "tokens", "--size", "32x32",
               "--channels", "64", "--option", "d_model=64", "--option", "nhead=4",
               "--option", "batch_first=True"]  # fmt: skip


def test_profile_a_token_module_with_layout_tokens(capsys) -> None:
    assert main(["profile", *TRANSFORMER, "--device", "meta", "--json"]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["input_shape"] == [1, 32 * 32, 64] and record["config"]["layout"] == "tokens"
    assert record["output"] == "tensor (1, 1024, 64) float32" and record["warnings"] == []
    # attention's two N x N products: 2 * N^2 * d_model MACs at least
    assert record["macs"]["measured"] > 2 * 1024**2 * 64
    assert err == ""


def test_a_token_module_fed_a_map_says_to_use_layout_tokens(mine, capsys) -> None:
    code = main(["profile", f"{mine}:Tokens", "--size", "4x4", "--channels", "8", "--option", "dim=8"])
    _one_line(capsys, code, "profile", "use --layout tokens")
    assert main(["profile", f"{mine}:Tokens", "--size", "4x4", "--channels", "8", "--option", "dim=8",
                 "--layout", "tokens"]) == 0  # fmt: skip
    assert "tokens (B, N, C)" in capsys.readouterr().out


def test_layout_tokens_is_refused_for_a_map_block(capsys) -> None:
    code = main(["profile", "isa", "--size", "8x8", "--channels", "8", "--layout", "tokens"])
    _one_line(capsys, code, "profile", "block 'isa' takes a map (B, C, H, W)")


def test_verify_formula_and_predict_take_layout_tokens(capsys) -> None:
    small = [*TRANSFORMER[:3], "--size", "4x4", *TRANSFORMER[5:]]
    assert main(["verify", *small]) == 0
    assert "empirical only: fully connected" in capsys.readouterr().out
    assert main(["formula", *small, "--no-peak"]) == 0
    out = capsys.readouterr().out
    assert "MACs = 128*H**2*W**2 + " in out  # QK^T and AV: 2 * d_model * N^2, N = H*W
    assert main(["predict", *small, "--gpu", "a100-80gb", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["layout"] == "tokens"


def test_a_tuple_output_in_train_mode_follows_the_declared_rule(mine, capsys) -> None:
    argv = ["profile", f"{mine}:Pair", "--size", "4x4", "--channels", "8", "--mode", "train", "--json"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)  # stdout holds the JSON alone
    warning = f"'{mine}:Pair' maps its input (1, 8, 4, 4) (B, C, H, W) to tuple (tensor (1, 8, 4, 4) float32"
    assert err.startswith(f"isaprof profile: warning: {warning}") and err.count("\n") == 1
    assert record["warnings"][0].startswith(warning) and record["warnings"][0] in record["notes"]
    assert any(
        n.startswith("train: the output is not one tensor; back-propagated the sum") for n in record["notes"]
    )
    # the conv's forward and the backward of the floating leaves (y and its mean): input and weight grads
    assert record["macs"]["measured"] == 3 * 8 * 8 * 16
    assert main([*argv, "--output", "0"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["output"] == "tensor (1, 8, 4, 4) float32" and err == ""
    _one_line(capsys, main([*argv, "--output", "7"]), "profile", "the module returns a tuple of 3")


def test_data_dependent_output_shape(mine, capsys) -> None:
    argv = ["profile", f"{mine}:Positive", "--size", "4x4", "--channels", "8"]
    _one_line(capsys, main(argv), "profile", "has a data-dependent output shape (aten.nonzero")
    with pytest.warns(
        UserWarning, match="fake tensors cannot predict its peak, so it runs without the memory"
    ):
        assert main([*argv, "--device", "cpu", "--latency", "none"]) == 0
    out, err = capsys.readouterr()
    assert "peak_bytes" in out and "Traceback" not in err


# -- one clear line for every bad input -----------------------------------------------------------------
def test_verify_on_a_tuple_output_or_a_token_module_is_one_line(mine, capsys) -> None:
    _one_line(capsys, main(["verify", f"{mine}:Pair"]), "verify", "to one tensor of the same layout")
    code = main(["verify", f"{mine}:Tokens", "--option", "dim=8"])
    _one_line(capsys, code, "verify", "use --layout tokens")


def test_formula_at_size_1x1_is_one_line(capsys) -> None:
    code = main(["formula", "dense", "--size", "1x1", "--channels", "8"])
    _one_line(capsys, code, "formula", "size 1x1: torch treats sizes 0 and 1 as constants")


def test_report_on_random_bytes_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "results.csv").write_bytes(b"\x8f\x00a,b\rc\n" + bytes(range(256)) * 4)
    code = main(["report", str(tmp_path), "--out", str(tmp_path / "rep")])
    _one_line(capsys, code, "report", "results.csv:1: not a results table")


def test_corrupt_table_json_names_the_file(tmp_path) -> None:
    from isaprof.report.efficiency import section

    (tmp_path / "table_97x97.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"table_97x97.json: not a table written by `isaprof table"):
        section(tmp_path, None, [])


def test_an_invalid_combination_is_recorded_and_the_rest_measured(tmp_path, capsys) -> None:
    from tests.cli.test_inputs import results_dir  # this host's roofs already there: nothing timed

    grid = '[[grid]]\nblocks = ["dense"]\nsizes = ["4x4"]\nchannels = [1, 8]\nimpls = ["naive"]\n'
    spec, out = results_dir(tmp_path, grid)
    argv = ["sweep", spec, "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 1
    from isaprof.results.reader import read_rows

    rows = read_rows(out)
    failed = [r for r in rows if r["status"] == "error"]
    assert failed and {r["channels"] for r in failed} == {"1"}
    assert "key_channels must be a positive integer, got 0" in failed[0]["error"]
    assert {r["metric"] for r in rows if r["status"] == "ok" and r["channels"] == "8"} >= {
        "macs",
        "peak_bytes",
    }


def test_unknown_top_level_sweep_key_is_refused(tmp_path, capsys) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text('title = "x"\n[[grid]]\nblocks = ["dense"]\nsizes = ["4x4"]\nchannels = [8]\n')
    code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--dry-run"])
    _one_line(capsys, code, "sweep", "unknown top-level key(s) title")


def test_check_with_an_unknown_block_exits_2_naming_it(capsys) -> None:
    _one_line(capsys, main(["check", "--block", "nosuch"]), "check", "unknown block 'nosuch'")


def test_factor_and_the_same_option_are_refused(capsys) -> None:
    code = main(["profile", "isa", "--size", "8x8", "--channels", "8", "--factor", "4x4", "--option",
                 "factor=2x2"])  # fmt: skip
    _one_line(capsys, code, "profile", "--factor and --option factor=... both give factor")


def test_machine_remeasure_on_a_cache_it_cannot_write_says_so(tmp_path, monkeypatch, capsys) -> None:
    from isaprof.roofline import roofs

    fake = {"matmul_gflops": 1.0, "bandwidth_gbs": 1.0, "threads": 1}
    monkeypatch.setattr(roofs, "measure_roofs", lambda d, **kw: dict(fake))
    monkeypatch.setattr(roofs, "available_devices", lambda: ("cpu",))
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("ISAPROF_CACHE", str(tmp_path / "file" / "cache"))  # under a file: unwritable
    assert main(["machine", "--remeasure", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["cpu"]["matmul_gflops"] == 1.0
    assert "could not write the host cache" in err and "not cached" in err


# -- the layout column ----------------------------------------------------------------------------------
def test_a_results_file_without_the_layout_column_reads_as_maps(tmp_path) -> None:
    from isaprof.results.reader import config_key, read_rows, row_key
    from isaprof.results.store import append, columns
    from isaprof.targets import configure

    cfg = configure("dense", size=(4, 4), channels=8)
    row = {k: v for k, v in cfg.to_row().items() if k != "layout"}
    assert Config.from_row(row).layout == "map" and Config.from_row(row) == cfg
    assert row_key(row) == config_key(cfg)
    old = [c for c in columns() if c != "layout"]
    (tmp_path / "results.csv").write_text(",".join(old) + "\n")
    append(tmp_path, [{**cfg.to_row(), "metric": "macs", "status": "ok"}])  # appendable across versions
    assert (tmp_path / "results.csv").read_text().splitlines()[0].split(",") == columns()  # header upgraded
    tokens = configure("torch.nn:Identity", size=(4, 4), channels=8, layout="tokens")
    append(tmp_path, [{**tokens.to_row(), "metric": "macs", "status": "ok"}])
    rows = read_rows(tmp_path, latest=False)
    assert [Config.from_row(r).layout for r in rows] == ["map", "tokens"]


def test_layout_is_a_schema_field() -> None:
    from isaprof.targets import configure

    cfg = configure("torch.nn:Identity", size=(4, 4), channels=8, layout="tokens")
    assert "layout" in Config.column_names() and cfg.to_row()["layout"] == "tokens"
    assert cfg.to_argv()[-2:] == ["--layout", "tokens"]
    with pytest.raises(ValueError, match="unknown layout 'rows'; allowed: map, tokens"):
        configure("torch.nn:Identity", size=(4, 4), channels=8, layout="rows")
