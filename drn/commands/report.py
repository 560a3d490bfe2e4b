"""``drn report``: the paper-style report, every number of the paper beside ours."""

from __future__ import annotations

import argparse

from drn.commands.options import add_params_option, read_params
from drn.commands.output import say


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report", help="the paper-style report: every number of the paper beside ours",
        description="Write {paths.reports}/report.html (self-contained) and report.md from the "
        "evaluation JSONs, the training runs, MLflow and params.yaml.",
    )  # fmt: skip
    add_params_option(parser)
    parser.add_argument("--device", default="auto", help="for the visual comparisons")
    parser.add_argument("--pdf", action="store_true", help="also print it to PDF (Chromium)")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> None:
    import torch

    from drn.report import build_report

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    written = build_report(read_params(args.params), device, args.pdf)
    say("report: " + ", ".join(str(path) for path in written.values()))
