"""The ``drn`` command: argument parsing, console output and exit codes; no logic of its own.

Every failure is one line on stderr, ``drn: error: <message>``, that names the file or argument,
with exit code 2 for bad usage and 1 for bad data.

This module only assembles the subcommands of :mod:`drn.commands` (one module each, in the order
of :data:`COMMANDS`, which is ``drn --help``'s): each adds its parser and arguments and sets
``run``, which :func:`main` calls.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from drn import __version__
from drn.commands import (
    collect,
    doctor,
    evaluate,
    fetch,
    import_,
    info,
    plan,
    prepare,
    report,
    score,
    status,
    train,
    unlock,
    upscale,
)
from drn.commands.output import stderr
from drn.core import threads
from drn.core.errors import DrnError

COMMANDS = (
    score, evaluate, upscale, import_, train, fetch, prepare, report, plan, status, collect, info,
    doctor, unlock,
)  # fmt: skip


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        stderr.print(f"drn: error: {message}", markup=False, soft_wrap=True)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="drn", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"drn-repro {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        threads.configure()  # the job's CPUs: torch and BLAS threads, images at a time
        return args.run(args) or 0
    except DrnError as error:
        stderr.print(f"drn: error: {error}", markup=False, soft_wrap=True)
        return error.exit_code
    except KeyboardInterrupt:
        stderr.print("drn: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
