"""The ``optbench`` command line.

Each command lives in its own module exposing ``register(subparsers)``, which adds its sub-command(s)
and sets ``func(args) -> int`` on them. This file only assembles them and turns
``harness.errors.UserError`` into one clean message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import UserError

# Command modules, in the order `optbench --help` lists them.
COMMAND_MODULES = (
    "harness.cmd_run",        # list, run
    "harness.sweep_cli",      # sweep, worker, suite
    "harness.leaderboard",    # leaderboard
    "harness.report",         # report
    "harness.check",          # check
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments already; keep its message but name the program."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="optbench",
        description="Tune, evaluate and compare optimizers across task families.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue  # command not built yet in this checkout
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"optbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"optbench {args.command}: interrupted; finished runs are kept, re-run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
