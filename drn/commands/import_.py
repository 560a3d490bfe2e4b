"""``drn import``: weights trained elsewhere as a drn checkpoint (EDSR-PyTorch's, for now).

The module is ``import_`` because ``import`` is a Python keyword; the subcommand is ``import``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_scale_option
from drn.commands.output import say, warn

FORMATS = ("edsr-pytorch",)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "import", help="make a drn checkpoint of weights trained elsewhere (EDSR-PyTorch's)",
        description="Make a drn checkpoint of our edsr_baseline from an EDSR-PyTorch state dict "
        "(such as the authors' edsr_baseline_x2-1bc95232.pt), checked tensor by tensor; the "
        "result works with drn evaluate --model and drn upscale --weights.",
    )  # fmt: skip
    parser.add_argument("format", choices=FORMATS, help="whose file it is")
    parser.add_argument("file", type=Path, metavar="FILE", help="the state dict (.pt)")
    add_scale_option(parser, "the model's scale (2, 3 or 4 for the authors' releases)")
    parser.add_argument(
        "--out", type=Path, metavar="PATH",
        help="the checkpoint to write (a folder: inside it); default: FILE's stem + .drn.pt, "
        "beside it",
    )  # fmt: skip
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.engine.edsr_pytorch import import_edsr_pytorch

    done = import_edsr_pytorch(args.file, args.scale, args.out)
    if done.release is None:
        warn(
            f"{args.file} is not a known release of the EDSR authors (sha256 "
            f"{done.sha256[:16]}..., {done.size:,} bytes; drn/reference/edsr_baseline.yaml): "
            "imported as it is"
        )
        what = "an EDSR-PyTorch state dict"
    else:
        what = f"the authors' {done.release.name} (sha256 and size verified)"
    say(
        f"{args.file}: {what} -> {done.out}: edsr_baseline x{done.scale} (C = 64, B = 16), "
        f"{done.tensors} tensors, MeanShift checked"
    )
