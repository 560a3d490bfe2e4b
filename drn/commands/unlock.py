"""``drn unlock``: remove the stale Snakemake lock a killed Snakemake left in its directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.output import say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "unlock", help="remove a stale Snakemake lock (left by a killed Snakemake)",
        description="Remove the Snakemake lock (.snakemake/locks) a killed Snakemake left in "
        "DIR, once no Snakemake process of this host works there; then Snakemake runs there "
        "again. Exit 0 when removed or when there is none, 75 (removing nothing) when a "
        "Snakemake process works there, 2 when DIR does not exist.",
    )  # fmt: skip
    parser.add_argument(
        "directory", nargs="?", type=Path, default=Path("."), metavar="DIR",
        help="Snakemake's working directory (default: the current one)",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.pipeline.locks import unlock

    say(unlock(args.directory))
