"""``drn collect``: gather every evaluation JSON into one table (summary.md, summary.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_params_option, read_params
from drn.commands.output import say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "collect", help="gather every evaluation JSON into one table",
        description="Write {paths.results}/summary.md and summary.json from the evaluation "
        "JSONs under {paths.results}/eval.",
    )  # fmt: skip
    add_params_option(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.protocol.scoring import collect_results

    results = Path(read_params(args.params)["paths"]["results"])
    rows = collect_results(results / "eval", results / "summary")
    say(f"{len(rows)} evaluations in {results / 'summary.md'} and {results / 'summary.json'}")
