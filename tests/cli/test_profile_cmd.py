"""``isaprof profile`` and ``isaprof check`` command lines: JSON output, one-line errors, exit codes."""

import json

import pytest

import isaprof.studies.check
from isaprof.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_profile_json(capsys):
    code, out, _ = _run(capsys, "profile", "isa", "--size", "7x9", "--channels", "8", "--factor", "2x4",
                        "--mode", "train", "--json")  # fmt: skip
    assert code == 0
    obj = json.loads(out)
    assert {
        "config",
        "params",
        "macs",
        "flops",
        "peak_bytes",
        "latency_ms",
        "elementwise",
        "environment",
    } <= set(obj)
    assert obj["config"]["factor"] == "2x4" and obj["config"]["mode"] == "train"
    assert obj["macs"]["measured"] > 0 and obj["peak_bytes"]["measured"] > 0


def test_profile_table_and_generic_option(capsys):
    code, out, _ = _run(
        capsys, "profile", "isa", "--size", "8x8", "--channels", "8", "--option", "masked=True"
    )
    assert code == 0
    assert '"masked": true' in out and "factor" in out  # the option and the default factor are shown
    assert "macs" in out and "peak_bytes" in out and "iB" in out  # bytes in KiB / MiB


@pytest.mark.parametrize(
    "argv, words",
    [
        (["profile", "nosuch", "--size", "8x8", "--channels", "8"], "known blocks: dense"),
        (["profile", "isanet_r50_d", "--size", "8x8"], "(heads, whole networks): `isaprof list`"),
        (
            ["profile", "dense", "--size", "8x8", "--channels", "8", "--factor", "2x2"],
            "--factor applies only",
        ),
        (
            ["profile", "dense", "--size", "8x8", "--channels", "8", "--recurrence", "2"],
            "--recurrence applies",
        ),
        (["profile", "dense", "--size", "8x8", "--channels", "8", "--option", "zz=1"], "no option(s) zz"),
        (["profile", "dense", "--size", "8x8", "--channels", "8", "--option", "zz"], "KEY=VALUE"),
        (["profile", "dense", "--size", "8x8", "--channels", "8", "--device", "cuda"], "CUDA requested"),
    ],
)
def test_profile_errors_are_one_line(capsys, argv, words):
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("isaprof profile: error:") and words in err


@pytest.mark.parametrize(
    "arg", [["--size", "8y8"], ["--channels", "-3"], ["--mode", "eval"], ["--dtype", "int8"]]
)
def test_argparse_errors_exit_2(capsys, arg):
    argv = {"--size": "8x8", "--channels": "8"}
    argv.update(dict([arg]))
    with pytest.raises(SystemExit) as e:
        main(["profile", "dense", *[x for kv in argv.items() for x in kv]])
    assert e.value.code == 2
    assert "error: argument " + arg[0] in capsys.readouterr().err


def test_check_exit_code(capsys, monkeypatch):
    bad = [dict(name="dense", size=(4, 4), channels=8, factor=(2, 2))]  # dense has no factor: an error
    monkeypatch.setattr(isaprof.studies.check, "default_grid", lambda quick=False: bad)
    code, out, _ = _run(capsys, "check", "--quick")
    assert code == 1
    assert "dense" in out and "error" in out and "1 disagreement(s) over 1 configurations" in out
