"""``isaprof`` command line: thin subcommands (parse, call, print), one module each.

Each subcommand module defines ``register(subparsers)`` which adds its parser and sets
``func(args) -> int`` (the exit status). Subcommand modules import nothing heavy at their top: torch,
pandas and the measuring code are imported inside the function that runs the command, so ``--help`` of
every command and the commands that only read files (``report``) never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import re
import sys
import warnings
from typing import NoReturn

import isaprof

# Subcommands, in the order ``--help`` lists them; ``gpu-check`` lives in ``isaprof.cli.gpu_check_cmd``.
SUBCOMMANDS = (
    "profile", "formula", "predict", "table", "list", "check", "factorize", "sweep", "reproduce", "heads",
    "networks", "bounds", "verify", "baseline", "report", "machine", "gpu-check",
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (what was wrong; ``--help`` for what is allowed),
    not the whole usage block; subcommand parsers inherit it (``add_subparsers`` uses the parent's class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="isaprof",
        description="Profile and verify attention blocks for dense prediction (ISA and its competitors).",
    )
    parser.add_argument("--version", action="version", version=f"isaprof {isaprof.version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        path = f"isaprof.cli.{name.replace('-', '_')}_cmd"
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError as e:
            if e.name != path:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning
    from isaprof.targets.registry import importable_cwd

    importable_cwd()  # `isaprof profile mine:Block` finds ./mine.py, as `python -m` would
    parser = build_parser()
    args = parser.parse_args(_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input found past argparse: one line, no trace
        print(f"isaprof {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `isaprof ... | head`: the reader left; stop quietly, as other tools do
        _silence_stdout()
        return 0
    except OSError as e:  # an unreadable input or unwritable output path: one line, no trace
        what = f"{e.strerror}: {e.filename!r}" if e.strerror and e.filename else str(e)
        print(f"isaprof {args.command}: error: {what}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _negative_values(argv: list[str]) -> list[str]:
    """``--size -3x4`` as ``--size=-3x4``: argparse takes ``-3x4`` for an option and says only
    "expected one argument"; joined, the option's own check says what is wrong with the value."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1].startswith("--") and "=" not in out[-1] and re.match(r"-\d", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    """Warnings as one line, ``isaprof: warning: ...`` (a message names its own file and line)."""
    return f"isaprof: warning: {message}\n"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush into the closed pipe stays quiet."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a real file (captured): nothing to flush
        pass


if __name__ == "__main__":
    sys.exit(main())
