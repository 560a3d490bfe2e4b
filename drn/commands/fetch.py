"""``drn fetch``: download (or copy, or make) one source of params.yaml."""

from __future__ import annotations

import argparse

from drn.commands.options import add_params_option, read_params
from drn.commands.output import say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "fetch", help="download (or copy, or make) one source of params.yaml",
        description="Fill {paths.data}/NAME from sources.NAME (a resumable, checksum-verified "
        "download then a safe extraction; a local folder or archive; scikit-image's images) or "
        "from downscaled.NAME (the MATLAB-exact bicubic LR of another source).",
    )  # fmt: skip
    parser.add_argument("name", help="a key of sources or downscaled in params.yaml")
    add_params_option(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.pipeline.download import fetch

    say(f"{args.name}: {fetch(args.name, read_params(args.params))}")
