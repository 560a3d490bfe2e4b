"""``drn import``: weights trained elsewhere as a drn checkpoint (EDSR-PyTorch's, for now).

The module is ``import_`` because ``import`` is a Python keyword; the subcommand is ``import``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drn.commands.options import add_params_option, add_scale_option, read_params
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
    parser.add_argument(
        "--track", action="store_true",
        help="also an MLflow run (params.yaml tracking, unless tracking.enabled is false), "
        "which drn evaluate of the checkpoint logs its scores to, beside the runs trained here",
    )  # fmt: skip
    add_params_option(parser)
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    from drn.engine.edsr_pytorch import MODEL, import_edsr_pytorch

    track = None
    if args.track:
        tracking = read_params(args.params)["tracking"]
        if tracking["enabled"]:
            track = _tracker(tracking, f"{MODEL}-released_x{args.scale}", MODEL, args.scale)
        else:
            say(f"MLflow: nothing logged: tracking.enabled is false in {args.params}")
    done = import_edsr_pytorch(args.file, args.scale, args.out, track)
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
    if done.mlflow:
        say(f"MLflow: run {done.mlflow['run_id']} in {done.mlflow['tracking_uri']} (drn evaluate "
            "of the checkpoint logs its scores there)")  # fmt: skip


def _tracker(tracking: dict, name: str, variant: str, scale: int):
    """What records the import as the MLflow run ``name``: tags of the variant, its role and the
    file (drn.engine.tracking.track_import)."""
    from drn.engine.tracking import git_commit, track_import

    def track(origin: dict) -> dict[str, str]:
        tags = {"variant": variant, "scale": scale, "roles": "released", "git_commit": git_commit(),
                **{f"origin_{key}": value for key, value in origin.items()}}  # fmt: skip
        return track_import(tracking["uri"], tracking["experiment"], name, tags)

    return track
