"""``drn info``: a model variant's sizes, trainable parameters and forward FLOPs."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_scale_option
from drn.commands.output import say
from drn.core.errors import UsageError


def _size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: expected HxW, e.g. 256x256")
    return int(parts[0]), int(parts[1])


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "info",
        help="trainable parameters and FLOPs of a model variant",
        description="Print a model variant's sizes, trainable parameters and forward FLOPs.",
    )
    parser.add_argument("name", help="model variant (drn, drn_plus, drn_no_rd, ...)")
    add_scale_option(parser, "upscaling factor")
    parser.add_argument(
        "--size",
        type=_size,
        default=(256, 256),
        metavar="HxW",
        help="LR input size the FLOPs are counted for (default 256x256)",
    )
    parser.add_argument("--params", type=Path, help="apply this file's models.<name> overrides")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one size as drn train does, e.g. --set models.drn.block_channels=128 "
        "(repeatable)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    import torch

    from drn.models import get_variant, resolve_config
    from drn.models.complexity import forward_flops, trainable_parameters
    from drn.pipeline.params import apply_overrides, build_from_params, load_params, model_sizes

    for item in args.set:
        if not item.startswith(f"models.{args.name}."):
            raise UsageError(
                f"--set {item}: drn info changes this model's sizes, as drn train --set does: "
                f"models.{args.name}.SIZE=VALUE, e.g. models.{args.name}.block_channels=128"
            )
    params = apply_overrides(load_params(args.params) if args.params else {}, args.set)
    variant = get_variant(args.name)
    with torch.device("meta"):
        model = build_from_params(params, args.name, args.scale)
    height, width = args.size
    flops = forward_flops(model, height, width)
    config = resolve_config(args.name, **model_sizes(params, args.name))
    sizes = " ".join(f"{k}={v}" for k, v in vars(config).items())
    say(f"{args.name} x{args.scale}: {variant.description}")
    say(f"sizes: {sizes}")
    say(f"trainable parameters: {trainable_parameters(model):,}")
    say(
        f"forward FLOPs for one {height}x{width} LR image "
        f"(-> {height * args.scale}x{width * args.scale}): {flops / 1e9:,.2f} G "
        f"({flops / 2e9:,.2f} G multiply-accumulates)"
    )
