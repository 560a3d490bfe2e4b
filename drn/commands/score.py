"""``drn score``: score a folder of SR images against their HR images (Y PSNR/SSIM)."""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_scoring_options
from drn.commands.output import progress, report_scores
from drn.protocol.scoring import score_folders


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "score",
        help="score super-resolved images against HR images (Y PSNR/SSIM)",
        description="Score a folder of SR images against their HR images under the standard "
        "protocol (BT.601 Y channel, borders shaved by the scale, MATLAB-equal SSIM).",
    )
    parser.add_argument(
        "--sr", type=Path, required=True, metavar="DIR", help="super-resolved images"
    )
    parser.add_argument("--hr", type=Path, required=True, metavar="DIR", help="ground-truth images")
    add_scoring_options(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    result = score_folders(args.sr, args.hr, args.scale, args.shave, args.rgb, progress)
    report_scores(result, args.json, f"{args.sr} scored against {args.hr}")
