"""Any module is a target: registered names, import paths, instances, callables and entry-point plugins;
formulas are optional; every bad target is one line (ValueError in Python, exit 2 from the CLI)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch

import isaprof
from isaprof import formulas
from isaprof.cli import main
from isaprof.studies.sweep import expand
from isaprof.targets import registry

MINE = textwrap.dedent(
    '''
    """A user's own blocks, outside isaprof."""
    import torch
    from torch import nn


    class Mixer(nn.Module):
        """1x1 mixing then a (B, N, N) affinity over positions, softmax, and back: a dense-like block."""

        def __init__(self, channels, key_channels=None, *, heads=1, scale=True):
            super().__init__()
            self.q = nn.Conv2d(channels, channels, 1, bias=False)
            self.heads = heads

        def forward(self, x):
            b, c, h, w = x.shape
            t = self.q(x).flatten(2)                                   # (B, C, N)
            a = torch.softmax(t.transpose(1, 2) @ t, dim=-1)           # (B, N, N)
            return (t @ a.transpose(1, 2)).view(b, c, h, w)            # (B, C, H, W)


    class NeedsWindow(nn.Module):
        def __init__(self, channels, window):
            super().__init__()
            self.window = window

        def forward(self, x):
            return x


    class Raises(nn.Module):
        def __init__(self, channels):
            raise RuntimeError("no GPU kernel for this width")


    class BadForward(nn.Module):
        def __init__(self, channels):
            super().__init__()
            self.lin = nn.Linear(channels + 1, channels)

        def forward(self, x):
            return self.lin(x.flatten(2).transpose(1, 2))


    def make_mixer(channels):
        return Mixer(channels)


    def not_a_module(channels):
        return 42
    '''
)


@pytest.fixture
def mine(tmp_path, monkeypatch):
    (tmp_path / "mine_blocks.py").write_text(MINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "mine_blocks"


SMALL = dict(size=(6, 5), channels=8, device="meta")


def _numbers(rec: isaprof.Record) -> tuple:
    return rec.params, rec.macs, rec.peak_bytes, dict(rec.flop_count.by_op), rec.padded or None


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_builtin_by_name_path_and_instance_measure_the_same(mode):
    by_name = isaprof.profile("isa", **SMALL, mode=mode, factor=(2, 2))
    by_path = isaprof.profile(
        "isaprof.targets.blocks.isa:InterlacedSparseAttention", **SMALL, mode=mode, factor=(2, 2)
    )
    inst = isaprof.build("isa", 8, factor=(2, 2))
    by_instance = isaprof.profile(inst, **SMALL, mode=mode)
    assert _numbers(by_name)[:4] == _numbers(by_path)[:4] == _numbers(by_instance)[:4]
    # the import path of a built-in class is that block: its formula applies
    assert by_path.macs_analytic == by_name.macs_analytic == by_name.macs
    assert by_path.peak_bytes_analytic == by_name.peak_bytes_analytic
    # rows name the target as given; an instance by its class's module:QualName
    assert by_name.rows()[0]["block"] == "isa"
    assert by_path.rows()[0]["block"] == "isaprof.targets.blocks.isa:InterlacedSparseAttention"
    assert by_instance.rows()[0]["block"] == "isaprof.targets.blocks.isa:InterlacedSparseAttention"


def test_an_instance_is_never_mutated():
    inst = isaprof.build("dense", 8)
    before = {k: v.clone() for k, v in inst.state_dict().items()}
    isaprof.profile(inst, size=(4, 4), channels=8, device="cpu", mode="train", latency=None)
    isaprof.profile(inst, size=(4, 4), channels=8, device="meta", mode="inference")
    assert inst.training and all(p.grad is None for p in inst.parameters())
    assert all(p.device.type == "cpu" for p in inst.parameters())
    assert all(torch.equal(before[k], v) for k, v in inst.state_dict().items())


def test_own_module_by_import_path_and_callable_without_formula(mine):
    rec = isaprof.profile(f"{mine}:Mixer", **SMALL, heads=2)
    n, c = 30, 8
    # 1x1 conv C*C*N, t^T t (B, N, C) x (C, N): N*N*C, t a^T: C*N*N
    assert rec.macs == c * c * n + n * n * c + c * n * n
    assert rec.macs_analytic is None and rec.params_analytic is None and rec.peak_bytes > 0
    rows = rec.rows()
    assert {r["metric"] for r in rows} >= {"macs", "peak_bytes"}
    assert all(r["analytic"] is None and r["status"] == "ok" for r in rows)
    assert rows[0]["block"] == f"{mine}:Mixer" and json.loads(rows[0]["options"])["heads"] == 2
    # options are read from the constructor without importing it; channels only where accepted
    assert registry.spec(f"{mine}:Mixer").options == {"heads": 1, "scale": True}
    by_factory = isaprof.profile(f"{mine}:make_mixer", **SMALL)
    assert by_factory.macs == rec.macs


def test_a_formula_registered_from_outside_fills_the_analytic_column(mine):
    target = f"{mine}:Mixer"

    @formulas.formula(target)
    def mixer(cfg: formulas.Config) -> formulas.Cost:
        n, c = cfg.height * cfg.width, cfg.channels
        macs = {"proj": c * c * n * cfg.batch, "affinity": 2 * n * n * c * cfg.batch}
        return formulas.Cost(c * c, macs, {}, {}, {}, (cfg.height, cfg.width))

    try:
        rec = isaprof.profile(target, **SMALL)
        assert rec.macs_analytic == rec.macs and rec.params_analytic == rec.params
    finally:
        formulas.base.REGISTRY.pop(target)


@pytest.mark.parametrize(
    ("target", "words"),
    [
        ("nosuch_pkg.mod:Block", "cannot import target 'nosuch_pkg.mod:Block': ModuleNotFoundError"),
        ("{mine}:Missing", "has no attribute 'Missing'"),
        ("{mine}:not_a_module", "returned int, expected an nn.Module"),
        ("{mine}:Raises", "constructing '{mine}:Raises' failed: RuntimeError: no GPU kernel"),
        ("{mine}:NeedsWindow", "needs option(s) window"),
        (
            "{mine}:BadForward",
            "forward of '{mine}:BadForward' on an input of shape (B, C, H, W) = (1, 8, 6, 5)",
        ),
        ("mine", "unknown block 'mine'"),
    ],
)
def test_bad_targets_are_one_line(mine, capsys, target, words):
    target, words = target.format(mine=mine), words.format(mine=mine)
    with pytest.raises(ValueError) as e:
        isaprof.profile(target, **SMALL)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert main(["profile", target, "--size", "6x5", "--channels", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("isaprof profile: error:") and words in err


def test_cli_profile_and_list_take_any_target(mine, capsys):
    assert (
        main(
            ["profile", f"{mine}:Mixer", "--size", "6x5", "--channels", "8", "--option", "heads=2", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["block"] == f"{mine}:Mixer" and out["macs"]["analytic"] is None
    assert out["macs"]["measured"] == 8 * 8 * 30 + 2 * 30 * 30 * 8
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    assert "isa" in listed and "factor=8x8, masked=False" in listed and "package.module:Attr" in listed


def _install_plugin(tmp_path, monkeypatch, entry_points: str) -> None:
    """A distribution on sys.path declaring entry points, as `pip install` would leave it."""
    dist = tmp_path / "mine_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mine-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.reset_plugins()
    formulas.base.reset_plugins()


@pytest.fixture
def clean_plugins():
    yield
    registry.reset_plugins()
    formulas.base.reset_plugins()


def test_an_installed_plugin_is_usable_by_name_and_a_broken_one_is_reported(
    mine, tmp_path, monkeypatch, capsys, clean_plugins
):
    _install_plugin(
        tmp_path,
        monkeypatch,
        f"[isaprof.blocks]\nmixer = {mine}:Mixer\nbroken = not a path\n\n"
        f"[isaprof.formulas]\nghost = nosuch_formulas:ghost\n",
    )
    assert "mixer" in isaprof.names() and registry.spec("mixer").source == "mine-plugin"
    rec = isaprof.profile("mixer", **SMALL)
    assert rec.rows()[0]["block"] == "mixer" and rec.macs == 8 * 8 * 30 + 2 * 30 * 30 * 8
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mixer" in out and "mine-plugin" in out
    assert "plugin broken (mine-plugin): not loaded" in out and "formula ghost: not loaded" in out
    assert isaprof.profile("dense", **SMALL).macs > 0  # the others still work


def test_sweep_takes_import_paths_with_their_own_options(mine):
    grid = {
        "blocks": ["isa", f"{mine}:Mixer"],
        "sizes": ["6x5"],
        "channels": [8],
        "factors": ["2x2"],
        "target_options": {f"{mine}:Mixer": {"heads": [1, 2]}},
    }
    configs = expand([grid])
    mixers = [c for c in configs if c.block.endswith(":Mixer")]
    assert [dict(c.options)["heads"] for c in mixers] == [1, 2]
    assert all("factor" not in dict(c.options) for c in mixers)
    assert {dict(c.options)["factor"] for c in configs if c.block == "isa"} == {(2, 2)}
    with pytest.raises(ValueError, match="not among this grid's blocks"):
        expand([{**grid, "target_options": {"other:X": {"a": [1]}}}])


def test_verify_checks_any_module_empirically_only(mine, capsys):
    assert main(["verify", f"{mine}:Mixer", "--size", "5x4", "--json"]) == 0
    (r,) = json.loads(capsys.readouterr().out)
    assert r["block"] == f"{mine}:Mixer" and r["empirical_only"] and not r["modelled"]
    assert r["empirical"][-1][1] == 1.0 and r["ok"]  # a dense affinity reaches every pair
    assert main(["verify", f"{mine}:Mixer", "--size", "5x4"]) == 0
    assert "empirical only: fully connected" in capsys.readouterr().out


def test_sweep_and_report_put_an_import_path_beside_the_blocks(mine, tmp_path, capsys):
    import socket

    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'[[grid]]\nblocks = ["dense", "{mine}:Mixer", "nosuch_pkg:Block"]\nsizes = ["8x8", "16x16"]\n'
        "channels = [8]\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    machine = {"machines": [{"host": socket.gethostname(), "device": "cpu", "peak_gflops": 1.0,
                             "matmul_gflops": 1.0, "bandwidth_gbs": 1.0}]}  # fmt: skip
    (out / "machine.json").write_text(json.dumps(machine))
    # the unimportable target is recorded as failed and the sweep goes on (exit 1 says so)
    assert main(["sweep", str(spec), "--out", str(out), "--workers", "1", "--no-progress"]) == 1
    text = (out / "results.csv").read_text()
    assert f"{mine}:Mixer" in text and "cannot import target 'nosuch_pkg:Block'" in text
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "README.md").read_text()
    assert f"{mine}:Mixer" in page
