"""``drn upscale``: super-resolve images of any format Pillow reads with a trained checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_device_options, add_scale_option, load_model
from drn.commands.output import progress, say
from drn.core.images import IMAGE_SUFFIXES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "upscale", help="super-resolve images with a trained model",
        description="Super-resolve images of any format Pillow reads (grayscale stays gray, "
        "alpha is resized with bicubic) with a trained checkpoint.",
    )  # fmt: skip
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument(
        "--weights", required=True, metavar="CKPT_OR_MLFLOW_URI",
        help="a checkpoint file, or an MLflow URI such as runs:/ID/checkpoint",
    )  # fmt: skip
    add_scale_option(parser, "the model's scale")
    parser.add_argument(
        "-o", "--out", type=Path, required=True,
        help="output folder (IMAGE_xS.png), or a file name for a single image",
    )  # fmt: skip
    parser.add_argument("--self-ensemble", action="store_true", help="average 8 flips/rotations")
    add_device_options(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.core.images import read_image, write_image
    from drn.engine.inference import upscale_image

    model, device = load_model(args.weights, args.scale, args.device)
    single_file = len(args.images) == 1 and args.out.suffix.lower() in IMAGE_SUFFIXES
    for path in progress(args.images, len(args.images), f"upscaling x{args.scale}"):
        img = read_image(path, keep_alpha=True)
        sr = upscale_image(model, img, args.scale, device, args.tile or None, args.self_ensemble)
        target = args.out if single_file else args.out / f"{path.stem}_x{args.scale}.png"
        write_image(target, sr)
        say(f"{path} -> {target} ({sr.shape[1]}x{sr.shape[0]})")
