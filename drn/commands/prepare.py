"""``drn prepare``: check the training images and decode one scale's HR/LR pairs into the cache."""

from __future__ import annotations

import argparse

from drn.commands.options import add_params_option, add_scale_option, read_params
from drn.commands.output import progress, say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare", help="decode the training pairs of one scale into the cache",
        description="Check every training image and decode the HR/LR pairs of one scale into "
        "train.data.cache (LR: the official images if present, else the MATLAB-exact resize).",
    )  # fmt: skip
    add_scale_option(parser, "upscaling factor")
    add_params_option(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.engine.dataset import build_cache
    from drn.pipeline.settings import training_data

    hr, lr, cache, patch = training_data(read_params(args.params), args.scale)
    pairs, version = build_cache(hr, lr, args.scale, cache, patch, progress)
    say(f"x{args.scale}: {len(pairs)} training pairs in {cache} (data version {version})")
