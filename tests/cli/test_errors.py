"""Bad command-line input: exit 2 and ONE line saying what was wrong and what is allowed, never a trace.

Fast: in-process ``isaprof.cli.main`` with capsys; nothing here profiles a model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import isaprof
from isaprof.cli import main
from isaprof.report.data import COLUMNS
from tests import REPO

TINY = str(REPO / "reference" / "sweeps" / "tiny.toml")
PROFILE = ["profile", "isa", "--size", "8x8", "--channels", "8"]


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, command: str, words: str) -> None:
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"isaprof {command}: error:") and words in err, err


def _exit_code(argv: list[str]) -> int:
    """``main(argv)``'s status, whether it returns it or argparse raises ``SystemExit``."""
    try:
        return main(argv)
    except SystemExit as e:
        return int(e.code)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["profile", "isa", "--size", "0x5", "--channels", "8"], "size must be positive in both dimensions"),
        (["profile", "isa", "--size", "abc", "--channels", "8"], "size must look like HxW"),
        (["profile", "isa", "--size", "5x", "--channels", "8"], "size must look like HxW"),
        ([*PROFILE, "--factor", "0x2"], "factor must be positive in both dimensions"),
        (
            ["profile", "criss_cross", "--size", "8x8", "--channels", "8", "--recurrence", "0"],
            "positive integer",
        ),
        (["verify", "isa", "--size", "0x5"], "size must be positive"),
        (["sweep", TINY, "--out", "x", "--sizes", "0x3"], "size must be positive"),
    ],
)
def test_argparse_errors_are_one_line_not_the_usage_block(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    """argparse's own errors used to print the whole usage block (6-11 lines) before the message."""
    _one_line_error(capsys, _exit_code(argv), argv[0], words)


def test_argparse_error_points_at_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit_code(["factorize", "--size", "0x5"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("(see `isaprof factorize --help`)")


@pytest.mark.parametrize(
    "argv, words",
    [
        ([*PROFILE, "--option", "factor=3"], "factor must be two positive integers"),
        ([*PROFILE, "--option", "factor=(2, 2, 2)"], "factor must be two positive integers"),
        (
            ["profile", "channelized_axial", "--size", "8x8", "--channels", "8", "--option", "groups=0"],
            "groups",
        ),
    ],
)
def test_profile_bad_option_value_is_caught_before_the_formula(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    """These reached the closed-form formula first: TypeError / ZeroDivisionError traces."""
    _one_line_error(capsys, main(argv), "profile", words)


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["verify", "dense", "--factor", "2x2"],
            "--factor applies only to blocks with a factor option (isa)",
        ),
        (["verify", "dense", "axial", "--masked"], "--masked applies only"),
        (["verify", "isa", "--recurrence", "2"], "--recurrence applies only"),
    ],
)
def test_verify_option_no_block_takes_is_an_error(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    """Was silently ignored (the table then showed the block's defaults)."""
    _one_line_error(capsys, main(argv), "verify", words)


def test_sweep_slurm_without_slurm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was submitit's RuntimeError trace ('Could not detect "srun"')."""
    monkeypatch.setattr("shutil.which", lambda name: None)
    code = main(["sweep", TINY, "--out", str(tmp_path), "--executor", "slurm"])
    _one_line_error(capsys, code, "sweep", "--executor slurm needs a slurm cluster")
    assert not (tmp_path / "results.csv").exists()


@pytest.mark.parametrize(
    "text, words",
    [
        (None, "is a directory"),
        (
            '[[grid]]\nname="a"\nblocks=["criss_cross"]\nsizes=["8x8"]\nchannels=[16]\nrecurrences=[0]\n',
            "'recurrences' must hold integers >= 1",
        ),  # fmt: skip
    ],
)
def test_sweep_bad_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | None, words: str
) -> None:
    """A directory was reported as 'does not exist'; recurrence 0 was accepted and every row failed."""
    spec = tmp_path / "spec.toml"
    if text is None:
        spec.mkdir()
    else:
        spec.write_text(text)
    _one_line_error(
        capsys, main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--dry-run"]), "sweep", words
    )


def _results(d: Path, header_only: bool = True) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.csv").write_text(",".join(COLUMNS) + "\n" if header_only else "")
    return d


@pytest.mark.parametrize(
    "setup, words",
    [
        (lambda d: _results(d, header_only=False), "results.csv is not a readable results table"),
        (lambda d: (_results(d) / "machine.json").write_text("garbage"), "machine.json:1: not valid JSON"),
        (
            lambda d: (_results(d) / "reproduction.csv").write_text("a,b\n1,2\n"),
            "lacks the columns id, ratio",
        ),
    ],
)
def test_report_bad_result_files_name_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup, words: str
) -> None:  # noqa: ANN001
    """Were 'No columns to parse from file', a bare JSON error and an AttributeError trace."""
    setup(tmp_path / "res")
    code = main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "rep")])
    _one_line_error(capsys, code, "report", words)


def test_report_given_the_csv_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _results(tmp_path / "res")
    code = main(["report", str(res / "results.csv"), "--out", str(tmp_path / "rep")])
    _one_line_error(capsys, code, "report", f"give {res}, not the file")


def test_unwritable_output_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An OSError on a user's path (here --out under a regular file) was a pathlib trace."""
    res = _results(tmp_path / "res")
    (tmp_path / "file").write_text("")
    code = main(["report", str(res), "--out", str(tmp_path / "file" / "rep")])
    _one_line_error(capsys, code, "report", "Not a directory")


def test_reproduce_invalid_toml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "pub.toml"
    bad.write_text("[[figure]\n")
    code = main(["reproduce", "--out", str(tmp_path), "--published", str(bad)])
    _one_line_error(capsys, code, "reproduce", f"published-figures file {bad}: invalid TOML")


def test_broken_pipe_is_quiet(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """``isaprof ... | head`` closing the pipe was a BrokenPipeError trace."""

    def closed(args: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("isaprof.cli.factorize_cmd.run", closed)
    assert main(["factorize", "--size", "4x4"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: isaprof.build("nope", 8), "unknown block 'nope'; known blocks:"),
        (lambda: isaprof.build("isa", 8, factor=(0, 1)), "factor must be two positive integers"),
        (lambda: isaprof.profile("isa", size=(0, 4), channels=8), "size must be two positive integers"),
    ],
)
def test_python_api_bad_input_is_value_error(call, words: str) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        call()
