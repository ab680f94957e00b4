"""The ``stnkit`` command line: train, eval, compare, show, export, models (and data, from stnkit.data).

One module per command, each with ``add_parser(subparsers)`` that registers the command and sets
``func`` (``Namespace -> int``). The CLI only wires flags to library functions.

``main(argv)`` returns an exit status so tests can call it: 0 success, 1 an error with a message
(bad path, corrupt checkpoint, bad value), 2 a usage error from argparse, 3 training diverged.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from stnkit.cli.common import EXIT_DIVERGED, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, USER_ERRORS, one_line
from stnkit.engine import DivergenceError

__all__ = ["EXIT_DIVERGED", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

# One module per command, in the order of `stnkit --help`; each has add_parser(subparsers).
# `data` comes last, from stnkit.data.commands.
COMMAND_MODULES = (
    "stnkit.cli.train",
    "stnkit.cli.evaluate",
    "stnkit.cli.compare",
    "stnkit.cli.show",
    "stnkit.cli.export",
    "stnkit.cli.models",
    "stnkit.cli.reproduce",
    "stnkit.cli.robustness",
)


def build_parser() -> argparse.ArgumentParser:
    """The ``stnkit`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="stnkit",
        description="Spatial Transformer Networks: train, evaluate, picture and export models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    from stnkit.data.commands import add_data_subcommands

    add_data_subcommands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help and on usage errors
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was asked, for provenance records
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`stnkit models | head -1`): not an error worth a message. Point
        # stdout at devnull so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C: one line, not the traceback of wherever it landed
        print(f"stnkit {args.command}: interrupted{_how_to_continue(args)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DivergenceError as err:
        print(f"stnkit: training diverged: {err}", file=sys.stderr)
        return EXIT_DIVERGED
    except USER_ERRORS as err:
        print(f"stnkit {args.command}: error: {one_line(err)}", file=sys.stderr)
        return EXIT_ERROR


def _how_to_continue(args: argparse.Namespace) -> str:
    """What continues an interrupted command where it stopped (checkpoints are written atomically)."""
    if args.command == "train":
        return "; the same command with --resume continues from the last finished epoch"
    if args.command == "reproduce" and not args.report:
        return "; the same command continues (finished cells are skipped, the killed one resumes)"
    return ""
