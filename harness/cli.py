"""The ``optbench`` command line.

Each command lives in its own module exposing ``register(subparsers)``, which adds its sub-command(s)
and sets ``func(args) -> int`` on them. This file only assembles them and turns
``harness.errors.UserError`` into one clean message and exit code 2, a full disk
(``harness.outputs.DiskFull``) into one message and exit code 1, and a reader that closed our output
pipe (``optbench list | head -1``) into a quiet end.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness.errors import UserError
from harness.outputs import DiskFull, is_disk_full, say, silence

# Command modules, in the order `optbench --help` lists them.
COMMAND_MODULES = (
    "harness.run.cli",  # list, run
    "harness.sweep.cli",  # sweep, worker, suite
    "harness.sweep.estimate",  # plan
    "harness.sweep.status",  # status
    "harness.leaderboard",  # leaderboard
    "harness.report.cli",  # report
    "harness.check.cli",  # check
)


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad arguments already; keep its message but name the program."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="optbench",
        description="Tune, evaluate and compare optimizers across task families.",
    )
    from harness.results.record import SCHEMA_VERSION
    from harness.results.versions import package_version

    parser.add_argument(
        "--version",
        action="version",
        version=f"optbench {package_version()} (results schema {SCHEMA_VERSION})",
        help="print optbench's version (and the results-schema version its records carry) and exit",
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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush at exit
        return code
    except UserError as exc:
        say(f"optbench {args.command}: error: {exc}")
        return 2
    except DiskFull as exc:
        say(f"optbench {args.command}: error: {exc}")
        return 1
    except BrokenPipeError:
        # The reader went away (`| head -1`): drop the rest of the output quietly. Exit 1 as Python's
        # own recipe does: the output was cut, whatever the reader wanted from it.
        silence(sys.stdout)
        silence(sys.stderr)
        return 1
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        where = f" writing {exc.filename}" if getattr(exc, "filename", None) else ""
        say(
            f"optbench {args.command}: error: no space left on the device{where}; free some space and re-run the "
            "same command (finished runs are kept)"
        )
        return 1
    except KeyboardInterrupt:
        say(f"optbench {args.command}: interrupted; finished runs are kept, re-run the same command to resume")
        return 130


if __name__ == "__main__":
    sys.exit(main())
