"""``isaprof`` command line: thin subcommands (parse, call, print), one module each.

Each subcommand module defines ``register(subparsers)`` which adds its parser and sets
``func(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ("profile", "check", "factorize", "sweep", "reproduce", "verify", "baseline", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isaprof",
        description="Profile and verify attention blocks for dense prediction (ISA and its competitors).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"isaprof.cli.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name != f"isaprof.cli.{name}_cmd":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as e:  # bad input found past argparse: one line, no trace
        print(f"isaprof {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
